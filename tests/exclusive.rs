//! `Guard::exclusive`: a lockdown that unlocks when its `Exclusive` is dropped, with
//! the errors of `lockdown` and, when aborted, its closed gate.

mod common;

/// The layout of the fortresses under test (read by `common::fortress`).
/// `tests/sharded.rs` and `tests/read_mostly.rs` run this file again in their layouts.
#[allow(dead_code)]
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::Word;

use common::{fired, unlocked, until_asleep, within, Sleepers, HANG};

use fortress_gate::{Abort, BoxError, Error, Exclusive, Fortress, Guard, Worker};
use std::sync::mpsc;
use std::thread;

#[test]
fn unlocks_on_drop() {
    let fortress = unlocked();
    let guard = fortress.guard();
    let guest = fortress.guest();
    let exclusive = guard.exclusive(&Abort::never()).unwrap();
    assert!(fortress.is_locked());
    assert!(guest.try_enter().is_none(), "no visit while it lives");
    drop(exclusive);
    assert!(!fortress.is_locked());
    assert_eq!(guest.visit(|| 5, &fired()), Ok(5), "open again: no wait");
}

#[test]
fn unlocks_a_fortress_that_was_locked_before() {
    let fortress = common::fortress(); // locked
    let guard = fortress.guard();
    drop(guard.exclusive(&fired()).unwrap()); // empty: no wait, so the abort is moot
    assert!(
        !fortress.is_locked(),
        "the drop unlocks whatever the state was"
    );
}

#[test]
fn unlocks_when_a_question_mark_returns_early() {
    fn replace(guard: &Guard, fortress: &Fortress, version: &str) -> Result<u32, BoxError> {
        let _exclusive = guard.exclusive(&Abort::never())?;
        assert!(fortress.is_locked());
        let version: u32 = version.parse()?;
        assert!(fortress.is_locked(), "still exclusive up to the end");
        Ok(version)
    }

    let fortress = unlocked();
    let guard = fortress.guard();
    assert_eq!(replace(&guard, &fortress, "3").unwrap(), 3);
    assert!(!fortress.is_locked(), "unlocked after a normal return");
    assert!(replace(&guard, &fortress, "three").is_err());
    assert!(!fortress.is_locked(), "unlocked after the early return");
    assert_eq!(fortress.guest().visit(|| (), &Abort::never()), Ok(()));
}

#[test]
fn unlocks_when_the_exclusive_phase_panics() {
    let fortress = unlocked();
    let guard = fortress.guard();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _exclusive = guard.exclusive(&Abort::never()).unwrap();
        panic!("the upgrade failed");
    }));
    assert!(result.is_err());
    assert!(!fortress.is_locked(), "unlocked during the unwinding");
}

#[test]
fn an_aborted_exclusive_backs_out_and_reopens_the_gate_it_shut() {
    let fortress = unlocked();
    let guard = fortress.guard();
    let guest = fortress.guest();
    let inside = guest.enter(&Abort::never()).unwrap();
    assert_eq!(guard.exclusive(&fired()).map(drop), Err(Error::Aborted));
    assert!(!fortress.is_locked(), "its own close is withdrawn");
    assert!(!inside.lockdown_pending());
    assert_eq!(
        guest.visit(|| 1, &fired()),
        Ok(1),
        "new visits go in at once"
    );
    drop(inside);
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn an_aborted_exclusive_on_a_closed_gate_leaves_it_closed() {
    let fortress = unlocked();
    let guard = fortress.guard();
    let guest = fortress.guest();
    let inside = guest.enter(&Abort::never()).unwrap();
    assert_eq!(
        guard.lockdown(&fired()),
        Err(Error::Aborted),
        "closes the gate"
    );
    assert_eq!(guard.exclusive(&fired()).map(drop), Err(Error::Aborted));
    assert!(
        fortress.is_locked(),
        "the gate was closed before: it stays so"
    );
    assert!(guest.try_enter().is_none());
    drop(inside);
    guard.unlock().unwrap();
}

#[test]
fn shutdown_at_drop_is_ignored() {
    let fortress = unlocked();
    let guard = fortress.guard();
    let exclusive = guard.exclusive(&Abort::never()).unwrap();
    fortress.kill();
    drop(exclusive); // its unlock answers Shutdown, and the drop ignores it
    assert!(fortress.is_locked(), "a killed fortress keeps its state");
    assert_eq!(guard.unlock(), Err(Error::Shutdown));
    fortress.wait().unwrap();
}

#[test]
fn killed_fortress_answers_shutdown() {
    let fortress = unlocked();
    fortress.kill();
    let guard = fortress.guard();
    assert_eq!(
        guard.exclusive(&Abort::never()).map(drop),
        Err(Error::Shutdown)
    );
    assert_eq!(
        guard.exclusive(&fired()).map(drop),
        Err(Error::Shutdown),
        "shutdown wins over abort"
    );
}

#[test]
fn waits_for_a_visit_inside() {
    let fortress = unlocked();
    let guest = fortress.guest();
    let inside = guest.enter_owned(&Abort::never()).unwrap();

    let (tx, rx) = mpsc::channel();
    let guard = fortress.guard();
    let observer = fortress.clone();
    let locker = thread::spawn(move || {
        let exclusive = guard.exclusive(&Abort::never()).unwrap();
        // What the exclusive phase sees: the gate closed and nobody inside.
        tx.send((observer.is_locked(), observer.guests())).unwrap();
        drop(exclusive);
    });

    until_asleep(&fortress, Sleepers::Drain);
    assert!(
        rx.try_recv().is_err(),
        "exclusive returned with a visit inside"
    );
    assert!(fortress.is_locked(), "the gate closed before the wait");
    assert!(guest.try_enter().is_none());
    drop(inside);
    assert_eq!(rx.recv_timeout(HANG).unwrap(), (true, 0));
    within("the exclusive thread", move || locker.join().unwrap());
    assert!(
        !fortress.is_locked(),
        "unlocked when the Exclusive was dropped"
    );
}

#[test]
fn exclusive_is_send_sync_and_debug() {
    fn check<T: Send + Sync + std::fmt::Debug>() {}
    check::<Exclusive<'static>>();
    // As std's guards, it shows the value (the handles show the state).
    let fortress = fortress_gate::Fortress::holding(vec![7]);
    let guard = fortress.guard();
    let exclusive = guard.exclusive(&Abort::never()).unwrap();
    assert_eq!(format!("{exclusive:?}"), "[7]");
    assert!(format!("{guard:?}").starts_with("Guard(State { locked: true"));
}
