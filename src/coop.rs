//! The cooperative budget of async entries: a task that enters an open fortress over
//! and over, and awaits nothing else, would never give its thread back to the
//! executor, starving every other task of a single-threaded runtime. So after
//! [`BUDGET`] first polls of entries in a row by one task, the next one yields
//! instead: it wakes its own task and returns `Pending` once, and the executor runs
//! the others (and its timers and I/O) before it polls that task again. The entry is
//! then tried afresh, so a yield costs one extra poll and never loses the entry.
//!
//! The budget knows no runtime, so it works with any executor. It is kept per thread,
//! and it starts over whenever the thread polls a different task (told apart by their
//! wakers), which is as close as a runtime-agnostic budget gets to tokio's per-task
//! one. It costs a thread-local read and a compare on the fast path. With the `tokio`
//! feature, entries take part in tokio's own budget instead (refilled by tokio at each
//! poll of a task; unconstrained outside a tokio runtime). Under the model checkers it
//! is off (they explore every schedule anyway).

use core::task::Context;

/// First polls of entries in a row by one task before one yields; as tokio's own
/// budget per task poll.
#[cfg_attr(
    any(all(test, any(loom, shuttle)), feature = "tokio"),
    allow(dead_code)
)]
pub(crate) const BUDGET: u32 = 128;

/// Whether an entry's first poll may go on: `false` (after waking the task) once this
/// task has spent its budget, which also refills it.
#[cfg(not(any(all(test, any(loom, shuttle)), feature = "tokio")))]
#[inline]
pub(crate) fn proceed(cx: &mut Context<'_>) -> bool {
    use core::cell::Cell;
    std::thread_local! {
        /// The task polled last on this thread (its waker's data pointer), and what is
        /// left of its budget.
        static LEFT: Cell<(*const (), u32)> = const { Cell::new((core::ptr::null(), BUDGET)) };
    }
    let task = cx.waker().data();
    let spent = LEFT.with(|left| {
        let (last, n) = left.get();
        match n {
            _ if last != task => left.set((task, BUDGET - 1)),
            0 => left.set((task, BUDGET)),
            n => left.set((task, n - 1)),
        }
        last == task && n == 0
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
