//! The cooperative budget of async entries: a task that enters an open fortress over
//! and over, and awaits nothing else, would never give its thread back to the
//! executor, starving every other task of a single-threaded runtime. So the entries
//! polled on a thread spend one budget: after [`BUDGET`] first polls of entries on the
//! thread, the next one yields instead: it wakes its own waker and returns `Pending`
//! once, the budget refills, and the executor runs the others (and its timers and I/O)
//! before it polls that task again. The entry is then tried afresh, so a yield costs
//! one extra poll and never loses the entry.
//!
//! The budget knows no runtime, so it works with any executor; and it knows no task:
//! every entry polled on the thread spends from it, whatever task or waker polls it
//! (combinators that give each of their futures a waker of their own cannot start it
//! over). So a task may inherit a
//! budget that another task spent and yield early, but it never yields more than once
//! in [`BUDGET`]` + 1` entries on its thread. It costs one thread-local read and write
//! on the fast path.
//!
//! A yield once in a while does not reach the executor through every combinator:
//! `FuturesUnordered` (and `for_each_concurrent`, `buffer_unordered`, `join_all` over
//! many futures, `SelectAll`) polls its other futures, and the yielded one again,
//! before it gives up its task's poll, so a task that only enters through it may still
//! keep its thread. With the `tokio` feature, entries take part in tokio's own budget
//! instead: once spent it makes every entry yield until the task is back in the runtime
//! (tokio refills it at each poll of a task; unconstrained outside a tokio runtime).
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
/// once this thread has spent its budget, which also refills it.
#[cfg(not(any(all(test, any(loom, shuttle)), feature = "tokio")))]
#[inline]
pub(crate) fn proceed(cx: &mut Context<'_>) -> bool {
    use core::cell::Cell;
    std::thread_local! {
        /// First polls of entries this thread may still let go on before one yields.
        /// Every task polled on the thread spends from it: no task or waker owns it.
        static LEFT: Cell<u32> = const { Cell::new(BUDGET) };
    }
    let spent = LEFT.with(|left| match left.get() {
        0 => {
            // One more than the budget: the yielding entry's own next poll (a first
            // poll again, since it went nowhere) is not charged for it.
            left.set(BUDGET + 1);
            true
        }
        n => {
            left.set(n - 1);
            false
        }
    });
    if spent {
        // The caller's own waker, on the caller's own poll: not under any lock of ours.
        cx.waker().wake_by_ref();
    }
    !spent
}

/// As above, with tokio's budget: `false` (and the task woken) once tokio says yield.
#[cfg(all(feature = "tokio", not(all(test, any(loom, shuttle)))))]
#[inline]
pub(crate) fn proceed(cx: &mut Context<'_>) -> bool {
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
pub(crate) fn proceed(_: &mut Context<'_>) -> bool {
    true
}
