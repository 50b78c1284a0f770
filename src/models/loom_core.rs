//! Loom models: every interleaving of visit, lockdown, unlock, abort and kill, on 2-3
//! threads. Run with
//!
//!     RUSTFLAGS="--cfg loom" cargo test --release --lib loom_core
//!
//! A lost wake-up shows as loom's "deadlock" (every thread asleep); an exclusive phase
//! that overlaps a visit shows as a data race on the `Resource` cell, which the guard
//! writes and the guests read without any synchronisation of their own. `Resource` is
//! built on the crate's own `Value` (`value.rs`), so the models need no `unsafe`.
//!
//! They are unit tests (loom is a dev-dependency under `cfg(loom)` only), so the
//! crate's own synchronisation primitives switch to loom's while they run.

use crate::value::Value;
use crate::{Abort, Error, Fortress, Worker};
use loom::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use loom::sync::Arc;
use loom::thread;

/// The protected resource, a resource that lives outside the fortress (the fortresses
/// of these models hold `()`): loom flags any access not ordered by the fortress.
///
/// It is a `Value` of the crate's, whose cell is loom's in a model build, accessed the
/// way the handles access a fortress's value: a token is taken for the access and
/// released right after it. The token holds loom's access guard, so each `read` or
/// `write` is one tracked access, as `with`/`with_mut` would make. Nothing but the
/// models' own ordering (the fortress's) orders them: that is the claim under test.
pub(crate) struct Resource(Value<u64>);

impl Resource {
    pub(crate) fn new() -> Arc<Resource> {
        Arc::new(Resource(Value::new(0)))
    }

    pub(crate) fn read(&self) -> u64 {
        let mut leave = self.0.share();
        let value = *self.0.get(&leave);
        // As a visit does before it leaves: the access ends here.
        leave.release();
        value
    }

    pub(crate) fn write(&self, v: u64) {
        let mut leave = self.0.unique();
        *self.0.get_unique(&mut leave) = v;
        // As a phase does before it ends: the access ends here.
        leave.release();
    }
}

/// Explores `f` with at most five preemptions per execution (loom's
/// `LOOM_MAX_PREEMPTIONS` overrides it): enough for every model here to finish in
/// seconds on two cores.
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    model_bounded(5, f)
}

///
/// Each model also has a time budget (`LOOM_MAX_DURATION` seconds overrides it;
/// default [`BUDGET_SECONDS`]): a model that has not explored every interleaving within
/// its bound by then stops, and says so. Most finish in seconds; the largest (three
/// looping threads) would take far longer exhaustively than CI can give them.
pub(crate) fn model_bounded(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    let budget = std::time::Duration::from_secs(BUDGET_SECONDS);
    if builder.max_duration.is_none() {
        builder.max_duration = Some(budget);
    }
    let budget = builder.max_duration.unwrap_or(budget);
    let started = std::time::Instant::now();
    builder.check(f);
    // Shown with --nocapture: how long each model takes, and whether its budget cut
    // the exploration short.
    let name = std::thread::current().name().unwrap_or("model").to_owned();
    let took = started.elapsed();
    let cut = if took >= budget {
        " (time budget spent: not exhaustive)"
    } else {
        ""
    };
    eprintln!("loom model {name}: {took:.1?}{cut}");
}

/// The default time budget of one loom model, in seconds.
const BUDGET_SECONDS: u64 = 150;

pub(crate) fn unlocked() -> Fortress {
    let fortress = Fortress::new();
    fortress.guard().unlock().unwrap();
    fortress
}

/// Two guards race on an unlocked fortress (made by `unlocked`): one locks down while
/// the other unlocks and locks down again, and a guest visits. Nothing deadlocks; once
/// both lockdowns have returned `Ok` the guard's write overlaps no visit. (A lockdown
/// pending while the other guard unlocks keeps waiting until the other's lockdown
/// closes the empty fortress.) For the layouts whose guard operations take a pass.
pub(crate) fn two_guards_race(unlocked: fn() -> Fortress) {
    let fortress = unlocked();
    let resource = Resource::new();
    let (guest, r) = (fortress.guest(), resource.clone());
    let visitor = thread::spawn(move || guest.visit(|| r.read(), &Abort::never()));
    let guard = fortress.guard();
    let other = thread::spawn(move || {
        guard.unlock().unwrap();
        guard.lockdown(&Abort::never())
    });
    fortress.guard().lockdown(&Abort::never()).unwrap();
    other.join().unwrap().unwrap();
    resource.write(1);
    fortress.guard().unlock().unwrap();
    assert!(visitor.join().unwrap().unwrap() <= 1);
}

