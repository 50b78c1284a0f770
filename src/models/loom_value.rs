//! Loom models of the value a fortress holds (`Fortress::holding`): visits read it
//! through `Deref`, exclusive phases write it through `DerefMut`. Run with
//!
//!     RUSTFLAGS="--cfg loom" cargo test --release --lib loom_value
//!
//! These models have no test cell of their own and no `unsafe`. They rely on the cell
//! in `value.rs`, which is loom's in a model build, and on its tokens: a visit holds a
//! `Shared` token (so, in loom, a live immutable access) from its admission until it
//! leaves, and a phase holds a `Unique` token (a live mutable access) from its claim
//! until it ends. So loom fails a model whenever the gate lets a visit overlap a phase,
//! or two phases overlap, even if nobody dereferences during the overlap: it reports
//! "currently writing to cell" or "currently reading from cell" when the accesses
//! overlap in time, and a "Causality violation" when they do not overlap but one does
//! not happen before the other.
//!
//! On top of that the values seen check that phases are whole: a visit sees the value
//! from before a phase or after it, never from halfway through.

use super::loom_core::{fired, model_bounded};
use crate::{Abort, Error, Fortress, Layout};
use loom::thread;

/// A fortress holding `0_u64`, kept as `layout` says, unlocked.
fn open_holding(layout: Layout) -> Fortress<u64> {
    let fortress = Fortress::holding_with(0_u64, layout);
    fortress.guard().unlock().unwrap();
    fortress
}

/// The body of the (a) models: two guest threads read the value in their visits, one
/// through `enter` and the visit's `Deref`, one through `read`, while this thread's
/// guard takes an exclusive phase on the open fortress and writes the value twice
/// through `DerefMut`. On a sharded fortress the two guests are the first two threads
/// to visit, so they take different slots, and the phase's closing pass has two
/// slots to count.
fn visits_reading_vs_exclusive_writing(layout: Layout) {
    let fortress = open_holding(layout);
    let guest = fortress.guest();
    let entering = thread::spawn(move || {
        let visit = guest.enter(Abort::NEVER)?;
        Ok::<u64, Error>(*visit)
    });
    let guest = fortress.guest();
    let reading = thread::spawn(move || guest.read(|v| *v, Abort::NEVER));
    let guard = fortress.guard();
    let mut phase = guard.exclusive(Abort::NEVER).unwrap();
    *phase += 1;
    *phase += 1;
    drop(phase);
    for visitor in [entering, reading] {
        let seen = visitor.join().unwrap().unwrap();
        // Before the phase or after it, never the 1 in between.
        assert!(seen == 0 || seen == 2, "a visit saw half a phase: {seen}");
    }
    // The phase's writes happen before every later visit.
    assert_eq!(fortress.guest().read(|v| *v, Abort::NEVER), Ok(2));
}

/// (a) Word layout. Proves that an exclusive phase never overlaps a visit and is
/// ordered with it both ways: a phase that begins while visits are inside waits for
/// them to leave and its claim acquires their exits; a visit that begins after the
/// phase acquires the phase's end. Catches a drain that lets the phase in while a guest
/// is counted (for instance `close_scoped` answering `Close::Owned` with a guest
/// inside): loom reports "Causality violation: Concurrent read and write accesses to
/// `UnsafeCell`" (the phase's `unique` against a visit's `share` that it did not wait
/// for), or "currently reading from cell" if the visit is still inside.
#[test]
fn a_visit_reading_the_value_vs_an_exclusive_writing_it() {
    // Three threads: bound 3 takes about 4 s in release; bound 4 takes a minute.
    model_bounded(3, || visits_reading_vs_exclusive_writing(Layout::Word));
}

/// (a) on `Layout::Shards(2)`: the same, where the guests count on per-thread slots
/// and the phase's claim waits for every slot's reference to be dropped. Catches the
/// same drain bug through the slots: a phase claimed by the closing pass while a slot
/// still holds a guest ("Causality violation: Concurrent read and write accesses to
/// `UnsafeCell`").
#[test]
fn a_sharded_visit_reading_the_value_vs_an_exclusive_writing_it() {
    // Three threads, and the guards' pass over the slots is a loom mutex: bound 2 takes
    // about 2 s in release, bound 3 a minute.
    model_bounded(2, || visits_reading_vs_exclusive_writing(Layout::Shards(2)));
}

