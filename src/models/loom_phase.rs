//! Loom models of the exclusive phase (the owner mark, the exact back-out) and of
//! the waiter flags that must not outlive their waiters.
//!
//!     RUSTFLAGS="--cfg loom" cargo test --release --lib loom_phase
//!
//! As in `loom_core`, an overlap of a phase with a visit (or with another phase) is a
//! data race on the `Resource` cell, and a lost wake-up is loom's "deadlock".

use super::loom_core::{model_bounded, unlocked, Resource};
use crate::state::WAITERS;
use crate::{Abort, Error, Fortress};
use loom::thread;

/// The waiter flags of the fortress's state word.
fn flags(fortress: &Fortress) -> u64 {
    fortress.snapshot().0 & WAITERS
}

/// 1. A scoped lockdown that finds the open gate empty takes it for its phase in the
///    same read-modify-write; that one must be ordered after the visit that has just
///    left, or the phase's write races with the visit's read.
#[test]
fn an_exclusive_of_the_open_gate_is_ordered_after_the_visit_that_left() {
    model_bounded(5, || {
        let fortress = unlocked();
        let resource = Resource::new();
        let (guest, r) = (fortress.guest(), resource.clone());
        let visitor = thread::spawn(move || guest.visit(|| r.read(), &Abort::never()));
        let guard = fortress.guard();
        let phase = guard.exclusive(&Abort::never()).unwrap();
        resource.write(1);
        drop(phase);
        let seen = visitor.join().unwrap().unwrap();
        assert!(seen <= 1);
    });
}

/// 2. While the first guard's phase runs, a second guard unlocks and asks for its own
///    phase, and a third scoped lockdown backs out (its token fires after its close
///    shut the open gate): no visit begins until a phase ends, the two phases never
///    overlap, and nobody is stranded.
#[test]
fn unlock_and_exclusive_by_another_guard_and_a_back_out_during_a_phase() {
    // Three threads besides the main one: bound 2 (a loom minute on two cores).
    model_bounded(2, || {
        let fortress = unlocked();
        let resource = Resource::new();
        let inside = fortress.guest().enter_owned(&Abort::never()).unwrap();
        // A: a scoped lockdown that shuts the open gate (a visit is inside), then gives
        // up when its token fires: its back-out races with everything below.
        let give_up = Abort::new();
        let (guard, token) = (fortress.guard(), give_up.clone());
        let backing_out = thread::spawn(move || guard.exclusive(&token).map(drop));
        // B: unlocks, then takes a phase of its own and writes.
        let (guard, r) = (fortress.guard(), resource.clone());
        let other = thread::spawn(move || {
            guard.unlock().unwrap();
            let phase = guard.exclusive(&Abort::never()).unwrap();
            r.write(2);
            drop(phase);
        });
        // C: a guest reads whenever it gets in.
        let (guest, r) = (fortress.guest(), resource.clone());
        let visitor = thread::spawn(move || guest.visit(|| r.read(), &Abort::never()));
        drop(inside);
        give_up.abort();
        // The main thread's own phase: writes while no visit may run.
        let guard = fortress.guard();
        let phase = guard.exclusive(&Abort::never()).unwrap();
        resource.write(1);
        drop(phase);
        other.join().unwrap();
        let backed = backing_out.join().unwrap();
        assert!(matches!(backed, Ok(()) | Err(Error::Aborted)), "{backed:?}");
        assert!(visitor.join().unwrap().unwrap() <= 2);
    });
}

/// 3. A thread's wait that is aborted races with the next waiter's arrival and with
///    the wake-up: the waiter that stays is never stranded (the last thread out of
///    the loop clears the flag only with nobody counted, or wakes whoever enlisted
///    meanwhile), and once nobody waits no flag is left, so the fast paths are back.
#[test]
fn an_aborted_thread_wait_racing_another_waiter_and_the_unlock_leaves_no_flag() {
    model_bounded(3, || {
        let fortress = Fortress::new();
        let give_up = Abort::new();
        let (guest, token) = (fortress.guest(), give_up.clone());
        let quitter = thread::spawn(move || guest.visit(|| (), &token));
        let guest = fortress.guest();
        let stayer = thread::spawn(move || guest.visit(|| (), &Abort::never()));
        give_up.abort();
        fortress.guard().unlock().unwrap();
        let quit = quitter.join().unwrap();
        assert!(matches!(quit, Ok(()) | Err(Error::Aborted)), "{quit:?}");
        assert_eq!(stayer.join().unwrap(), Ok(()));
        assert_eq!(flags(&fortress), 0, "{:?}", fortress.snapshot());
        // And a closed gate again: an aborted `wait_with` leaves nothing behind.
        fortress.guard().lockdown(&Abort::never()).unwrap();
        assert_eq!(fortress.wait_with(&give_up), Err(Error::Aborted));
        assert_eq!(flags(&fortress), 0, "{:?}", fortress.snapshot());
    });
}
