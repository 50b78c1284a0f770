//! Waits that really sleep, and whatever wakes them: unlock, the last guest leaving,
//! abort and kill. Each test first makes sure the waiter has announced itself in the
//! state word, so the sleeping path is what runs.

mod common;

/// The layout of the fortresses under test (read by `common::fortress`).
/// `tests/sharded.rs` and `tests/read_mostly.rs` run this file again in their layouts.
#[allow(dead_code)]
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::Word;

use common::{fired, unlocked, until_asleep, within, Sleepers};
use fortress_gate::{Abort, Error, Fortress, Worker};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::thread;

/// A fortress that is unlocked with one owned visit inside.
fn occupied() -> (Fortress, fortress_gate::OwnedVisit) {
    let fortress = unlocked();
    let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
    (fortress, visit)
}

#[test]
fn unlock_wakes_every_sleeping_visit() {
    let fortress = common::fortress();
    let ran = Arc::new(AtomicUsize::new(0));
    let visitors: Vec<_> = (0..3)
        .map(|_| {
            let (guest, ran) = (fortress.guest(), ran.clone());
            thread::spawn(move || guest.visit(|| ran.fetch_add(1, SeqCst), &Abort::never()))
        })
        .collect();
    until_asleep(&fortress, Sleepers::Gate);
    assert_eq!(ran.load(SeqCst), 0, "no visit runs while locked");
    fortress.guard().unlock().unwrap();
    within("visits after unlock", move || {
        for v in visitors {
            v.join().unwrap().unwrap();
        }
    });
    assert_eq!(ran.load(SeqCst), 3);
}