/// An abort token that has fired already: a wait with it gives up at its first look,
/// so a guest that is shut out returns `Aborted` instead of sleeping.
pub(crate) fn fired() -> Abort {
    let abort = Abort::new();
    abort.abort();
    abort
}

/// 1. Once `lockdown` returns `Ok`, no visit body runs until the next `unlock`.
#[test]
fn visit_vs_lockdown() {
    model(|| {
        let fortress = unlocked();
        let resource = Resource::new();
        let (guest, r) = (fortress.guest(), resource.clone());
        let visitor = thread::spawn(move || guest.visit(|| r.read(), &Abort::never()));
        fortress.guard().lockdown(&Abort::never()).unwrap();
        resource.write(1); // races with any visit that is still inside
        fortress.guard().unlock().unwrap();
        let seen = visitor.join().unwrap().unwrap();
        assert!(seen <= 1);
    });
}

/// 2. Guests bouncing off a closed gate never strand a lockdown that waits for the
///    count to reach zero, and the one inside is waited for.
#[test]
fn backing_out_vs_lockdown_waiting_for_the_drain() {
    model(|| {
        let fortress = unlocked();
        let resource = Resource::new();
        let (guest, r) = (fortress.guest(), resource.clone());
        let inside = thread::spawn(move || guest.visit(|| r.read(), &Abort::never()));
        let guest = fortress.guest();
        let r = resource.clone();
        let bouncer = thread::spawn(move || guest.try_enter().map(|_visit| r.read()));
        fortress.guard().lockdown(&Abort::never()).unwrap();
        resource.write(1);
        // The guest that came too late waits at the gate for this unlock.
        fortress.guard().unlock().unwrap();
        inside.join().unwrap().unwrap();
        bouncer.join().unwrap();
    });
}

/// 3. `unlock` racing with a guest that is about to sleep at the gate.
#[test]
fn unlock_vs_a_visit_about_to_sleep() {
    model(|| {
        let fortress = Fortress::new();
        let resource = Resource::new();
        resource.write(7); // before unlock: the visit must see it
        let (guest, r) = (fortress.guest(), resource.clone());
        let visitor = thread::spawn(move || guest.visit(|| r.read(), &Abort::never()));
        fortress.guard().unlock().unwrap();
        assert_eq!(visitor.join().unwrap(), Ok(7));
    });
}

/// 4a. Abort wakes a sleeping visit.
#[test]
fn abort_vs_a_sleeping_visit() {
    model(|| {
        let fortress = Fortress::new();
        let abort = Abort::new();
        let (guest, token) = (fortress.guest(), abort.clone());
        let visitor = thread::spawn(move || guest.visit(|| (), &token));
        abort.abort();
        assert_eq!(visitor.join().unwrap(), Err(Error::Aborted));
        assert_eq!(fortress.guests(), 0);
    });
}

/// 4b. Abort wakes a sleeping lockdown; the gate stays closed.
#[test]
fn abort_vs_a_sleeping_lockdown() {
    model(|| {
        let fortress = unlocked();
        let guest = fortress.guest();
        let visit = guest.enter(&Abort::never()).unwrap();
        let abort = Abort::new();
        let (guard, token) = (fortress.guard(), abort.clone());
        let lockdown = thread::spawn(move || guard.lockdown(&token));
        abort.abort();
        assert_eq!(lockdown.join().unwrap(), Err(Error::Aborted));
        assert!(fortress.is_locked());
        drop(visit);
    });
}

