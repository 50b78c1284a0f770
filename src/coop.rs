//! The cooperative budget of async entries: a task that enters an open fortress over
//! and over, and awaits nothing else, would never give its thread back to the
//! executor, starving every other task of a single-threaded runtime. So the entries
//! polled on a thread spend one budget: after [`BUDGET`] first polls of entries on the
//! thread, the budget is spent and a *streak* of yields begins: each entry polled then
//! wakes its own waker and returns `Pending` instead of going in, until the streak
//! ends and the budget refills. A yielded entry is tried afresh at its next poll, so a
//! yield costs one extra poll and never loses the entry.
//!
//! The streak ends:
//! - when the entry that began it is polled again, if no entry polled with another
//!   waker has yielded since: its task gave up its poll (a task that polls several
//!   entries with its one waker, as `select` does, does so once they all yielded), had
//!   its turn, and goes on. A plain task therefore yields once, at one entry;
//! - otherwise, after [`STREAK`] yields, at the next entry polled. This is what ends a
//!   streak that several wakers took part in: `FuturesUnordered` (and
//!   `for_each_concurrent`, `buffer_unordered`, `join_all` over many futures,
//!   `SelectAll`) gives each of its futures a waker of its own and re-polls them, the
//!   first yielder too, before it gives up its task's poll, so a yield now and then
//!   would never reach the executor. While every entry on the thread yields, such a
//!   task's futures pile up `Pending` until it gives up its poll. The streak is counted
//!   in yields, not timed, so a slow build keeps it; and the budget after it is
//!   [`STREAK`] times [`BUDGET`], so the thread still yields about once in [`BUDGET`]
//!   entries (on a thread of many tasks, every task polled during the streak yields:
//!   with the usual budget after it, a service of eight tasks on two workers saw its
//!   p99 read latency go from 0.4 µs to 30 µs).
//!
//! The budget knows no runtime, so it works with any executor; and it knows no task:
//! every entry polled on the thread spends from it, whatever task or waker polls it
//! (combinators that poll their futures with wakers of their own cannot start it over).
//! So a task may inherit a budget that another task spent and yield early; a plain
//! task that is alone on its thread yields at most once in [`BUDGET`]` + 1` entries. It
//! costs one thread-local read and write on the fast path.
//! With the `tokio` feature, entries take part in tokio's own budget instead: once
//! spent it makes every entry yield until the task is back in the runtime (tokio
//! refills it at each poll of a task; unconstrained outside a tokio runtime).
//! Under the model checkers the budget is off (they explore every schedule anyway).

use core::task::Context;

/// First polls of entries on a thread before one yields; as tokio's own budget per
/// task poll.
#[cfg_attr(
    any(all(test, any(loom, shuttle)), feature = "tokio"),
    allow(dead_code)
)]
pub(crate) const BUDGET: u32 = 128;

/// Whether an entry's first poll may go on: `false` (after waking the caller's waker)
/// while this thread's budget is spent (see the module docs for when it refills).
/// `entry` tells the entries apart: the address of the pinned entry's wait.
#[cfg(not(any(all(test, any(loom, shuttle)), feature = "tokio")))]
#[inline]
pub(crate) fn proceed(cx: &mut Context<'_>, entry: *const ()) -> bool {
    use core::cell::Cell;
    std::thread_local! {
        /// First polls of entries this thread may still let go on before the budget is
        /// spent. Every task polled on the thread spends from it: no task or waker owns it.
        static LEFT: Cell<u32> = const { Cell::new(BUDGET) };
    }
    let go = LEFT.with(|left| match left.get() {
        0 => false,
        n => {
            left.set(n - 1);
            true
        }
    });
    go || spent(cx, entry, |budget| LEFT.with(|left| left.set(budget)))
}

/// The yields a streak that several wakers took part in lasts: enough for a
/// combinator of up to about 30 futures to see them all `Pending` and give up its
/// task's poll, counted rather than timed so that a slow build (a sanitizer, a busy
/// machine) keeps it.
#[cfg(not(any(all(test, any(loom, shuttle)), feature = "tokio")))]
pub(crate) const STREAK: u32 = 64;

/// The slow path of [`proceed`] once the thread's budget is spent: whether this entry
/// goes on after all (it ends the streak of yields, and `refill` starts the budget
/// afresh with the entries it is given), or yields (its waker woken).
#[cfg(not(any(all(test, any(loom, shuttle)), feature = "tokio")))]
#[cold]
fn spent(cx: &mut Context<'_>, entry: *const (), refill: impl FnOnce(u32)) -> bool {
    use core::cell::Cell;
    /// The streak of yields that began when the budget ran out. The pointers are
    /// identities, compared and never read.
    #[derive(Clone, Copy)]
    struct Streak {
        /// The first entry that yielded.
        entry: *const (),
        /// The data pointer of the waker it was polled with.
        waker: *const (),
        /// Whether an entry polled with another waker has yielded since: then a
        /// combinator that gives each of its futures a waker of its own may re-poll the
        /// first entry before its task gives up its poll, so only the count of yields
        /// ends the streak.
        shared: bool,
        /// The yields of the streak so far.
        yields: u32,
    }
    std::thread_local! {
        static NOW: Cell<Option<Streak>> = const { Cell::new(None) };
    }
    let waker = cx.waker();
    let refilled = NOW.with(|now| match now.get() {
        None => {
            now.set(Some(Streak {
                entry,
                waker: waker.data(),
                shared: false,
                yields: 1,
            }));
            None
        }
        // The first yielder is back, and no other waker has yielded since: its task had
        // its turn (a task that polls several entries with one waker, as `select` does,
        // gives it up while they all yield).
        Some(streak) if !streak.shared && streak.entry == entry => {
            now.set(None);
            Some(BUDGET)
        }
        // A streak that several wakers took part in made many entries yield: the next
        // budget is as many times longer, so that the thread still yields about once
        // in `BUDGET` entries.
        Some(streak) if streak.shared && streak.yields >= STREAK => {
            now.set(None);
            Some(BUDGET * STREAK)
        }
        Some(streak) => {
            let shared = streak.shared || streak.waker != waker.data();
            now.set(Some(Streak {
                shared,
                yields: streak.yields + 1,
                ..streak
            }));
            None
        }
    });
    match refilled {
        Some(budget) => refill(budget),
        // The caller's own waker, on the caller's own poll: not under any lock of ours.
        None => waker.wake_by_ref(),
    }
    refilled.is_some()
}

/// As above, with tokio's budget: `false` (and the task woken) once tokio says yield.
#[cfg(all(feature = "tokio", not(all(test, any(loom, shuttle)))))]
#[inline]
pub(crate) fn proceed(cx: &mut Context<'_>, _: *const ()) -> bool {
    match tokio::task::coop::poll_proceed(cx) {
        core::task::Poll::Ready(progress) => {
            progress.made_progress();
            true
        }
        core::task::Poll::Pending => false,
    }
}

#[cfg(all(test, any(loom, shuttle)))]
#[inline]
pub(crate) fn proceed(_: &mut Context<'_>, _: *const ()) -> bool {
    true
}
