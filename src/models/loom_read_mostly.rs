//! Loom models of the read-mostly fortress: visits on per-thread counts (a store, the
//! light fence, a load), guards that close the word, issue the heavy barrier and scan.
//! In a model build both fences are `fence(SeqCst)` (`read_mostly/barrier.rs`), which
//! loom models, and each loom thread has its own slot (loom's thread locals). Each
//! model states its preemption bound; `--nocapture` prints its time. Run with the
//! other models:
//!
//!     RUSTFLAGS="--cfg loom" cargo test --release --lib loom_

use super::loom_core::{fired, model, model_bounded, two_guards_race, Resource};
use crate::{Abort, Error, Fortress, Layout};
use loom::thread;

fn read_mostly_unlocked() -> Fortress {
    let fortress = Fortress::holding_with((), Layout::ReadMostly);
    assert!(
        crate::read_mostly_barrier().is_some(),
        "the model runs the counts"
    );
    fortress.guard().unlock().unwrap();
    fortress
}

/// A visit against a lockdown (the store-buffering shape): once `lockdown` returns, no
/// visit runs until the next `unlock`, and the guard sees what the visit did. Bound 5.
#[test]
fn read_mostly_visit_vs_lockdown() {
    model(|| {
        let fortress = read_mostly_unlocked();
        let resource = Resource::new();
        let (guest, r) = (fortress.guest(), resource.clone());
        let visitor = thread::spawn(move || guest.visit(|| r.read(), &Abort::never()));
        fortress.guard().lockdown(&Abort::never()).unwrap();
        resource.write(1); // races with a visit still inside
        fortress.guard().unlock().unwrap();
        assert!(visitor.join().unwrap().unwrap() <= 1);
        assert_eq!(fortress.guests(), 0);
    });
}

/// A guest that bounces off the closed gate while the lockdown drains a visit that is
/// inside and still reading: the lockdown is not stranded (the bounce is a leave), it
/// does not count the bounce's exit against the reader's entry (the reader's read and
/// the guard's write would race), and the guard's unlock lets the late guest in.
/// Bound 3.
#[test]
fn read_mostly_bounced_guest_during_a_drain() {
    model_bounded(3, || {
        let fortress = read_mostly_unlocked();
        let resource = Resource::new();
        let inside = fortress.guest().enter_owned(&Abort::never()).unwrap();
        let (guest, r) = (fortress.guest(), resource.clone());
        let late = thread::spawn(move || guest.visit(|| r.read(), &Abort::never()));
        let (guard, r) = (fortress.guard(), resource.clone());
        let lockdown = thread::spawn(move || {
            guard.lockdown(&Abort::never()).unwrap();
            r.write(1); // races with the read below if the drain was wrong
            guard.unlock().unwrap();
        });
        assert!(resource.read() <= 1, "inside the visit");
        drop(inside);
        lockdown.join().unwrap();
        assert!(late.join().unwrap().unwrap() <= 1);
        assert_eq!(fortress.guests(), 0);
    });
}

/// Another guard unlocks (and locks down again) while a lockdown closes and scans, and
/// a guest visits (`loom_core::two_guards_race`): a scan interleaved with the other
/// guard's reopen must not count. Bound 2.
#[test]
fn read_mostly_unlock_by_another_guard_during_the_scan() {
    model_bounded(2, || two_guards_race(read_mostly_unlocked));
}

/// A visit that starts on one thread and ends on another (its exit counts on the
/// second thread's slot): the lockdown waits for it, and sees what it did. Bound 4.
#[test]
fn read_mostly_visit_that_ends_on_another_thread() {
    model_bounded(4, || {
        let fortress = read_mostly_unlocked();
        let resource = Resource::new();
        let (guest, r) = (fortress.guest(), resource.clone());
        let visit = thread::spawn(move || {
            let visit = guest.enter_owned(&Abort::never()).unwrap();
            (visit, r.read())
        });
        let (visit, seen) = visit.join().unwrap();
        assert_eq!(seen, 0);
        let ender = thread::spawn(move || drop(visit));
        fortress.guard().lockdown(&Abort::never()).unwrap();
        resource.write(1); // the visit has ended, on the other thread
        ender.join().unwrap();
        assert_eq!(fortress.guests(), 0);
    });
}

/// A thread enters, hands its visit over and exits while a lockdown drains; its slot
/// goes back to the fortress with its counts, a later thread takes it, and the visit
/// ends there. The lockdown neither counts an entry twice nor misses the exit. Bound 3.
#[test]
fn read_mostly_thread_exits_while_a_lockdown_drains() {
    model_bounded(3, || {
        let fortress = read_mostly_unlocked();
        let guest = fortress.guest();
        let visit = thread::spawn(move || guest.enter_owned(&Abort::never()).unwrap())
            .join()
            .unwrap();
        let guard = fortress.guard();
        let lockdown = thread::spawn(move || guard.lockdown(&Abort::never()));
        // A new thread, which may take the exited thread's slot, ends the visit.
        let (guest, ender) = (fortress.guest(), thread::spawn(move || drop(visit)));
        ender.join().unwrap();
        lockdown.join().unwrap().unwrap();
        assert_eq!(fortress.guests(), 0);
        assert_eq!(guest.try_enter().map(drop), None, "locked down");
    });
}

/// Guests that wait at the closed gate: the unlock lets them in, a lockdown then waits
/// for them, and a guest whose token fired is refused without entering. Bound 3.
#[test]
fn read_mostly_unlock_lets_waiting_guests_in() {
    model_bounded(3, || {
        let fortress = Fortress::holding_with((), Layout::ReadMostly);
        let resource = Resource::new();
        let (guest, r) = (fortress.guest(), resource.clone());
        let waiting = thread::spawn(move || guest.visit(|| r.read(), &Abort::never()));
        assert_eq!(
            fortress.guest().visit(|| (), &fired()),
            Err(Error::Aborted),
            "closed: a fired token gives up"
        );
        fortress.guard().unlock().unwrap();
        assert_eq!(waiting.join().unwrap(), Ok(0));
        fortress.guard().lockdown(&Abort::never()).unwrap();
        resource.write(1);
        assert_eq!(fortress.guests(), 0);
    });
}