/// 4c. Abort racing unlock: the visit runs or is aborted, never hangs, and an aborted
///     visit never ran its body.
#[test]
fn abort_racing_unlock() {
    model(|| {
        let fortress = Fortress::new();
        let abort = Abort::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let (guest, token, r) = (fortress.guest(), abort.clone(), ran.clone());
        let visitor = thread::spawn(move || guest.visit(|| r.fetch_add(1, Relaxed), &token));
        let guard = fortress.guard();
        let unlocker = thread::spawn(move || guard.unlock().unwrap());
        abort.abort();
        let result = visitor.join().unwrap();
        unlocker.join().unwrap();
        match result {
            Ok(_) => assert_eq!(ran.load(Relaxed), 1),
            Err(e) => {
                assert_eq!(e, Error::Aborted);
                assert_eq!(ran.load(Relaxed), 0);
            }
        }
        assert_eq!(fortress.guests(), 0);
    });
}

/// 5. An aborted lockdown, then unlock, with a visit still inside (or arriving).
#[test]
fn aborted_lockdown_then_unlock_with_a_visit_inside() {
    model(|| {
        let fortress = unlocked();
        let resource = Resource::new();
        let (guest, r) = (fortress.guest(), resource.clone());
        let visitor = thread::spawn(move || guest.visit(|| r.read(), &Abort::never()));
        let guard = fortress.guard();
        match guard.lockdown(&fired()) {
            Ok(()) => resource.write(1), // nobody inside: exclusive
            Err(e) => assert_eq!(e, Error::Aborted),
        }
        assert!(fortress.is_locked());
        guard.unlock().unwrap();
        visitor.join().unwrap().unwrap();
    });
}

/// 6a. Kill wakes a sleeping visit and a sleeping lockdown with `Shutdown`.
#[test]
fn kill_vs_sleeping_visit_and_lockdown() {
    model(|| {
        let fortress = unlocked();
        let guest = fortress.guest();
        let visit = guest.enter_owned(&Abort::never()).unwrap();
        let guard = fortress.guard();
        let lockdown = thread::spawn(move || guard.lockdown(&Abort::never()));
        let guest = fortress.guest();
        let late = thread::spawn(move || guest.visit(|| (), &Abort::never()));
        fortress.kill();
        assert_eq!(lockdown.join().unwrap(), Err(Error::Shutdown));
        // The late guest either got in before the lockdown closed the gate, or not.
        let late = late.join().unwrap();
        assert!(matches!(late, Ok(()) | Err(Error::Shutdown)), "{late:?}");
        drop(visit);
    });
}

/// 6b. `wait` returns only after the last visit has left, and sees its effects.
#[test]
fn wait_vs_the_last_visit_leaving() {
    model(|| {
        let fortress = unlocked();
        let resource = Resource::new();
        let (guest, r) = (fortress.guest(), resource.clone());
        let visitor = thread::spawn(move || guest.visit(|| r.read(), &Abort::never()));
        fortress.kill();
        fortress.wait().unwrap();
        // (A guest bouncing off the killed fortress may still count for an instant.)
        resource.write(1); // races with a visit that wait() did not wait for
        let seen = visitor.join().unwrap();
        assert_eq!(fortress.guests(), 0);
        assert!(matches!(seen, Ok(0) | Err(Error::Shutdown)), "{seen:?}");
    });
}

/// 7. Two guards racing unlock and lockdown with one guest: nothing breaks, no
///    deadlock, and both lockdowns complete once both guards have closed the gate.
#[test]
fn two_guards_racing_with_one_guest() {
    // Three threads that all loop: bound 4 already takes about a minute.
    model_bounded(4, || {
        let fortress = Fortress::new();
        let stop = Abort::new();
        let (guest, token) = (fortress.guest(), stop.clone());
        let visitor = thread::spawn(move || guest.visit(|| (), &token));
        let guard = fortress.guard();
        let other = thread::spawn(move || {
            guard.unlock().unwrap();
            guard.lockdown(&Abort::never()).unwrap();
        });
        fortress.guard().lockdown(&Abort::never()).unwrap();
        other.join().unwrap();
        assert!(fortress.is_locked());
        stop.abort(); // releases the guest if it still waits at the gate
        let seen = visitor.join().unwrap();
        assert!(matches!(seen, Ok(()) | Err(Error::Aborted)), "{seen:?}");
        assert_eq!(fortress.guests(), 0);
    });
}

