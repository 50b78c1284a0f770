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

/// 2. A scoped lockdown shuts the open gate (a visit is inside) and drains; a second
///    guard unlocks and asks for a phase of its own; the first gives up when its token
///    fires, so its back-out races with the second's close, drain and phase (or the
///    first completes, and the second's unlock and lockdown come during its phase); a
///    guest tries to get in meanwhile. No visit begins during a phase, the phases never
///    overlap (both write the cell), and nobody is stranded.
#[test]
fn unlock_and_exclusive_by_another_guard_and_a_back_out_during_a_phase() {
    // Two threads besides the main one, which loop: bound 3.
    model_bounded(3, || {
        let fortress = unlocked();
        let resource = Resource::new();
        let inside = fortress.guest().enter_owned(&Abort::never()).unwrap();
        let give_up = Abort::new();
        let (guard, token, r) = (fortress.guard(), give_up.clone(), resource.clone());
        let first = thread::spawn(move || {
            let phase = guard.exclusive(&token)?;
            r.write(1);
            drop(phase);
            Ok(())
        });
        let (guard, r) = (fortress.guard(), resource.clone());
        let second = thread::spawn(move || {
            guard.unlock().unwrap();
            let phase = guard.exclusive(&Abort::never()).unwrap();
            r.write(2);
            drop(phase);
        });
        drop(inside);
        give_up.abort();
        // A visit whenever the gate lets one in: it races with both phases.
        let seen = fortress.guest().try_enter().map(|_visit| resource.read());
        assert!(seen.unwrap_or(0) <= 2);
        second.join().unwrap();
        let first = first.join().unwrap();
        assert!(matches!(first, Ok(()) | Err(Error::Aborted)), "{first:?}");
        assert!(
            !fortress.is_locked(),
            "the last phase's end opened the gate"
        );
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

/// 4. A `wait_with` on a live fortress, asleep or about to sleep when its token fires,
///    leaves no flag: nothing else would clear it (the fortress is not killed, so no
///    settle ever finds its condition met), and every later lockdown and unlock would
///    take the slow path for good. The last thread out of the group clears it.
///    Catches a discharge that leaves the flag (the model above does not: there the
///    unlock's settle clears the guests' flag).
#[test]
fn an_aborted_wait_with_on_a_live_fortress_leaves_no_flag() {
    model_bounded(3, || {
        let fortress = Fortress::new();
        let give_up = Abort::new();
        let (waiter, token) = (fortress.clone(), give_up.clone());
        let waiting = thread::spawn(move || waiter.wait_with(&token));
        give_up.abort();
        assert_eq!(waiting.join().unwrap(), Err(Error::Aborted));
        assert_eq!(flags(&fortress), 0, "{:?}", fortress.snapshot());
    });
}