#[test]
fn the_last_visit_leaving_wakes_a_sleeping_lockdown() {
    let (fortress, visit) = occupied();
    let guard = fortress.guard();
    let lockdown = thread::spawn(move || guard.lockdown(&Abort::never()));
    until_asleep(&fortress, Sleepers::Drain);
    assert!(!lockdown.is_finished());
    drop(visit);
    assert_eq!(
        within("lockdown after the drain", move || lockdown.join().unwrap()),
        Ok(())
    );
    assert!(fortress.is_locked());
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn abort_wakes_a_sleeping_visit() {
    let fortress = common::fortress();
    let abort = Abort::new();
    let (guest, token) = (fortress.guest(), abort.clone());
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let visit = thread::spawn(move || guest.visit(|| flag.store(true, SeqCst), &token));
    until_asleep(&fortress, Sleepers::Gate);
    abort.abort();
    assert_eq!(
        within("aborted visit", move || visit.join().unwrap()),
        Err(Error::Aborted)
    );
    assert!(!ran.load(SeqCst));
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn abort_wakes_a_sleeping_lockdown_and_the_gate_stays_closed() {
    let (fortress, visit) = occupied();
    let abort = Abort::new();
    let (guard, token) = (fortress.guard(), abort.clone());
    let lockdown = thread::spawn(move || guard.lockdown(&token));
    until_asleep(&fortress, Sleepers::Drain);
    abort.abort();
    assert_eq!(
        within("aborted lockdown", move || lockdown.join().unwrap()),
        Err(Error::Aborted)
    );
    assert!(fortress.is_locked());
    assert_eq!(fortress.guests(), 1, "the visit inside goes on");
    assert!(visit.lockdown_pending());
}

#[test]
fn one_token_cuts_short_waits_on_several_fortresses() {
    let abort = Abort::new();
    let locked = [common::fortress(), common::fortress()];
    let (busy, visit) = occupied();
    let mut waits = Vec::new();
    for fortress in &locked {
        for _ in 0..2 {
            let (guest, token) = (fortress.guest(), abort.clone());
            waits.push(thread::spawn(move || guest.visit(|| (), &token)));
        }
    }
    let (guard, token) = (busy.guard(), abort.clone());
    waits.push(thread::spawn(move || guard.lockdown(&token)));
    for fortress in &locked {
        until_asleep(fortress, Sleepers::Gate);
    }
    until_asleep(&busy, Sleepers::Drain);
    abort.abort();
    within("every wait on the token", move || {
        for wait in waits {
            assert_eq!(wait.join().unwrap(), Err(Error::Aborted));
        }
    });
    drop(visit);
}

#[test]
fn a_token_that_served_finished_waits_can_still_fire() {
    // Registrations are removed when a wait ends; firing afterwards must find none
    // of the dead waits and wake nothing wrongly.
    let fortress = common::fortress();
    let abort = Abort::new();
    for _ in 0..20 {
        let (guest, token) = (fortress.guest(), abort.clone());
        let visit = thread::spawn(move || guest.visit(|| (), &token));
        until_asleep(&fortress, Sleepers::Gate);
        fortress.guard().unlock().unwrap();
        within("visit", move || visit.join().unwrap()).unwrap();
        fortress.guard().lockdown(&Abort::never()).unwrap();
    }
    abort.abort();
    assert_eq!(fortress.guest().visit(|| (), &abort), Err(Error::Aborted));
}

#[test]
fn kill_wakes_sleeping_visits_and_lockdowns_with_shutdown() {
    let locked = common::fortress();
    let (busy, visit) = occupied();
    let visits: Vec<_> = (0..2)
        .map(|_| {
            let guest = locked.guest();
            thread::spawn(move || guest.visit(|| (), &Abort::never()))
        })
        .collect();
    let guard = busy.guard();
    let lockdown = thread::spawn(move || guard.lockdown(&Abort::never()));
    until_asleep(&locked, Sleepers::Gate);
    until_asleep(&busy, Sleepers::Drain);
    locked.kill();
    busy.kill();
    within("woken by kill", move || {
        for v in visits {
            assert_eq!(v.join().unwrap(), Err(Error::Shutdown));
        }
        assert_eq!(lockdown.join().unwrap(), Err(Error::Shutdown));
    });
    assert_eq!(busy.guests(), 1, "a running visit is not interrupted");
    drop(visit);
    within("wait", move || busy.wait().unwrap());
}

#[test]
fn shutdown_wins_when_kill_and_abort_both_happen_during_a_wait() {
    for _ in 0..20 {
        let fortress = common::fortress();
        let abort = Abort::new();
        let (guest, token) = (fortress.guest(), abort.clone());
        let visit = thread::spawn(move || guest.visit(|| (), &token));
        until_asleep(&fortress, Sleepers::Gate);
        // Both happen before the sleeper can look: it must answer Shutdown.
        fortress.kill();
        abort.abort();
        assert_eq!(
            within("visit", move || visit.join().unwrap()),
            Err(Error::Shutdown)
        );
    }
}

#[test]
fn wait_sleeps_until_kill_and_then_until_the_last_visit_leaves() {
    let (fortress, visit) = occupied();
    let worker = fortress.clone();
    let waited = thread::spawn(move || worker.wait().is_ok());
    until_asleep(&fortress, Sleepers::Done);
    // A pending wait costs the guard nothing and is not woken by lockdowns.
    let guard = fortress.guard();
    assert_eq!(guard.lockdown(&fired()), Err(Error::Aborted));
    guard.unlock().unwrap();
    assert!(!waited.is_finished());
    fortress.kill();
    until_asleep(&fortress, Sleepers::Done);
    assert!(!waited.is_finished(), "a visit is still running");
    drop(visit);
    assert!(within("wait", move || waited.join().unwrap()));
}

#[test]
fn a_panicking_visit_lets_a_sleeping_lockdown_complete() {
    let fortress = unlocked();
    let started = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let (guest, s, r) = (fortress.guest(), started.clone(), release.clone());
    let visitor = thread::spawn(move || {
        guest.visit(
            || {
                s.wait();
                r.wait();
                panic!("visit panicked on purpose");
            },
            &Abort::never(),
        )
    });
    started.wait();
    let guard = fortress.guard();
    let lockdown = thread::spawn(move || guard.lockdown(&Abort::never()));
    until_asleep(&fortress, Sleepers::Drain);
    release.wait();
    assert!(
        visitor.join().is_err(),
        "the panic propagates to the visitor"
    );
    assert_eq!(within("lockdown", move || lockdown.join().unwrap()), Ok(()));
}

#[test]
fn a_pending_lockdown_keeps_waiting_when_another_guard_unlocks() {
    let (fortress, visit) = occupied();
    let (a, b) = (fortress.guard(), fortress.guard());
    let lockdown = thread::spawn(move || a.lockdown(&Abort::never()));
    until_asleep(&fortress, Sleepers::Drain);
    b.unlock().unwrap();
    drop(visit); // empty, but open: the pending lockdown's condition does not hold
    thread::sleep(std::time::Duration::from_millis(20));
    assert!(
        !lockdown.is_finished(),
        "returned Ok though the fortress was never locked and empty"
    );
    // Another guard locks the empty fortress down: now both lockdowns hold.
    b.lockdown(&Abort::never()).unwrap();
    assert_eq!(
        within("pending lockdown", move || lockdown.join().unwrap()),
        Ok(())
    );
}

#[test]
fn writer_preference_no_visit_starts_once_lockdown_is_called() {
    let (fortress, visit) = occupied();
    let guard = fortress.guard();
    let lockdown = thread::spawn(move || guard.lockdown(&Abort::never()));
    until_asleep(&fortress, Sleepers::Drain);
    // Guests keep arriving while one is inside; none gets in.
    let guest = fortress.guest();
    assert!(guest.try_enter().is_none());
    let late = thread::spawn(move || guest.visit(|| (), &Abort::never()));
    until_asleep(&fortress, Sleepers::Gate);
    drop(visit);
    assert_eq!(within("lockdown", move || lockdown.join().unwrap()), Ok(()));
    assert!(
        !late.is_finished(),
        "the late guest waits for the next unlock"
    );
    fortress.guard().unlock().unwrap();
    within("late visit", move || late.join().unwrap()).unwrap();
}
