//! Loom models of the async waits: tasks pend on the same state word and notifiers as
//! threads. Run with the other models:
//!
//!     RUSTFLAGS="--cfg loom" cargo test --release --lib loom_
//!
//! A task runs under `loom::future::block_on`, which parks its loom thread until the
//! task's waker is called: a lost wake-up shows as loom's "deadlock". A future that is
//! polled once and dropped is polled by hand with a no-op waker.

use super::loom_core::{model, model_bounded, unlocked, Resource};
use crate::{Abort, Error, Fortress, Worker};
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use loom::future::block_on;
use loom::thread;

/// Polls `fut` once with a waker that does nothing; `true` if it completed.
fn poll_once<F: Future>(fut: core::pin::Pin<&mut F>) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    matches!(fut.poll(&mut cx), Poll::Ready(_))
}

/// A pending `enter_async` that is dropped while `unlock` races it leaves no count and
/// steals no wake-up: a thread waiting at the same gate still gets in.
#[test]
fn a_dropped_pending_enter_leaves_nothing_behind() {
    model(|| {
        let fortress = Fortress::new();
        let guest = fortress.guest();
        let dropper = thread::spawn(move || {
            let abort = Abort::new();
            {
                let mut enter = pin!(guest.enter_async(&abort));
                // Ready if the unlock came first (the visit ends at once); else
                // pending, and dropped while pending.
                poll_once(enter.as_mut());
            }
            assert_eq!(abort.links().0, 0, "the token still names the wait");
        });
        let guest = fortress.guest();
        let thread_guest = thread::spawn(move || guest.visit(|| (), &Abort::never()));
        fortress.guard().unlock().unwrap();
        dropper.join().unwrap();
        assert_eq!(thread_guest.join().unwrap(), Ok(()));
        assert_eq!(fortress.guests(), 0);
        assert_eq!(fortress.gate.task_slots().0, 0, "a waker was left behind");
        fortress.guard().lockdown(&Abort::never()).unwrap();
    });
}

/// A task and a thread wait at one gate; one `unlock` admits both, and both see what
/// the guard wrote before it. (Three threads: bounded at three preemptions.)
#[test]
fn one_unlock_wakes_a_task_and_a_thread() {
    model_bounded(3, || {
        let fortress = Fortress::new();
        let resource = Resource::new();
        resource.write(7);
        let (guest, r) = (fortress.guest(), resource.clone());
        let task =
            thread::spawn(move || block_on(guest.visit_async(async { r.read() }, &Abort::never())));
        let (guest, r) = (fortress.guest(), resource.clone());
        let thread_guest = thread::spawn(move || guest.visit(|| r.read(), &Abort::never()));
        fortress.guard().unlock().unwrap();
        assert_eq!(task.join().unwrap(), Ok(7));
        assert_eq!(thread_guest.join().unwrap(), Ok(7));
    });
}

/// Firing the token wakes a pending task, which returns `Aborted` and leaves no count.
#[test]
fn abort_wakes_a_pending_task() {
    model(|| {
        let fortress = Fortress::new();
        let abort = Abort::new();
        let (guest, token) = (fortress.guest(), abort.clone());
        let task = thread::spawn(move || {
            block_on(async move { guest.enter_async(&token).await.map(drop) })
        });
        abort.abort();
        assert_eq!(task.join().unwrap(), Err(Error::Aborted));
        assert_eq!(fortress.guests(), 0);
    });
}

/// `kill` wakes a lockdown task that waits for the drain.
#[test]
fn kill_wakes_a_pending_lockdown_task() {
    model(|| {
        let fortress = unlocked();
        let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
        let guard = fortress.guard();
        let task = thread::spawn(move || block_on(guard.lockdown_async(&Abort::never())));
        fortress.kill();
        assert_eq!(task.join().unwrap(), Err(Error::Shutdown));
        drop(visit);
    });
}

/// A lockdown task waits for a thread's visit, and its exclusive phase sees the
/// visit's effects and overlaps no visit.
#[test]
fn a_lockdown_task_waits_for_a_thread_visit() {
    model(|| {
        let fortress = unlocked();
        let resource = Resource::new();
        let (guest, r) = (fortress.guest(), resource.clone());
        let visitor = thread::spawn(move || guest.visit(|| r.read(), &Abort::never()));
        let guard = fortress.guard();
        block_on(guard.lockdown_async(&Abort::never())).unwrap();
        resource.write(1); // races with any visit still inside
        guard.unlock().unwrap();
        assert!(visitor.join().unwrap().unwrap() <= 1);
    });
}

/// A waker that panics when woken.
struct Panics;

const PANIC: &str = "a task's waker panicked (on purpose, in a model)";

impl std::task::Wake for Panics {
    fn wake(self: std::sync::Arc<Self>) {
        std::panic::panic_any(PANIC);
    }
}

/// Keeps the panic hook quiet about [`PANIC`] (loom runs the model thousands of times);
/// every other panic is reported as before.
fn quiet_about_panicking_wakers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&PANIC) {
                report(info);
            }
        }));
    });
}

/// A waker that panics during `unlock` wakes nobody less: another task waiting at the
/// same gate still gets in, and the panic does not reach the caller of `unlock`.
#[test]
fn a_panicking_waker_wakes_nobody_less() {
    quiet_about_panicking_wakers();
    model(|| {
        let fortress = Fortress::new();
        let guest = fortress.guest();
        let mut doomed = pin!(guest.enter_async(Abort::NEVER));
        let panics = Waker::from(std::sync::Arc::new(Panics));
        let pending = doomed.as_mut().poll(&mut Context::from_waker(&panics));
        assert!(pending.is_pending());
        let task_guest = fortress.guest();
        let task = thread::spawn(move || block_on(task_guest.enter_async(Abort::NEVER)).map(drop));
        fortress.guard().unlock().unwrap();
        assert_eq!(task.join().unwrap(), Ok(()));
        assert!(poll_once(doomed.as_mut()), "the gate is open");
    });
}

/// A scoped lockdown's future, polled once and dropped while the visit inside leaves:
/// whichever comes first, the gate ends open (the back-out, or the `Exclusive`'s own
/// unlock), nothing stays registered, and the gate still works.
#[test]
fn a_dropped_exclusive_backs_out_while_the_visit_inside_leaves() {
    model(|| {
        let fortress = unlocked();
        let visit = fortress.guest().enter_owned(Abort::NEVER).unwrap();
        let leaver = thread::spawn(move || drop(visit));
        let guard = fortress.guard();
        {
            let mut exclusive = pin!(guard.exclusive_async(Abort::NEVER));
            // Ready if the visit left first (the `Exclusive` is dropped at once and
            // unlocks); else pending, and dropped while pending: it backs out.
            poll_once(exclusive.as_mut());
        }
        leaver.join().unwrap();
        assert!(
            !fortress.is_locked(),
            "the scoped lockdown left the gate closed"
        );
        assert_eq!(fortress.guests(), 0);
        assert_eq!(fortress.gate.task_slots().0, 0, "a waker was left behind");
        assert_eq!(fortress.guest().visit(|| 1, Abort::NEVER), Ok(1));
        fortress.guard().lockdown(Abort::NEVER).unwrap();
    });
}
