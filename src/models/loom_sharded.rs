//! Loom models of the sharded fortress: guests on their own slots, guards closing,
//! counting and reopening them. Two slots; the first two loom threads to visit take different slots, in the
//! order they first visit. The models with three threads besides the main one are
//! bounded at two or three preemptions to stay within CI's budget. Run with the other
//! models:
//!
//!     RUSTFLAGS="--cfg loom" cargo test --release --lib loom_

use super::loom_core::{model, model_bounded, two_guards_race, Resource};
use crate::{Abort, Error, Fortress, Worker};
use loom::thread;

fn sharded_unlocked() -> Fortress {
    let fortress = Fortress::with_shards(2);
    fortress.guard().unlock().unwrap();
    fortress
}

/// Once `lockdown` returns `Ok`, no visit on any slot runs until the next `unlock`,
/// and the guard sees what the visits did.
#[test]
fn sharded_visits_on_two_slots_vs_lockdown() {
    model(|| {
        let fortress = sharded_unlocked();
        let resource = Resource::new();
        let (guest, r) = (fortress.guest(), resource.clone());
        let visitor = thread::spawn(move || guest.visit(|| r.read(), &Abort::never()));
        // This thread visits too, on the other slot.
        let mine = fortress.guest().visit(|| resource.read(), &Abort::never());
        assert_eq!(mine, Ok(0));
        fortress.guard().lockdown(&Abort::never()).unwrap();
        resource.write(1); // races with any visit still inside
        fortress.guard().unlock().unwrap();
        assert!(visitor.join().unwrap().unwrap() <= 1);
        assert_eq!(fortress.guests(), 0);
    });
}

/// A guest that bounces off a slot the lockdown just closed, while the lockdown counts
/// the slots, neither strands the lockdown nor gets in; the guard's unlock lets it in.
#[test]
fn sharded_guest_backing_out_while_the_lockdown_counts() {
    model_bounded(3, || {
        let fortress = sharded_unlocked();
        let resource = Resource::new();
        let inside = fortress.guest().enter_owned(&Abort::never()).unwrap();
        let (guest, r) = (fortress.guest(), resource.clone());
        let late = thread::spawn(move || guest.visit(|| r.read(), &Abort::never()));
        let guard = fortress.guard();
        let lockdown = thread::spawn(move || guard.lockdown(&Abort::never()));
        drop(inside);
        lockdown.join().unwrap().unwrap();
        resource.write(1);
        fortress.guard().unlock().unwrap();
        assert!(late.join().unwrap().unwrap() <= 1);
        assert_eq!(fortress.guests(), 0);
    });
}

/// Kill during the drain wakes the lockdown with `Shutdown`; `wait` returns once the
/// visit inside has left, and later visits are refused on every slot.
#[test]
fn sharded_kill_during_the_drain() {
    model(|| {
        let fortress = sharded_unlocked();
        let inside = fortress.guest().enter_owned(&Abort::never()).unwrap();
        let guard = fortress.guard();
        let lockdown = thread::spawn(move || guard.lockdown(&Abort::never()));
        let killer = fortress.clone();
        let kill = thread::spawn(move || {
            killer.kill();
            killer.wait().unwrap();
        });
        assert_eq!(lockdown.join().unwrap(), Err(Error::Shutdown));
        drop(inside);
        kill.join().unwrap();
        assert_eq!(fortress.guests(), 0);
        assert_eq!(
            fortress.guest().visit(|| (), &Abort::never()),
            Err(Error::Shutdown)
        );
    });
}

/// An aborted lockdown leaves the slots closed with a visit inside; `unlock` reopens
/// them and drops their references, and a later lockdown still waits for the visit.
#[test]
fn sharded_abort_during_the_drain_then_unlock() {
    model(|| {
        let fortress = sharded_unlocked();
        let inside = fortress.guest().enter_owned(&Abort::never()).unwrap();
        let abort = Abort::new();
        let (guard, token) = (fortress.guard(), abort.clone());
        let lockdown = thread::spawn(move || guard.lockdown(&token));
        abort.abort();
        assert_eq!(lockdown.join().unwrap(), Err(Error::Aborted));
        assert!(fortress.is_locked());
        fortress.guard().unlock().unwrap();
        let guard = fortress.guard();
        let again = thread::spawn(move || guard.lockdown(&Abort::never()));
        drop(inside);
        again.join().unwrap().unwrap();
        assert_eq!(fortress.guests(), 0);
    });
}

/// Two guards race (`loom_core::two_guards_race`) over the slots. Bound 2.
#[test]
fn sharded_two_guards_racing() {
    model_bounded(2, || two_guards_race(sharded_unlocked));
}

/// Two guests pass through one slot while a lockdown closes it: whichever leaves last
/// releases the slot's reference, and the guard must see what *both* visits did, the
/// one that left first included (the release claim must acquire the earlier guest's
/// exit). The guests use `try_enter`, so nobody sleeps and the model stays small.
/// Needs three preemptions to reach the order in which the first guest leaves, the
/// second leaves last and claims the release; CI must not lower this bound.
#[test]
fn two_guests_through_one_slot_vs_lockdown() {
    model_bounded(3, || {
        let fortress = Fortress::with_shards(1);
        fortress.guard().unlock().unwrap();
        let resource = Resource::new();
        let visitors: Vec<_> = (0..2)
            .map(|_| {
                let (guest, r) = (fortress.guest(), resource.clone());
                thread::spawn(move || guest.try_enter().map(|visit| (r.read(), drop(visit))))
            })
            .collect();
        fortress.guard().lockdown(&Abort::never()).unwrap();
        resource.write(1); // races with any visit still inside
        for visitor in visitors {
            if let Some((seen, ())) = visitor.join().unwrap() {
                assert!(seen <= 1);
            }
        }
        assert_eq!(fortress.guests(), 0);
    });
}
