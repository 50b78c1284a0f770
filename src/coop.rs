//! The cooperative budget of async entries: a task that enters an open fortress over
//! and over, and awaits nothing else, would never give its thread back to the
//! executor, starving every other task of a single-threaded runtime. So the entries
//! polled on a thread spend one budget: after [`BUDGET`] first polls of entries on the
//! thread, the budget is spent and a *streak* of yields begins: each entry polled then
//! wakes its own waker and returns `Pending` instead of going in, until the streak
//! ends and the budget refills. A yielded entry is tried afresh at its next poll, so a
//! yield costs one extra poll and never loses the entry.
//!
//! The streak ends at the first of:
//! - the entry that began it is polled again, and no entry polled with another waker
//!   has yielded since: its task gave up its poll (a task that polls several entries
//!   with its one waker, as `select` does, does so once they all yielded), had its
//!   turn, and goes on. A plain task therefore yields once, at one entry;
//! - [`STREAK`] has passed since it began, at the next entry polled. This is what ends
//!   a streak that several wakers took part in: `FuturesUnordered` (and
//!   `for_each_concurrent`, `buffer_unordered`, `join_all` over many futures,
//!   `SelectAll`) gives each of its futures a waker of its own and re-polls them, the
//!   first yielder too, before it gives up its task's poll, so a yield now and then
//!   would never reach the executor. While every entry on the thread yields, such a
//!   task's futures pile up `Pending` until it gives up its poll; the streak lasts long
//!   enough for that, and no longer than its floor once it has.
//!
//! A streak that several wakers took part in made each of their entries yield (on a
//! thread of many tasks, every task polled during it; under a combinator, its
//! futures): the budget that follows it is as many times [`BUDGET`] as the streak had
//! yields, up to 64 times, so that the thread yields about as often per entry as a
//! task alone on it does (without that, a service of eight tasks on two workers saw
//! its p99 read latency go from 0.5 µs to 30 µs).
//!
//! The budget knows no runtime, so it works with any executor; and it knows no task:
//! every entry polled on the thread spends from it, whatever task or waker polls it
//! (combinators that poll their futures with wakers of their own cannot start it over).
//! So a task may inherit a budget that another task spent and yield early; a plain
//! task that is alone on its thread yields at most once in [`BUDGET`]` + 1` entries. It
//! costs one thread-local read and write on the fast path; the streak reads the clock.
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

/// How long a streak of yields lasts at most, and at least when an entry polled with
/// another waker than the first yielder's joined it.
#[cfg(not(any(all(test, any(loom, shuttle)), feature = "tokio")))]
pub(crate) const STREAK: std::time::Duration = std::time::Duration::from_micros(5);

/// The slow path of [`proceed`] once the thread's budget is spent: whether this entry
/// goes on after all (it ends the streak of yields, and `refill` starts the budget
/// afresh), or yields (its waker woken).
#[cfg(not(any(all(test, any(loom, shuttle)), feature = "tokio")))]
#[cold]
fn spent(cx: &mut Context<'_>, entry: *const (), refill: impl FnOnce(u32)) -> bool {
    use core::cell::Cell;
    use std::time::Instant;
    /// The streak of yields that began when the budget ran out. The pointers are
    /// identities, compared and never read.
    #[derive(Clone, Copy)]
    struct Streak {
        /// The first entry that yielded.
        entry: *const (),
        /// The data pointer of the waker it was polled with.
        waker: *const (),
        /// When it yielded.
        began: Instant,
        /// Whether an entry polled with another waker has yielded since: then a
        /// combinator that gives each of its futures a waker of its own may re-poll the
        /// first entry before its task gives up its poll, so only time ends the streak.
        shared: bool,
        /// The yields of the streak so far.
        yields: u32,
    }
    std::thread_local! {
        static NOW: Cell<Option<Streak>> = const { Cell::new(None) };
    }
    let waker = cx.waker();
    let go = NOW.with(|now| match now.get() {
        None => {
            now.set(Some(Streak {
                entry,
                waker: waker.data(),
                began: Instant::now(),
                shared: false,
                yields: 1,
            }));
            None
        }
        // The first yielder is back, and no other waker has yielded since: its task had
        // its turn (a task that polls several entries with one waker, as `select` does,
        // gives it up while they all yield).
        Some(streak)
            if (!streak.shared && streak.entry == entry) || streak.began.elapsed() >= STREAK =>
        {
            now.set(None);
            // A streak that several wakers took part in made each of them yield: the
            // next budget is as many times longer (up to 64), so that the thread yields
            // about as often per entry as a task alone on it does.
            Some(match streak.shared {
                false => BUDGET,
                true => BUDGET * streak.yields.min(64),
            })
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
    if let Some(budget) = go {
        refill(budget);
    } else {
        // The caller's own waker, on the caller's own poll: not under any lock of ours.
        waker.wake_by_ref();
    }
    go.is_some()
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
