//! Calls into code the crate does not control: task wakers, the sources of
//! `Abort::from_future`, their destructors.
//!
//! The crate calls user code only after it has released every lock of its own and
//! finished the state change that caused the call, and it calls each piece of user code
//! through [`isolated`], so a panic there stops nothing else: the other wakers are still
//! woken, and the panic does not continue into the crate's caller (often a destructor,
//! where a second panic would abort the process). The panic hook has already reported
//! the panic when [`isolated`] sees it.

use core::panic::AssertUnwindSafe;
use core::task::Waker;

/// Runs `f`; `None` if it panicked. The panic's payload is user code too (its
/// destructor), so it is dropped in the same isolation: under a second `catch_unwind`.
/// Only the payload of a payload's destructor that panicked is leaked, since dropping
/// that one could panic again; a waker that panics at every wake leaves nothing behind.
#[inline]
pub(crate) fn isolated<R>(f: impl FnOnce() -> R) -> Option<R> {
    // AssertUnwindSafe: the crate's own state is complete before any user code runs,
    // so nothing of ours is observed half-changed after a caught panic.
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(out) => Some(out),
        Err(payload) => {
            // AssertUnwindSafe: the payload is gone either way, and nothing else is
            // touched.
            if let Err(again) = std::panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                core::mem::forget(again);
            }
            None
        }
    }
}

/// Wakes each waker, each call isolated from the others.
pub(crate) fn wake_each(wakers: impl IntoIterator<Item = Waker>) {
    for waker in wakers {
        isolated(|| waker.wake());
    }
}

/// Drops a value whose destructor is user code (a waker, a source future), isolated.
pub(crate) fn drop_isolated<T>(value: T) {
    isolated(move || drop(value));
}

/// Starts one of the crate's own threads: `state` is leaked (the thread lives as long
/// as the process), and the thread runs `run` on it forever. `run` never returns but by
/// a panic, which [`isolated`] already contains inside it; the loop keeps the thread
/// alive even so.
#[cfg(not(all(test, any(loom, shuttle))))]
pub(crate) fn spawn_daemon<T: Sync>(name: &str, state: T, run: fn(&'static T)) -> &'static T {
    let state: &'static T = Box::leak(Box::new(state));
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || loop {
            isolated(|| run(state));
        })
        .unwrap_or_else(|err| panic!("fortress-gate: could not start its thread {name}: {err}"));
    state
}