/// (b) Another guard's `unlock`, plain `lockdown` and `unlock` again, while an
/// exclusive phase writes; a guest tries `try_enter`, then waits at the gate with an
/// abort that this thread fires once the phase is over. Proves that no guard operation
/// opens the gate during a phase: the owner mark keeps it closed, and only the phase's
/// end opens it. Catches an `unlock` that opens the gate although the mark is set (for
/// instance `State::unlocked` clearing `LOCKED` whatever `OWNED` says): the guest then
/// gets in during the phase, and loom reports its read as concurrent with the phase's
/// write ("Causality violation: Concurrent read and write accesses", or "currently
/// writing to cell").
#[test]
fn unlock_and_lockdown_by_another_guard_during_a_phase_open_nothing() {
    // Three threads, two of which may wait: bound 3 takes about 4 s in release, bound
    // 4 over a minute.
    model_bounded(3, || {
        let fortress = open_holding(Layout::Word);
        let guard = fortress.guard();
        // Taken before any other thread exists: the phase holds the gate from here.
        let mut phase = guard.exclusive(Abort::NEVER).unwrap();
        let give_up = Abort::new();
        let (other, token) = (fortress.guard(), give_up.clone());
        let opener = thread::spawn(move || {
            // While the phase holds the gate, this opens nothing.
            other.unlock().unwrap();
            // While the phase holds the gate this returns at once, unless a guest
            // bouncing off the gate is counted at that instant: then it waits for the
            // count to drop, and if the phase ends first it waits on the open gate (as
            // a lockdown does after another guard's unlock) until the token fires.
            // After the phase it is an ordinary lockdown, which may wait for the guest.
            let lockdown = other.lockdown(&token);
            assert!(
                matches!(lockdown, Ok(()) | Err(Error::Aborted)),
                "{lockdown:?}"
            );
            other.unlock().unwrap();
        });
        let (guest, token) = (fortress.guest(), give_up.clone());
        let visitor = thread::spawn(move || {
            if let Some(visit) = guest.try_enter() {
                return Ok(*visit);
            }
            guest.read(|v| *v, &token)
        });
        *phase = 1;
        *phase = 2;
        drop(phase);
        // The gate may be shut again by the other guard's lockdown: let the guest (and
        // that lockdown) go.
        give_up.abort();
        opener.join().unwrap();
        let seen = visitor.join().unwrap();
        // The guest came after the phase began: it sees the whole phase, or gives up.
        assert!(matches!(seen, Ok(2) | Err(Error::Aborted)), "{seen:?}");
    });
}

/// (b) Another guard unlocks during a phase and then asks for a phase of its own; a
/// guest with a token that has already fired reads if the gate is open when it looks.
/// Proves that the second phase waits for the first to end and is ordered after it (it
/// adds to what the first wrote), that the two phases never overlap (both hold a
/// mutable access), and that the guest gets in only between or after the phases.
/// Catches a second phase claimed while the first still holds the gate (loom: a write
/// concurrent with a write), and the same owner-mark bug as the model above: with the
/// gate open under the mark, the guest may read during the phase, and the second
/// guard's scoped lockdown, told that a phase holds the gate and then that the gate is
/// open, spins (loom: "Model exceeded maximum number of branches").
#[test]
fn a_second_exclusive_by_another_guard_waits_for_the_phase() {
    // Three threads: bound 4 takes about 20 s in release, bound 5 over the budget.
    model_bounded(4, || {
        let fortress = open_holding(Layout::Word);
        let guard = fortress.guard();
        let mut phase = guard.exclusive(Abort::NEVER).unwrap();
        let other = fortress.guard();
        let second = thread::spawn(move || {
            other.unlock().unwrap();
            let mut phase = other.exclusive(Abort::NEVER).unwrap();
            *phase += 10;
            *phase
        });
        let guest = fortress.guest();
        let visitor = thread::spawn(move || guest.read(|v| *v, &fired()));
        *phase = 1;
        *phase = 2;
        drop(phase);
        assert_eq!(
            second.join().unwrap(),
            12,
            "the second phase saw the first's end"
        );
        let seen = visitor.join().unwrap();
        // Between the phases (2) or after both (12), or shut out; never 0 or 1.
        assert!(
            matches!(seen, Ok(2) | Ok(12) | Err(Error::Aborted)),
            "{seen:?}"
        );
        assert_eq!(fortress.guest().read(|v| *v, Abort::NEVER), Ok(12));
    });
}

/// (c) A plain `lockdown` by another guard during a phase returns `Ok`, while a guest
///    bounces off the closed gate (counted in the word for an instant): during the
///    phase the gate is closed with no visit inside, which is all a lockdown asks.
///    Catches the first draft of 0.4, whose lockdown waited for the bouncer's count to
///    drop; when the phase ended first, it slept on the open gate (loom: deadlock).
#[test]
fn a_plain_lockdown_during_a_phase_returns_though_a_guest_bounces() {
    model_bounded(3, || {
        let fortress = open_holding(Layout::Word);
        let guard = fortress.guard();
        let phase = guard.exclusive(&Abort::never()).unwrap();
        let other = fortress.guard();
        let locker = thread::spawn(move || other.lockdown(&Abort::never()));
        let guest = fortress.guest();
        let bouncer = thread::spawn(move || guest.try_enter().map(|visit| *visit));
        drop(phase);
        let _ = bouncer.join().unwrap();
        assert_eq!(locker.join().unwrap(), Ok(()));
    });
}
