//! The cooperative budget of async entries: a task that enters an open fortress over
//! and over, and awaits nothing else, would never give its thread back to the
//! executor, starving every other task of a single-threaded runtime. So every
//! [`BUDGET`]th entry on a thread that could be ready at once yields instead: it wakes
//! its own task and returns `Pending` once, and the executor runs the others (and its
//! timers and I/O) before it polls that task again.
//!
//! The budget belongs to the thread, not the task, and knows no runtime: it works with
//! any executor. It costs a thread-local counter on the fast path. With the `tokio`
//! feature, entries take part in tokio's own budget instead (per task, refilled at
//! each poll of the task; unconstrained outside a tokio runtime). Under the model
//! checkers it is off (they explore every schedule anyway).

use core::task::Context;

/// Entries that may be ready at once in a row on one thread, before one yields. As
/// tokio's own budget per task poll.
#[cfg_attr(
    any(all(test, any(loom, shuttle)), feature = "tokio"),
    allow(dead_code)
)]
pub(crate) const BUDGET: u32 = 128;

/// Whether an entry that could be ready at once may be: `false` (after waking the task)
/// once the thread's budget is spent, which also refills it.
#[cfg(not(any(all(test, any(loom, shuttle)), feature = "tokio")))]
#[inline]
pub(crate) fn proceed(cx: &mut Context<'_>) -> bool {
    std::thread_local!(static LEFT: core::cell::Cell<u32> = const { core::cell::Cell::new(BUDGET) });
    let spent = LEFT.with(|left| {
        let n = left.get();
        left.set(if n == 0 { BUDGET } else { n - 1 });
        n == 0
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
