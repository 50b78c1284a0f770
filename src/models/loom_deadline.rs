//! Loom models of the other abort sources: a deadline that passes (the model moves the
//! clock and plays the timer thread), a parent that fires, a future that completes on
//! another thread. Run with the other models:
//!
//!     RUSTFLAGS="--cfg loom" cargo test --release --lib loom_

use super::loom_core::{model, unlocked};
use crate::abort::{source, timer};
use crate::sync::clock;
use crate::{Abort, Error, Fortress};
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use loom::sync::Mutex;
use loom::thread;
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_millis(10);

/// A deadline passes while a lockdown sleeps for a visit: the timer wakes it with
/// `Aborted`, and the gate stays closed. Whether the lockdown registers before or after
/// the timer runs, it never sleeps past the deadline.
#[test]
fn a_deadline_that_passes_wakes_a_sleeping_lockdown() {
    model(|| {
        let fortress = unlocked();
        let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
        // The token is made before the clock moves: its deadline is "now + TIMEOUT".
        let (guard, abort) = (fortress.guard(), Abort::after(TIMEOUT));
        let lockdown = thread::spawn(move || guard.lockdown(&abort));
        clock::advance(TIMEOUT);
        timer::fire_due();
        assert_eq!(lockdown.join().unwrap(), Err(Error::Aborted));
        assert!(fortress.is_locked(), "an aborted lockdown still locks");
        drop(visit);
    });
}

/// A parent fires while a wait on its child sleeps: the wait wakes with `Aborted`.
#[test]
fn a_parent_that_fires_wakes_a_wait_on_its_child() {
    model(|| {
        let fortress = Fortress::new();
        let parent = Abort::new();
        let (guest, child) = (fortress.guest(), parent.child());
        let visitor = thread::spawn(move || guest.visit(|| (), &child));
        parent.abort();
        assert_eq!(visitor.join().unwrap(), Err(Error::Aborted));
        assert_eq!(fortress.guests(), 0);
    });
}

/// A one-shot future on loom's mutex: ready once `fire` has run.
#[derive(Clone, Default)]
struct Shot(Arc<Mutex<(bool, Option<Waker>)>>);

impl Shot {
    fn fire(&self) {
        let waker = {
            let mut shot = self.0.lock().unwrap();
            shot.0 = true;
            shot.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Future for Shot {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut shot = self.0.lock().unwrap();
        if shot.0 {
            return Poll::Ready(());
        }
        shot.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A `from_future` token whose future completes on another thread wakes a sleeping
/// visit with `Aborted`: the wake that completes it is never lost, whether it comes
/// before, during or after the source thread's poll.
#[test]
fn a_future_that_completes_on_another_thread_fires_its_token() {
    model(|| {
        let fortress = Fortress::new();
        let shot = Shot::default();
        let abort = Abort::from_future(shot.clone());
        let guest = fortress.guest();
        let visitor = thread::spawn(move || guest.visit(|| (), &abort));
        // The source is polled on the crate's source thread, which the model plays: a
        // first poll, then the fire on another thread, then the poll that fire queued.
        let source_thread = thread::spawn(source::run_queued);
        shot.fire();
        source_thread.join().unwrap();
        source::run_queued();
        assert_eq!(visitor.join().unwrap(), Err(Error::Aborted));
    });
}
