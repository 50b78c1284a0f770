//! An exclusive phase owns the gate, and a back-out is exact: while a scoped
//! lockdown's `Exclusive` lives, no guard operation lets a visit in, and a back-out
//! never reopens the gate under another guard's phase or pending scoped lockdown.

mod common;

/// The layout of the fortresses under test (read by `common::fortress`).
/// `tests/sharded.rs` and `tests/read_mostly.rs` run this file again in their layouts.
#[allow(dead_code)]
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::Word;

use common::{fired, poll_noop, unlocked, until, until_asleep, within, Sleepers};
use fortress_gate::internals::snapshot;
use fortress_gate::{Abort, Error, Fortress, Worker};
use std::thread;
use std::time::Duration;

/// A visit cannot start now (the gate is closed to it), and the fortress says locked.
fn assert_shut(fortress: &Fortress, what: &str) {
    assert!(fortress.is_locked(), "{what}: is_locked() is false");
    assert!(
        fortress.guest().try_enter().is_none(),
        "{what}: a visit went in"
    );
}

#[test]
fn an_unlock_by_any_guard_during_an_exclusive_phase_opens_nothing_until_the_phase_ends() {
    let fortress = unlocked();
    let (mine, other) = (fortress.guard(), fortress.guard());
    let phase = mine.exclusive(&Abort::never()).unwrap();
    assert_eq!(other.unlock(), Ok(()));
    assert_shut(&fortress, "another guard's unlock");
    assert_eq!(mine.unlock(), Ok(()));
    assert_shut(&fortress, "this guard's own unlock");
    drop(phase);
    assert!(!fortress.is_locked(), "the phase's end unlocks");
    assert!(fortress.guest().try_enter().is_some());
}

#[test]
fn a_plain_lockdown_during_a_phase_returns_at_once_and_the_phase_end_still_unlocks() {
    let fortress = unlocked();
    let guard = fortress.guard();
    let phase = guard.exclusive(&Abort::never()).unwrap();
    assert_eq!(fortress.guard().lockdown(&fired()), Ok(()), "no wait");
    assert_shut(&fortress, "after the plain lockdown");
    drop(phase);
    assert!(
        !fortress.is_locked(),
        "the end unlocks, as any later unlock would"
    );
}

#[test]
fn a_second_scoped_lockdown_waits_for_the_phase_to_end_then_holds_its_own() {
    let fortress = unlocked();
    let guard = fortress.guard();
    let phase = guard.exclusive(&Abort::never()).unwrap();
    let (other, f) = (fortress.guard(), fortress.clone());
    let second = thread::spawn(move || {
        let phase = other.exclusive(&Abort::never()).unwrap();
        let shut = f.is_locked() && f.guest().try_enter().is_none();
        drop(phase);
        shut
    });
    until_asleep(&fortress, Sleepers::Gate);
    assert!(!second.is_finished(), "it must wait for the first phase");
    drop(phase);
    assert!(within("the second phase", move || second.join().unwrap()));
    assert!(!fortress.is_locked());
}

#[test]
fn a_scoped_lockdown_waiting_for_a_phase_gives_up_when_its_token_fires_and_the_phase_holds() {
    let fortress = unlocked();
    let guard = fortress.guard();
    let phase = guard.exclusive(&Abort::never()).unwrap();
    let soon = Abort::after(Duration::from_millis(20));
    assert_eq!(
        fortress.guard().exclusive(&soon).map(drop),
        Err(Error::Aborted)
    );
    assert_shut(&fortress, "after the other gave up");
    drop(phase);
    assert!(!fortress.is_locked());
}

#[test]
fn a_kill_during_a_phase_answers_waiting_visits_and_wait_waits_for_the_phase_to_end() {
    let fortress = unlocked();
    let guard = fortress.guard();
    let phase = guard.exclusive(&Abort::never()).unwrap();
    let guest = fortress.guest();
    let visitor = thread::spawn(move || guest.visit(|| (), &Abort::never()));
    until_asleep(&fortress, Sleepers::Gate);
    fortress.kill();
    assert_eq!(
        within("the waiting visit", move || visitor.join().unwrap()),
        Err(Error::Shutdown)
    );
    let soon = Abort::after(Duration::from_millis(20));
    assert_eq!(
        fortress.wait_with(&soon),
        Err(Error::Aborted),
        "the phase holds"
    );
    drop(phase);
    assert_eq!(fortress.wait_with(&fired()), Ok(()), "done once it ended");
    assert!(fortress.is_locked(), "a killed fortress is not reopened");
}