/// 8. The flag bits survive concurrent count changes: guests entering and leaving
///    while a lockdown closes the gate and a kill lands.
#[test]
fn flags_survive_count_changes() {
    model(|| {
        let fortress = unlocked();
        let visitors: Vec<_> = (0..2)
            .map(|_| {
                let guest = fortress.guest();
                thread::spawn(move || guest.try_enter().is_some())
            })
            .collect();
        let _ = fortress.guard().lockdown(&fired());
        assert!(fortress.is_locked(), "lost the lock flag: {fortress:?}");
        fortress.kill();
        for v in visitors {
            v.join().unwrap();
        }
        assert!(fortress.is_locked(), "lost the lock flag: {fortress:?}");
        assert_eq!(fortress.guests(), 0);
        fortress.wait().unwrap();
        let shown = format!("{fortress:?}");
        assert!(shown.contains("shut_down: true"), "{shown}");
        assert!(
            !shown.contains("waiters: true"),
            "a waiter flag leaked: {shown}"
        );
    });
}

/// Occupy adds one synchronisation of its own: the visit it holds ends when the
/// worker's `wait` returns, whoever calls it. A lockdown racing with that must
/// complete, and see the worker's writes.
#[test]
fn occupy_holds_the_visit_until_the_worker_is_waited_for() {
    struct Writer(Arc<Resource>);
    impl Worker for Writer {
        fn kill(&self) {}
        fn wait(&self) -> Result<(), crate::BoxError> {
            self.0.read();
            Ok(())
        }
    }
    model(|| {
        let fortress = unlocked();
        let resource = Resource::new();
        let worker = crate::occupy(
            &fortress.guest(),
            || Ok::<_, Error>(Writer(resource.clone())),
            &Abort::never(),
        )
        .unwrap();
        let waiter = thread::spawn(move || worker.wait().unwrap());
        fortress.guard().lockdown(&Abort::never()).unwrap();
        resource.write(1);
        waiter.join().unwrap();
    });
}

/// 9. A guest asleep at the closed gate is woken by `unlock` and sees the gate open;
///    before its compare-exchange claims a place, the guard locks down, writes and
///    unlocks again, so the word reads "open" once more (an ABA). The compare-exchange
///    then reads from the *second* unlock, whose exclusive phase the guest's earlier
///    look never synchronized with: only the compare-exchange's own Acquire orders that
///    write before the visit.
#[test]
fn a_woken_guest_claiming_its_place_after_another_lockdown_sees_its_writes() {
    model(|| {
        let fortress = Fortress::new();
        let resource = Resource::new();
        let (guest, r) = (fortress.guest(), resource.clone());
        let visitor = thread::spawn(move || guest.visit(|| r.read(), &Abort::never()));
        let guard = fortress.guard();
        resource.write(1);
        guard.unlock().unwrap();
        guard.lockdown(&Abort::never()).unwrap();
        resource.write(2); // races with a visit whose claim did not acquire the unlock below
        guard.unlock().unwrap();
        let seen = visitor.join().unwrap().unwrap();
        assert!(seen == 1 || seen == 2, "{seen}");
    });
}

/// The last opener goes while a guest waits at the closed gate: whichever of the two
/// openers goes last kills the fortress, and the guest wakes with `Shutdown`.
#[test]
fn the_last_openers_drop_wakes_a_waiting_guest_with_shutdown() {
    model(|| {
        let fortress = Fortress::new();
        let guest = fortress.guest();
        let visitor = thread::spawn(move || guest.visit(|| (), Abort::NEVER));
        let guard = fortress.guard();
        let dropper = thread::spawn(move || drop(guard));
        drop(fortress);
        dropper.join().unwrap();
        assert_eq!(visitor.join().unwrap(), Err(Error::Shutdown));
    });
}

/// A guard unlocks and goes while the fortress handle goes too: the gate was open when
/// the last opener went, so it stays open and the waiting guest gets in.
#[test]
fn the_last_opener_leaves_an_open_fortress_open() {
    model(|| {
        let fortress = Fortress::new();
        let guest = fortress.guest();
        let visitor = thread::spawn(move || guest.visit(|| 7, Abort::NEVER));
        let guard = fortress.guard();
        let opener = thread::spawn(move || {
            guard.unlock().unwrap();
            drop(guard);
        });
        drop(fortress);
        opener.join().unwrap();
        assert_eq!(visitor.join().unwrap(), Ok(7));
    });
}