/// Fault 1 of 0.3: its back-out record came from a 16-bit counter shared by the whole
/// process, so 65,534 scoped calls on another fortress brought a waiting call's
/// record round again, and its back-out reopened the gate under another guard's
/// completed exclusive phase.
#[test]
fn a_back_out_never_reopens_the_gate_under_another_guards_exclusive_after_65534_scoped_calls_elsewhere(
) {
    let fortress = unlocked();
    let (a, b) = (fortress.guard(), fortress.guard());
    let inside = fortress.guest().enter_owned(&Abort::never()).unwrap();
    let never = Abort::never();
    let mut waiting = Box::pin(a.exclusive_async(&never));
    assert!(
        poll_noop(waiting.as_mut()).is_pending(),
        "a visit is inside"
    );
    b.unlock().unwrap();
    drop(inside);
    let elsewhere = Fortress::new();
    let busy = elsewhere.guard();
    let calls = if cfg!(miri) { 10 } else { 65_534 };
    for _ in 0..calls {
        drop(busy.exclusive(&never).unwrap());
    }
    let phase = b.exclusive(&never).unwrap();
    drop(waiting); // A gives up: its back-out must find B's phase
    assert_shut(&fortress, "A backed out during B's phase");
    drop(phase);
    assert!(!fortress.is_locked());
}

/// The blocking form of the same fault: the back-out of an aborted `exclusive`
/// reopened the gate under another guard's pending scoped lockdown, and a visit began.
#[test]
fn an_aborted_exclusive_does_not_reopen_the_gate_under_another_guards_pending_exclusive() {
    let fortress = unlocked();
    let first = fortress.guest().enter_owned(&Abort::never()).unwrap();
    let give_up = Abort::new();
    let (a, token) = (fortress.guard(), give_up.clone());
    let backing_out = thread::spawn(move || a.exclusive(&token).map(drop));
    until("A's close with its record", || {
        snapshot(&fortress).scope() != 0
    });
    let b = fortress.guard();
    b.unlock().unwrap();
    let second = fortress.guest().enter_owned(&Abort::never()).unwrap();
    drop(first);
    let elsewhere = Fortress::new();
    let busy = elsewhere.guard();
    for _ in 0..if cfg!(miri) { 10 } else { 65_534 } {
        drop(busy.exclusive(&Abort::never()).unwrap());
    }
    let (b2, f) = (b.clone(), fortress.clone());
    let pending = thread::spawn(move || {
        let phase = b2.exclusive(&Abort::never()).unwrap();
        let shut = f.guest().try_enter().is_none();
        drop(phase);
        shut
    });
    until("B's close", || snapshot(&fortress).scope() != 0);
    give_up.abort();
    assert_eq!(
        within("A", move || backing_out.join().unwrap()),
        Err(Error::Aborted)
    );
    assert_shut(&fortress, "A backed out under B's pending lockdown");
    drop(second);
    assert!(within("B", move || pending.join().unwrap()));
}

/// The hand-off that loom found: a scoped lockdown that drained beside another one
/// which took the gate, held its phase and ended it while the first looked away, must
/// not wait on the open gate for ever: it closes again and gets its own phase.
#[test]
fn scoped_lockdowns_racing_for_the_drain_all_complete() {
    let rounds = if cfg!(miri) { 3 } else { 200 };
    for _ in 0..rounds {
        let fortress = unlocked();
        let inside = fortress.guest().enter_owned(&Abort::never()).unwrap();
        let lockers: Vec<_> = (0..3)
            .map(|_| {
                let guard = fortress.guard();
                thread::spawn(move || drop(guard.exclusive(&Abort::never()).unwrap()))
            })
            .collect();
        drop(inside);
        within("three phases", move || {
            for locker in lockers {
                locker.join().unwrap();
            }
        });
        assert!(!fortress.is_locked());
    }
}
