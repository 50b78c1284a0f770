//! An adversarial review of `Fortress<T>`: every way found to interleave guards,
//! visits, phases, futures, kills, panics, `mem::forget` and handle drops, each
//! checked for what would break the rule "no `&T` while a `&mut T` exists" (or a
//! double or missing drop, a wrong `Ok`, a hang).
//!
//! The value under test is written non-atomically, field by field, in each phase
//! ([`Torn`]), so a visit that overlapped a phase would read a torn value natively,
//! and Miri's data-race detector flags it (or any missing happens-before edge between
//! a phase and a visit) even when the timing hides the tear:
//!
//! ```text
//! MIRIFLAGS=-Zmiri-ignore-leaks CARGO_TARGET_DIR=target/miri \
//!     cargo +nightly miri test --test review
//! ```

use fortress_gate::{
    Abort, Error, Exclusive, Fortress, Guard, Guest, Layout, OwnedExclusive, OwnedVisit, Visit,
    Worker,
};
use std::future::Future;
use std::hint::black_box;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::thread;
use std::time::{Duration, Instant};

const MIRI: bool = cfg!(miri);

/// Every layout, with the sharded ones small enough that threads share slots.
const LAYOUTS: [Layout; 4] = [
    Layout::Word,
    Layout::Sharded,
    Layout::Shards(2),
    Layout::ReadMostly,
];

/// Long enough never to fire unless something really hangs.
const HANG: Duration = Duration::from_secs(if MIRI { 900 } else { 60 });

// ----- Helpers -----

/// A value written one field at a time: a phase sets every field to one generation,
/// a visit checks that they agree. The `String` makes the value own heap memory, so a
/// double drop or a use after free shows under Miri (and usually natively).
#[derive(Debug)]
struct Torn {
    a: u64,
    b: u64,
    c: u64,
    s: String,
}

impl Default for Torn {
    fn default() -> Torn {
        Torn {
            a: 0,
            b: 0,
            c: 0,
            s: String::from("0"),
        }
    }
}

impl Torn {
    /// Writes generation `n`, field by field, with room between the writes for a
    /// visit to slip in if the gate let it.
    fn write(&mut self, n: u64) {
        self.a = n;
        spin();
        self.b = black_box(n);
        spin();
        self.c = n;
        self.s = n.to_string();
    }

    /// Reads every field; panics on a torn value.
    fn check(&self) -> u64 {
        let a = self.a;
        spin();
        let b = black_box(self.b);
        spin();
        let c = self.c;
        let s = self.s.parse::<u64>().unwrap_or(u64::MAX);
        assert!(
            a == b && b == c && c == s,
            "a torn value: a visit overlapped a phase ({a} {b} {c} {s})"
        );
        a
    }
}

/// A short pause that widens the window of an overlap natively (not under Miri: its
/// scheduler preempts anyway, and every step costs).
fn spin() {
    if !MIRI {
        for _ in 0..16 {
            std::hint::spin_loop();
        }
    }
}

/// A value that counts its drops.
#[derive(Debug)]
struct Counted {
    drops: Arc<AtomicUsize>,
    n: u64,
    _heap: Box<u64>,
}

impl Counted {
    fn new(n: u64) -> (Counted, Arc<AtomicUsize>) {
        let drops = Arc::new(AtomicUsize::new(0));
        let value = Counted {
            drops: Arc::clone(&drops),
            n,
            _heap: Box::new(n),
        };
        (value, drops)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

fn fired() -> Abort {
    let abort = Abort::new();
    abort.abort();
    abort
}

fn unlocked<T>(value: T, layout: Layout) -> Fortress<T> {
    let fortress = Fortress::holding_with(value, layout);
    fortress.guard().unlock().unwrap();
    fortress
}

/// Polls until `cond` holds, failing after [`HANG`].
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < HANG, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

fn poll_once<F: Future + ?Sized>(fut: std::pin::Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

/// A waker that unparks a thread: enough to block on a future without a runtime.
fn thread_waker() -> Waker {
    struct Unpark(thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    Waker::from(Arc::new(Unpark(thread::current())))
}

fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = thread_waker();
    let mut fut = pin!(fut);
    let start = Instant::now();
    loop {
        if let Poll::Ready(out) = poll_once(fut.as_mut(), &waker) {
            return out;
        }
        assert!(
            start.elapsed() < HANG,
            "a future still pending after {HANG:?}"
        );
        thread::park_timeout(Duration::from_millis(10));
    }
}

/// Whether the fortress admits a visit right now; the visit (if any) ends at once.
fn admits<T>(fortress: &Fortress<T>) -> bool {
    fortress.guest().try_enter().is_some()
}

// ----- 1. Phases racing visits on every layout -----

/// What the racing test's threads count, to check that both sides really ran.
#[derive(Default)]
struct Tally {
    visits: AtomicUsize,
    phases: AtomicUsize,
    back_outs: AtomicUsize,
}

/// One guard's work: scoped lockdowns of every form, some with a fired token (they
/// back out when a visit is inside or a phase holds the gate), some with a short
/// deadline; a plain lockdown and unlock between them, and an unlock during a phase.
fn guard_loop(guard: Guard<Torn>, me: u64, rounds: u64, tally: &Tally) {
    let soon = || Abort::after(Duration::from_millis(if MIRI { 50 } else { 2 }));
    for i in 0..rounds {
        let n = me * 1_000_000 + i;
        let phase = |value: &mut Torn| {
            value.check();
            value.write(n);
            // An unlock during the phase (its own guard's) changes nothing.
            let _ = guard.unlock();
            assert_eq!(value.check(), n);
        };
        let result = match i % 5 {
            0 => guard.exclusive(&soon()).map(|mut e| phase(&mut e)),
            1 => guard.exclusive(&fired()).map(|mut e| phase(&mut e)),
            2 => guard.exclusive_owned(&soon()).map(|mut e| phase(&mut e)),
            3 => block_on(guard.exclusive_async(&soon())).map(|mut e| phase(&mut e)),
            _ => {
                // A plain lockdown gives no access to the value; it must not open the
                // gate during another guard's phase, nor let a visit into one.
                let _ = guard.lockdown(&soon());
                let _ = guard.unlock();
                continue;
            }
        };
        match result {
            Ok(()) => tally.phases.fetch_add(1, SeqCst),
            Err(Error::Aborted) => tally.back_outs.fetch_add(1, SeqCst),
            Err(e) => panic!("{e:?} while the guards run"),
        };
        // Give the visitors a turn at the open gate, so that closes find visits
        // inside and drains, claims and back-outs race their leaving.
        thread::yield_now();
    }
}

/// One guest's work: visits of every form until `stop`.
fn visit_loop(guest: Guest<Torn>, stop: &AtomicBool, tally: &Tally) {
    let mut i = 0u64;
    while !stop.load(SeqCst) {
        let ok = match i % 4 {
            0 => guest.read(|v| v.check(), &Abort::never()).is_ok(),
            1 => guest.try_enter().map(|v| v.check()).is_some(),
            2 => guest
                .enter_owned(&Abort::never())
                .map(|v| v.check())
                .is_ok(),
            _ => match guest.enter(&Abort::never()) {
                Ok(visit) => {
                    // A visit that lasts a little: more chance to meet a phase.
                    visit.check();
                    thread::yield_now();
                    visit.check();
                    true
                }
                Err(_) => false,
            },
        };
        if ok {
            tally.visits.fetch_add(1, SeqCst);
        }
        i += 1;
        if MIRI || i % 64 == 0 {
            thread::yield_now();
        }
    }
}

fn phases_race_visits(layout: Layout, guards: u64, guests: usize, rounds: u64) {
    let fortress = unlocked(Torn::default(), layout);
    let tally = Tally::default();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let visitors: Vec<_> = (0..guests)
            .map(|_| {
                let guest = fortress.guest();
                let (stop, tally) = (&stop, &tally);
                s.spawn(move || visit_loop(guest, stop, tally))
            })
            .collect();
        let workers: Vec<_> = (1..=guards)
            .map(|me| {
                let guard = fortress.guard();
                let tally = &tally;
                s.spawn(move || guard_loop(guard, me, rounds, tally))
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        // A back-out may have left the gate closed (its record ended by another
        // guard's close): open it so that the visitors see `stop`, then kill the
        // fortress so that a visitor asleep at the gate wakes with `Shutdown`.
        stop.store(true, SeqCst);
        fortress.guard().unlock().unwrap();
        fortress.kill();
        for visitor in visitors {
            visitor.join().unwrap();
        }
    });
    let (visits, phases) = (tally.visits.load(SeqCst), tally.phases.load(SeqCst));
    eprintln!(
        "{layout:?}: {visits} visits, {phases} phases, {} back-outs",
        tally.back_outs.load(SeqCst)
    );
    assert!(phases > 0, "{layout:?}: no phase completed");
    assert!(visits > 0, "{layout:?}: no visit completed");
    fortress.wait().unwrap();
    assert!(!snapshot_owned(&fortress), "no phase left behind");
    let value = fortress.try_into_inner().unwrap();
    value.check();
}

fn snapshot_owned<T>(fortress: &Fortress<T>) -> bool {
    // `internals::snapshot` takes a `Fortress<()>`; read the state through `Debug`.
    format!("{fortress:?}").contains("owned: true")
}

#[test]
fn phases_of_racing_guards_never_overlap_a_visit_on_the_single_word() {
    let rounds = if MIRI { 24 } else { 20_000 };
    phases_race_visits(Layout::Word, 2, 3, rounds);
}

#[test]
fn phases_of_racing_guards_never_overlap_a_visit_on_a_sharded_fortress() {
    let rounds = if MIRI { 24 } else { 10_000 };
    phases_race_visits(Layout::Sharded, 2, 3, rounds);
}

#[test]
fn phases_of_racing_guards_never_overlap_a_visit_on_two_shards() {
    let rounds = if MIRI { 24 } else { 10_000 };
    phases_race_visits(Layout::Shards(2), 2, 3, rounds);
}

// ----- 2. Two phases at once -----

/// Two guards whose phases overlapped would both hold `&mut Torn`: each phase marks
/// itself in a counter that the other would see.
#[test]
fn two_guards_never_hold_a_phase_at_once_on_any_layout() {
    let rounds: u64 = if MIRI { 8 } else { 3_000 };
    for layout in LAYOUTS {
        let fortress = unlocked(Torn::default(), layout);
        let inside = AtomicUsize::new(0);
        let barrier = Barrier::new(3);
        thread::scope(|s| {
            for me in 1..=3u64 {
                let (guard, inside, barrier) = (fortress.guard(), &inside, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for i in 0..rounds {
                        let mut phase = match i % 3 {
                            0 => guard.exclusive(&Abort::never()).unwrap(),
                            1 => match guard.exclusive(&fired()) {
                                Ok(phase) => phase,
                                Err(e) => {
                                    assert_eq!(e, Error::Aborted);
                                    continue;
                                }
                            },
                            _ => {
                                let mut owned =
                                    block_on(guard.exclusive_owned_async(Abort::NEVER)).unwrap();
                                assert_eq!(inside.fetch_add(1, SeqCst), 0, "two phases");
                                owned.write(me * 1_000_000 + i);
                                inside.fetch_sub(1, SeqCst);
                                continue;
                            }
                        };
                        assert_eq!(inside.fetch_add(1, SeqCst), 0, "two phases at once");
                        phase.check();
                        phase.write(me * 1_000_000 + i);
                        inside.fetch_sub(1, SeqCst);
                    }
                });
            }
        });
        assert!(
            !fortress.is_locked(),
            "{layout:?}: the last phase's end opens"
        );
        fortress.try_into_inner().unwrap().check();
    }
}

// ----- 3. Other guards' operations during a phase -----

#[test]
fn no_operation_of_another_guard_lets_a_visit_into_a_phase_on_any_layout() {
    for layout in LAYOUTS {
        let fortress = unlocked(Counted::new(1).0, layout);
        let (mine, other) = (fortress.guard(), fortress.guard());
        let guest = fortress.guest();
        let mut phase = mine.exclusive(&Abort::never()).unwrap();
        phase.n = 2;
        assert_eq!(other.unlock(), Ok(()));
        assert!(guest.try_enter().is_none(), "{layout:?}: after unlock");
        assert_eq!(
            other.lockdown(&fired()),
            Ok(()),
            "a plain lockdown: no wait"
        );
        assert_eq!(other.unlock(), Ok(()));
        assert!(
            guest.try_enter().is_none(),
            "{layout:?}: after lockdown+unlock"
        );
        assert_eq!(other.exclusive(&fired()).err(), Some(Error::Aborted));
        assert_eq!(other.exclusive_owned(&fired()).err(), Some(Error::Aborted));
        assert_eq!(
            block_on(other.exclusive_async(&fired())).err(),
            Some(Error::Aborted)
        );
        assert!(guest.try_enter().is_none(), "{layout:?}: after back-outs");
        assert_eq!(
            guest.read(|v| v.n, &fired()),
            Err(Error::Aborted),
            "{layout:?}: a visit waits"
        );
        // The guard of the phase itself, through its own `&Guard`.
        assert_eq!(mine.unlock(), Ok(()));
        assert_eq!(mine.exclusive(&fired()).err(), Some(Error::Aborted));
        assert!(guest.try_enter().is_none(), "{layout:?}: own unlock");
        phase.n = 3;
        drop(phase);
        assert_eq!(guest.read(|v| v.n, &fired()), Ok(3), "{layout:?}");
    }
}

/// The guard of an `OwnedExclusive`, reached through `guard()` on another thread:
/// nothing it does opens the gate or starts a second phase.
#[test]
fn the_guard_of_an_owned_exclusive_on_another_thread_cannot_open_or_take_the_phase() {
    for layout in LAYOUTS {
        let fortress = unlocked(String::from("a"), layout);
        let mut owned = fortress.guard().exclusive_owned(&Abort::never()).unwrap();
        owned.push('b');
        let guest = fortress.guest();
        thread::scope(|s| {
            let owned = &owned;
            s.spawn(move || {
                let guard: &Guard<String> = owned.guard();
                assert_eq!(guard.unlock(), Ok(()));
                assert_eq!(guard.exclusive(&fired()).err(), Some(Error::Aborted));
                let soon = Abort::after(Duration::from_millis(5));
                assert_eq!(guard.exclusive_owned(&soon).err(), Some(Error::Aborted));
                let clone = guard.clone();
                assert_eq!(clone.lockdown(&fired()), Ok(()));
                assert_eq!(clone.unlock(), Ok(()));
                drop(clone);
                assert_eq!(owned.as_str(), "ab", "read through a shared borrow");
            });
        });
        assert!(guest.try_enter().is_none(), "{layout:?}: the phase holds");
        owned.push('c');
        // Dropped on another thread: the phase ends there and the gate opens.
        thread::spawn(move || drop(owned)).join().unwrap();
        assert_eq!(guest.read(|v| v.clone(), &fired()).as_deref(), Ok("abc"));
    }
}

/// A phase that calls `exclusive` again on its own guard, or visits, would deadlock;
/// with a token they give up, and the phase and the gate are as they were.
#[test]
fn reentry_from_inside_a_phase_or_a_visit_gives_up_and_changes_nothing() {
    for layout in LAYOUTS {
        let fortress = unlocked(0u64, layout);
        let (guard, guest) = (fortress.guard(), fortress.guest());
        {
            let mut phase = guard.exclusive(&Abort::never()).unwrap();
            *phase = 1;
            let soon = Abort::after(Duration::from_millis(5));
            assert_eq!(guard.exclusive(&soon).err(), Some(Error::Aborted));
            assert_eq!(guest.enter(&soon).err(), Some(Error::Aborted));
            assert!(fortress.is_locked());
            *phase = 2;
        }
        assert!(!fortress.is_locked(), "{layout:?}");
        // From inside a visit: the scoped close shuts the gate, must wait for this
        // very visit, gives up and backs out.
        let visit = guest.enter(&Abort::never()).unwrap();
        let soon = Abort::after(Duration::from_millis(5));
        assert_eq!(guard.exclusive(&soon).err(), Some(Error::Aborted));
        assert!(!fortress.is_locked(), "{layout:?}: backed out");
        assert_eq!(*visit, 2);
        let second = guest.try_enter().expect("the gate is open again");
        assert_eq!(*second, 2);
        drop((visit, second));
        *guard.exclusive(&fired()).unwrap() = 3;
        assert_eq!(guest.read(|v| *v, &fired()), Ok(3));
    }
}

// ----- 4. Back-outs racing another guard's phase -----

/// A scoped lockdown that shut the open gate (its record live) waits for a visit;
/// another guard's scoped lockdown waits beside it; when the visit leaves one of them
/// takes the phase (if the first, it ends it at once and the other takes the next);
/// then the first gives up while the second holds its phase. Its back-out must not
/// open the gate under the phase, on any layout and in every form.
#[test]
fn a_back_out_after_another_guard_took_the_phase_opens_nothing() {
    for layout in LAYOUTS {
        for form in 0..3 {
            let fortress = unlocked(Torn::default(), layout);
            let (first, second) = (fortress.guard(), fortress.guard());
            let guest = fortress.guest();
            let visit = guest.enter_owned(&Abort::never()).unwrap();
            let give_up = Abort::new();
            let phase_taken = AtomicBool::new(false);
            thread::scope(|s| {
                let (give_up, phase_taken) = (&give_up, &phase_taken);
                let first = &first;
                let waiter = s.spawn(move || match form {
                    0 => first.exclusive(give_up).map(drop),
                    1 => first.exclusive_owned(give_up).map(drop),
                    _ => block_on(first.exclusive_async(give_up)).map(drop),
                });
                until("the first close", || fortress.is_locked());
                let second = &second;
                let taker = s.spawn(move || {
                    let mut phase = second.exclusive(&Abort::never()).unwrap();
                    phase_taken.store(true, SeqCst);
                    phase.write(7);
                    // Hold the phase until the first call has backed out.
                    phase
                });
                drop(visit);
                until("the second phase", || phase_taken.load(SeqCst));
                give_up.abort();
                // Either it took the phase first (and ended it at once), or it gave
                // up with its close's record already ended by the other's close.
                let first = waiter.join().unwrap();
                assert!(matches!(first, Ok(()) | Err(Error::Aborted)), "{first:?}");
                let mut phase = taker.join().unwrap();
                assert!(
                    guest.try_enter().is_none(),
                    "{layout:?} form {form}: the back-out opened the gate under a phase"
                );
                phase.write(8);
                drop(phase);
            });
            assert_eq!(guest.read(|v| v.check(), &fired()), Ok(8));
        }
    }
}

// ----- 5. exclusive_async dropped at every stage, racing visits -----

/// A future of `exclusive_async` polled `polls` times (with a waker that does
/// nothing), then dropped; visits run on other threads all along and check the value.
fn drop_exclusive_async_after(layout: Layout, rounds: u64) {
    let fortress = unlocked(Torn::default(), layout);
    let stop = AtomicBool::new(false);
    let tally = Tally::default();
    thread::scope(|s| {
        let visitors: Vec<_> = (0..2)
            .map(|_| {
                let (guest, stop, tally) = (fortress.guest(), &stop, &tally);
                s.spawn(move || visit_loop(guest, stop, tally))
            })
            .collect();
        let guard = fortress.guard();
        let other = fortress.guard();
        for i in 0..rounds {
            let polls = i % 4;
            // Sometimes another guard's phase holds the gate across the polls, so the
            // future waits for it (its `Phase` stage).
            let held = (i % 3 == 0).then(|| other.exclusive(&Abort::never()).unwrap());
            let mut fut = Box::pin(guard.exclusive_async(Abort::NEVER));
            let mut done = None;
            for _ in 0..polls {
                if let Poll::Ready(out) = poll_once(fut.as_mut(), Waker::noop()) {
                    done = Some(out.unwrap());
                    break;
                }
                thread::yield_now();
            }
            if let Some(mut phase) = done {
                phase.write(i);
                drop(phase);
            }
            drop(fut);
            if let Some(mut held) = held {
                // The dropped future opened nothing under this phase.
                assert!(fortress.guest().try_enter().is_none(), "round {i}");
                held.write(i);
            }
            if i % 8 == 7 {
                // Whatever the dropped futures left, the gate can be opened again.
                guard.unlock().unwrap();
            }
        }
        stop.store(true, SeqCst);
        fortress.guard().unlock().unwrap();
        fortress.kill();
        for visitor in visitors {
            visitor.join().unwrap();
        }
    });
    fortress.wait().unwrap();
    fortress.try_into_inner().unwrap().check();
}

#[test]
fn exclusive_async_dropped_at_every_stage_never_lets_a_visit_overlap_a_phase() {
    let rounds = if MIRI { 8 } else { 2_000 };
    for layout in LAYOUTS {
        drop_exclusive_async_after(layout, rounds);
    }
}

/// The stages one by one, deterministically: before the first poll, while draining
/// (a visit inside), while waiting for another's phase, after completing.
#[test]
fn exclusive_async_dropped_at_each_stage_leaves_the_gate_as_documented() {
    for layout in LAYOUTS {
        let fortress = unlocked(Torn::default(), layout);
        let (guard, other, guest) = (fortress.guard(), fortress.guard(), fortress.guest());
        // Before its first poll: nothing happened.
        drop(guard.exclusive_async(Abort::NEVER));
        assert!(admits(&fortress), "{layout:?}: unpolled");
        // Draining: a visit is inside; dropped, it backs out and the visit goes on.
        let visit = guest.enter(&Abort::never()).unwrap();
        {
            let mut fut = pin!(guard.exclusive_async(Abort::NEVER));
            assert!(poll_once(fut.as_mut(), Waker::noop()).is_pending());
            assert!(
                fortress.is_locked() && !admits(&fortress),
                "{layout:?}: closed"
            );
        }
        assert!(admits(&fortress), "{layout:?}: backed out");
        visit.check();
        drop(visit);
        // Drained but not polled again: the claim happens only in a poll, so it still
        // backs out.
        let visit = guest.enter(&Abort::never()).unwrap();
        {
            let mut fut = pin!(guard.exclusive_async(Abort::NEVER));
            assert!(poll_once(fut.as_mut(), Waker::noop()).is_pending());
            drop(visit);
        }
        assert!(admits(&fortress), "{layout:?}: drained, then dropped");
        // Waiting for another guard's phase: dropped, the phase still holds.
        let mut held = other.exclusive(&Abort::never()).unwrap();
        {
            let mut fut = pin!(guard.exclusive_async(Abort::NEVER));
            assert!(poll_once(fut.as_mut(), Waker::noop()).is_pending());
        }
        assert!(!admits(&fortress), "{layout:?}: the phase holds");
        held.write(5);
        drop(held);
        assert!(admits(&fortress), "{layout:?}: the phase ended");
        // Completed: the `Exclusive` holds the gate until it is dropped, and dropping
        // the finished future (already consumed) changes nothing.
        let mut phase = block_on(guard.exclusive_async(Abort::NEVER)).unwrap();
        assert!(!admits(&fortress), "{layout:?}: completed");
        phase.write(6);
        drop(phase);
        assert_eq!(guest.read(|v| v.check(), &fired()), Ok(6), "{layout:?}");
    }
}

// ----- 6. Kills during a phase -----

#[test]
fn a_kill_during_a_phase_keeps_the_phase_and_its_end_admits_nobody() {
    for layout in LAYOUTS {
        let (value, drops) = Counted::new(1);
        let fortress = unlocked(value, layout);
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let mut phase = guard.exclusive(&Abort::never()).unwrap();
        let sleeper = {
            let guest = guest.clone();
            thread::spawn(move || guest.read(|v| v.n, &Abort::never()))
        };
        thread::sleep(Duration::from_millis(5));
        fortress.kill();
        assert_eq!(sleeper.join().unwrap(), Err(Error::Shutdown));
        phase.n = 2; // still ours
        assert_eq!(
            fortress.wait_with(&Abort::after(Duration::from_millis(5))),
            Err(Error::Aborted),
            "{layout:?}: wait waits for the phase"
        );
        drop(phase);
        assert_eq!(fortress.wait_with(&fired()), Ok(()), "{layout:?}");
        assert!(fortress.is_locked() && !admits(&fortress), "{layout:?}");
        assert_eq!(guard.exclusive(&fired()).err(), Some(Error::Shutdown));
        drop((guard, guest));
        let value = fortress.try_into_inner().unwrap();
        assert_eq!(value.n, 2);
        drop(value);
        assert_eq!(drops.load(SeqCst), 1, "{layout:?}: dropped once");
    }
}

/// A kill racing the claim and the end of phases and visits on other threads: the
/// visits already inside go on, no phase starts after the kill, and `wait` returns.
#[test]
fn kills_racing_phases_and_visits_end_clean() {
    let rounds = if MIRI { 3 } else { 200 };
    for layout in LAYOUTS {
        for round in 0..rounds {
            let fortress = unlocked(Torn::default(), layout);
            thread::scope(|s| {
                let guard = fortress.guard();
                s.spawn(move || {
                    for i in 0..4 {
                        match guard.exclusive(&Abort::never()) {
                            Ok(mut phase) => phase.write(i),
                            Err(e) => {
                                assert_eq!(e, Error::Shutdown);
                                break;
                            }
                        }
                    }
                });
                let guest = fortress.guest();
                s.spawn(move || {
                    while let Ok(visit) = guest.enter(&Abort::never()) {
                        visit.check();
                    }
                });
                if round % 2 == 0 {
                    thread::yield_now();
                }
                fortress.kill();
            });
            fortress.wait().unwrap();
            fortress.try_into_inner().unwrap().check();
        }
    }
}

// ----- 7. mem::forget, the last handles, and the value's drops -----

#[test]
fn a_forgotten_visit_or_exclusive_then_get_mut_or_try_into_inner_drops_the_value_once() {
    for layout in LAYOUTS {
        // A forgotten visit: the fortress stays occupied, but once the guest is gone
        // the fortress is the only handle and the value is its own again.
        let (value, drops) = Counted::new(1);
        let mut fortress = unlocked(value, layout);
        let guest = fortress.guest();
        std::mem::forget(guest.enter(&Abort::never()).unwrap());
        assert!(fortress.get_mut().is_none(), "the guest shares it");
        drop(guest);
        fortress.get_mut().unwrap().n = 2;
        let value = fortress.try_into_inner().unwrap();
        assert_eq!((value.n, drops.load(SeqCst)), (2, 0));
        drop(value);
        assert_eq!(drops.load(SeqCst), 1, "{layout:?}: dropped once");

        // A forgotten exclusive: the gate stays owned for good; the value too is the
        // fortress's own once the guard is gone.
        let (value, drops) = Counted::new(1);
        let mut fortress = unlocked(value, layout);
        let guard = fortress.guard();
        let mut phase = guard.exclusive(&Abort::never()).unwrap();
        phase.n = 3;
        std::mem::forget(phase);
        assert!(!admits(&fortress), "{layout:?}: the forgotten phase holds");
        drop(guard);
        assert_eq!(fortress.get_mut().map(|v| v.n), Some(3));
        drop(fortress);
        assert_eq!(
            drops.load(SeqCst),
            1,
            "{layout:?}: dropped with the fortress"
        );

        // A forgotten exclusive, then the last opener goes: the closed gate is killed,
        // so a visit waiting at it (or coming later) answers `Shutdown`, not a hang.
        let (value, drops) = Counted::new(1);
        let fortress = unlocked(value, layout);
        let guest = fortress.guest();
        let guard = fortress.guard();
        std::mem::forget(guard.exclusive(&Abort::never()).unwrap());
        let sleeper = {
            let guest = guest.clone();
            thread::spawn(move || guest.read(|v| v.n, &Abort::never()))
        };
        thread::sleep(Duration::from_millis(5));
        drop((guard, fortress));
        assert_eq!(sleeper.join().unwrap(), Err(Error::Shutdown), "{layout:?}");
        assert_eq!(guest.enter(&Abort::never()).err(), Some(Error::Shutdown));
        drop(guest);
        assert_eq!(
            drops.load(SeqCst),
            1,
            "{layout:?}: dropped with the last guest"
        );
    }
}

/// `try_into_inner` while an owned visit lives on another thread: `Err`, and once the
/// visit (the last other handle) is gone on that thread, `Ok` with what the phase
/// wrote, the value dropped exactly once.
#[test]
fn try_into_inner_races_an_owned_visit_ending_on_another_thread() {
    let rounds = if MIRI { 3 } else { 300 };
    for layout in LAYOUTS {
        for _ in 0..rounds {
            let (value, drops) = Counted::new(1);
            let fortress = unlocked(value, layout);
            *fortress.guard().exclusive(&Abort::never()).unwrap() = Counted {
                drops: Arc::clone(&drops),
                n: 2,
                _heap: Box::new(2),
            };
            assert_eq!(drops.load(SeqCst), 1, "the replaced value");
            let visit: OwnedVisit<Counted> = fortress.guest().enter_owned(&Abort::never()).unwrap();
            let reader = thread::spawn(move || {
                let n = visit.n;
                drop(visit);
                n
            });
            let mut fortress = fortress;
            let value = loop {
                match fortress.try_into_inner() {
                    Ok(value) => break value,
                    Err(back) => fortress = back,
                }
                thread::yield_now();
            };
            assert_eq!(reader.join().unwrap(), 2);
            assert_eq!((value.n, drops.load(SeqCst)), (2, 1));
            drop(value);
            assert_eq!(drops.load(SeqCst), 2, "{layout:?}: each value dropped once");
        }
    }
}

/// The last handle of all is an owned visit on another thread (the value is dropped
/// there, once), or an owned exclusive (its guard is the last opener: the phase ends
/// first, so the fortress is left open, not killed).
#[test]
fn the_value_is_dropped_once_by_whichever_handle_goes_last() {
    for layout in LAYOUTS {
        let (value, drops) = Counted::new(1);
        let fortress = unlocked(value, layout);
        let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
        drop(fortress);
        assert_eq!(drops.load(SeqCst), 0);
        thread::spawn(move || assert_eq!(visit.n, 1))
            .join()
            .unwrap();
        assert_eq!(drops.load(SeqCst), 1, "{layout:?}: owned visit last");

        let (value, drops) = Counted::new(1);
        let fortress = unlocked(value, layout);
        let guest = fortress.guest();
        let mut owned: OwnedExclusive<Counted> =
            fortress.guard().exclusive_owned(&Abort::never()).unwrap();
        drop(fortress); // the owned exclusive's guard is now the last opener
        owned.n = 4;
        thread::spawn(move || drop(owned)).join().unwrap();
        assert!(
            guest.try_enter().is_some(),
            "{layout:?}: the phase ended before its guard went"
        );
        assert_eq!(guest.read(|v| v.n, &Abort::never()), Ok(4));
        drop(guest);
        assert_eq!(drops.load(SeqCst), 1, "{layout:?}: owned exclusive last");

        // The last opener goes while the gate is closed and a visit is inside: the
        // fortress is killed, the visit goes on, and the value outlives it all.
        let (value, drops) = Counted::new(1);
        let fortress = unlocked(value, layout);
        let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
        let guard = fortress.guard();
        assert_eq!(guard.lockdown(&fired()), Err(Error::Aborted));
        drop((fortress, guard));
        assert_eq!(visit.n, 1);
        drop(visit);
        assert_eq!(
            drops.load(SeqCst),
            1,
            "{layout:?}: killed by the last opener"
        );
    }
}

// ----- 8. Panics -----

#[test]
fn panics_in_a_read_and_in_a_phase_end_them_and_poison_nothing() {
    for layout in LAYOUTS {
        let (value, drops) = Counted::new(1);
        let fortress = unlocked(value, layout);
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let read = catch_unwind(AssertUnwindSafe(|| {
            guest.read(|_| panic!("in a read"), &Abort::never())
        }));
        assert!(read.is_err());
        assert_eq!(fortress.guests(), 0, "{layout:?}: the visit ended");
        let phase = catch_unwind(AssertUnwindSafe(|| {
            let mut phase = guard.exclusive(&Abort::never()).unwrap();
            phase.n = 5;
            panic!("in a phase");
        }));
        assert!(phase.is_err());
        assert!(admits(&fortress), "{layout:?}: the phase ended");
        assert_eq!(
            guest.read(|v| v.n, &fired()),
            Ok(5),
            "written before the panic"
        );
        // A panic while the value is being replaced: the old value is dropped once,
        // by the assignment, before the panic.
        let replace = catch_unwind(AssertUnwindSafe(|| {
            let mut phase = guard.exclusive(&Abort::never()).unwrap();
            *phase = Counted {
                drops: Arc::clone(&drops),
                n: 6,
                _heap: Box::new(6),
            };
            panic!("after the assignment");
        }));
        assert!(replace.is_err());
        assert_eq!(drops.load(SeqCst), 1);
        drop((guard, guest));
        drop(fortress);
        assert_eq!(drops.load(SeqCst), 2, "{layout:?}");
    }
}

/// A waker whose `clone`, `wake` or `drop` panics, as chosen.
fn bomb_waker(clone: bool, wake: bool, drop: bool) -> Waker {
    struct Bomb {
        clone: bool,
        wake: bool,
        drop: bool,
    }
    fn data(b: &Bomb) -> *const () {
        Box::into_raw(Box::new(Bomb { ..*b })) as *const ()
    }
    // The vtable functions below take `*const Bomb` made by `data`.
    unsafe fn clone_fn(p: *const ()) -> RawWaker {
        // SAFETY: `p` came from `data`.
        let b = unsafe { &*(p as *const Bomb) };
        if b.clone {
            panic!("a waker that panics when cloned");
        }
        RawWaker::new(data(b), &VTABLE)
    }
    unsafe fn wake_fn(p: *const ()) {
        // SAFETY: `p` came from `data`; `wake` consumes it.
        unsafe { wake_by_ref_fn(p) };
        unsafe { drop_fn(p) };
    }
    unsafe fn wake_by_ref_fn(p: *const ()) {
        // SAFETY: `p` came from `data`.
        let b = unsafe { &*(p as *const Bomb) };
        if b.wake {
            panic!("a waker that panics when woken");
        }
    }
    unsafe fn drop_fn(p: *const ()) {
        // SAFETY: `p` came from `data` and is dropped once.
        let b = unsafe { Box::from_raw(p as *mut Bomb) };
        if b.drop {
            panic!("a waker that panics when dropped");
        }
    }
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_fn, wake_fn, wake_by_ref_fn, drop_fn);
    // SAFETY: the vtable's contract is kept by the functions above.
    unsafe { Waker::from_raw(RawWaker::new(data(&Bomb { clone, wake, drop }), &VTABLE)) }
}

/// `exclusive_async` polled with wakers that panic at every point: the panic reaches
/// the poller (or is contained), and afterwards the future either completes into a
/// phase that admits nobody, or, dropped, backs out; no phase is left behind and no
/// visit overlaps.
#[test]
fn exclusive_async_with_panicking_wakers_completes_or_backs_out_cleanly() {
    let kinds = [
        (true, false, false),
        (false, true, false),
        (false, false, true),
    ];
    for layout in LAYOUTS {
        for (clone, wake, dropp) in kinds {
            for finish in [false, true] {
                let what = format!("{layout:?} clone {clone} wake {wake} drop {dropp}");
                let fortress = unlocked(Torn::default(), layout);
                let (guard, guest) = (fortress.guard(), fortress.guest());
                let visit = guest.enter_owned(&Abort::never()).unwrap();
                let bomb = bomb_waker(clone, wake, dropp);
                let mut fut = Box::pin(guard.exclusive_async(Abort::NEVER));
                let first = catch_unwind(AssertUnwindSafe(|| poll_once(fut.as_mut(), &bomb)));
                if first.is_err() {
                    // Only a clone runs in the poll outside the crate's isolation. The
                    // panic unwound through the async block, which dropped its lockdown:
                    // that backs out, so the gate is open again and the visit goes on.
                    assert!(clone, "{what}: only a clone panics into the poll");
                    assert!(admits(&fortress), "{what}: the unwinding backed out");
                    visit.check();
                    drop(visit);
                    let dropped = catch_unwind(AssertUnwindSafe(move || drop(fut)));
                    assert!(dropped.is_ok(), "{what}: dropping must not panic");
                    let mut phase = guard.exclusive(&fired()).unwrap();
                    phase.write(9);
                    drop(phase);
                    assert_eq!(guest.read(|v| v.check(), &fired()), Ok(9), "{what}");
                    std::mem::forget(bomb);
                    continue;
                }
                assert!(first.unwrap().is_pending(), "{what}");
                assert!(fortress.is_locked(), "{what}: closed at the first poll");
                // The last visit leaves: this wakes the stored waker (a panicking wake
                // is contained by the crate).
                let left = catch_unwind(AssertUnwindSafe(move || drop(visit)));
                assert!(left.is_ok(), "{what}: leaving must not panic");
                if finish {
                    let mut phase = block_on(fut).unwrap();
                    assert!(!admits(&fortress), "{what}: the phase holds");
                    phase.write(9);
                    drop(phase);
                    assert_eq!(guest.read(|v| v.check(), &fired()), Ok(9), "{what}");
                } else {
                    let dropped = catch_unwind(AssertUnwindSafe(move || drop(fut)));
                    assert!(dropped.is_ok(), "{what}: dropping must not panic");
                    assert!(admits(&fortress), "{what}: backed out");
                }
                assert!(!snapshot_owned(&fortress), "{what}");
                std::mem::forget(bomb); // ours would panic as it is dropped
            }
        }
    }
}

// ----- 9. The thread bounds, as a table -----

/// `Probe::<X>::SEND` is `true` exactly when `X: Send` (the inherent constant wins
/// over the trait's default when its bound holds), and likewise for `Sync`: the
/// table is checked both ways, not only what must compile.
trait Fallback {
    const SEND: bool = false;
    const SYNC: bool = false;
}
struct SendProbe<X: ?Sized>(std::marker::PhantomData<X>);
impl<X: ?Sized> Fallback for SendProbe<X> {}
impl<X: ?Sized + Send> SendProbe<X> {
    const SEND: bool = true;
}
struct SyncProbe<X: ?Sized>(std::marker::PhantomData<X>);
impl<X: ?Sized> Fallback for SyncProbe<X> {}
impl<X: ?Sized + Sync> SyncProbe<X> {
    const SYNC: bool = true;
}

macro_rules! traits {
    ($x:ty) => {
        (SendProbe::<$x>::SEND, SyncProbe::<$x>::SYNC)
    };
}

/// `Send + Sync`, `Send` only, `Sync` only, neither.
type Both = String;
type SendOnly = std::cell::Cell<u8>;
type SyncOnly = std::sync::MutexGuard<'static, ()>;
type Neither = std::rc::Rc<u8>;

#[test]
fn the_thread_bounds_follow_arc_rwlock_and_std_guards_both_ways() {
    // The reference: `Arc<RwLock<T>>`.
    assert_eq!(traits!(Arc<std::sync::RwLock<Both>>), (true, true));
    assert_eq!(traits!(Arc<std::sync::RwLock<SendOnly>>), (false, false));
    assert_eq!(traits!(Arc<std::sync::RwLock<SyncOnly>>), (false, false));
    // Handles: `Send + Sync` exactly when `T: Send + Sync`.
    macro_rules! handle {
        ($h:ident) => {
            assert_eq!(traits!($h<Both>), (true, true), stringify!($h));
            assert_eq!(traits!($h<SendOnly>), (false, false), stringify!($h));
            assert_eq!(traits!($h<SyncOnly>), (false, false), stringify!($h));
            assert_eq!(traits!($h<Neither>), (false, false), stringify!($h));
        };
    }
    handle!(Fortress);
    handle!(Guard);
    handle!(Guest);
    // The owned visit may drop the value (the last handle): `Send` needs `T: Send +
    // Sync`; sharing it only reads: `Sync` needs `T: Sync`.
    assert_eq!(traits!(OwnedVisit<Both>), (true, true));
    assert_eq!(traits!(OwnedVisit<SendOnly>), (false, false));
    assert_eq!(traits!(OwnedVisit<SyncOnly>), (false, true));
    assert_eq!(traits!(OwnedVisit<Neither>), (false, false));
    assert_eq!(traits!(Visit<'static, Both>), (true, true));
    assert_eq!(traits!(Visit<'static, SendOnly>), (false, false));
    assert_eq!(traits!(Visit<'static, SyncOnly>), (false, true));
    assert_eq!(traits!(Visit<'static, Neither>), (false, false));
    // An exclusive moved to another thread writes (and may replace) the value there:
    // `Send` needs at least `T: Send`; shared, it only reads: `Sync` needs `T: Sync`.
    assert_eq!(traits!(Exclusive<'static, Both>), (true, true));
    assert_eq!(traits!(Exclusive<'static, SendOnly>), (false, false));
    assert_eq!(traits!(Exclusive<'static, SyncOnly>), (false, true));
    assert_eq!(traits!(Exclusive<'static, Neither>), (false, false));
    // The owned exclusive hands out its guard: both need `T: Send + Sync`.
    assert_eq!(traits!(OwnedExclusive<Both>), (true, true));
    assert_eq!(traits!(OwnedExclusive<SendOnly>), (false, false));
    assert_eq!(traits!(OwnedExclusive<SyncOnly>), (false, false));
    assert_eq!(traits!(OwnedExclusive<Neither>), (false, false));
}

/// The futures, by their values (an `impl Future` has no name to probe): the same
/// trick with a method, resolved where the future's type is concrete.
macro_rules! futures_send {
    ($fut:expr) => {{
        let fut = $fut;
        struct P<F>(std::marker::PhantomData<F>);
        #[allow(dead_code)]
        trait No {
            fn send(&self) -> bool {
                false
            }
        }
        impl<F> No for P<F> {}
        #[allow(dead_code)]
        impl<F: Send> P<F> {
            fn send(&self) -> bool {
                true
            }
        }
        fn probe<F>(_: &F) -> P<F> {
            P(std::marker::PhantomData)
        }
        let send = probe(&fut).send();
        drop(fut);
        send
    }};
}

#[test]
fn the_futures_are_send_exactly_when_the_value_is_send_and_sync() {
    let both = Fortress::holding(Both::new());
    let (guard, guest) = (both.guard(), both.guest());
    assert!(futures_send!(guest.enter_async(Abort::NEVER)));
    assert!(futures_send!(guest.enter_owned_async(Abort::NEVER)));
    assert!(futures_send!(guard.exclusive_async(Abort::NEVER)));
    assert!(futures_send!(guard.exclusive_owned_async(Abort::NEVER)));
    assert!(futures_send!(guest.visit_async(async {}, Abort::NEVER)));
    assert!(futures_send!(both.wait_async()));
    let send_only = Fortress::holding(SendOnly::new(0));
    let (guard, guest) = (send_only.guard(), send_only.guest());
    assert!(!futures_send!(guest.enter_async(Abort::NEVER)));
    assert!(!futures_send!(guest.enter_owned_async(Abort::NEVER)));
    assert!(!futures_send!(guard.exclusive_async(Abort::NEVER)));
    assert!(!futures_send!(guard.exclusive_owned_async(Abort::NEVER)));
    assert!(!futures_send!(guest.visit_async(async {}, Abort::NEVER)));
    // `lockdown_async` never touches the value: `Send` whatever it is.
    assert!(futures_send!(guard.lockdown_async(Abort::NEVER)));
}

// ----- 10. The fast paths alone, for Miri's data-race detector -----

/// Visits that only ever take the one-instruction fast path in (`try_enter`) against
/// a guard whose phases start by the fast claim when they can: no thread here shares
/// any atomic but the fortress's own, and the visitors never wait (so never meet a
/// fence or a futex), so under Miri each visit's reads must be ordered after the
/// phase before them by the fortress alone, and each phase's writes after the visits
/// before it. (A mutation of `try_enter`'s `Acquire` to `Relaxed` is reported here as
/// a data race, where the busier tests above hide it behind the waits' fences.)
#[test]
fn fast_path_visits_and_phases_are_ordered_by_the_fortress_alone() {
    let (rounds, tries) = if MIRI { (12, 40) } else { (5_000, 20_000) };
    for layout in LAYOUTS {
        let fortress = unlocked(Torn::default(), layout);
        let guard = fortress.guard();
        let visitors: Vec<_> = (0..2)
            .map(|_| {
                let guest = fortress.guest();
                thread::spawn(move || {
                    let mut seen = 0;
                    for _ in 0..tries {
                        if let Some(visit) = guest.try_enter() {
                            visit.check();
                            seen += 1;
                        }
                        thread::yield_now();
                    }
                    seen
                })
            })
            .collect();
        let phases = thread::spawn(move || {
            for n in 1..=rounds {
                guard.exclusive(&Abort::never()).unwrap().write(n);
                thread::yield_now();
            }
        });
        phases.join().unwrap();
        let seen: u64 = visitors.into_iter().map(|v| v.join().unwrap()).sum();
        assert!(seen > 0, "{layout:?}: no visit got in");
        assert_eq!(fortress.try_into_inner().unwrap().check(), rounds);
    }
}

// ----- 11. A drain that looks again after the shuts field moved -----

/// Brings the fortress, with one visit inside and a scoped lockdown draining since its
/// close, to the word that lets that lockdown's next look go on at once: the shuts
/// field moved since its close (another scoped close shut the reopened gate, then
/// backed out), and the gate is closed again (a plain lockdown that gave up) with the
/// visit still inside. The next look must drain on, not take the phase.
fn reclose_under_a_draining_scoped_lockdown<T>(fortress: &Fortress<T>) {
    let other = fortress.guard();
    other.unlock().unwrap(); // ends the draining call's record; the gate opens
    assert!(!fortress.is_locked());
    // A scoped close of the open gate with the visit inside: it moves the shuts
    // field, gives up at once and reopens.
    assert_eq!(other.exclusive(&fired()).err(), Some(Error::Aborted));
    assert!(!fortress.is_locked(), "its back-out reopened");
    // A plain lockdown that gives up leaves the gate closed, the visit inside.
    assert_eq!(other.lockdown(&fired()), Err(Error::Aborted));
    assert!(fortress.is_locked());
}

#[test]
fn a_draining_exclusive_that_looks_again_after_another_close_never_takes_the_phase_over_a_visit() {
    for layout in LAYOUTS {
        // Async: the future is polled again by hand, whether woken or not.
        let fortress = unlocked(Torn::default(), layout);
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let visit = guest.enter(&Abort::never()).unwrap();
        let mut fut = Box::pin(guard.exclusive_async(Abort::NEVER));
        assert!(poll_once(fut.as_mut(), Waker::noop()).is_pending());
        reclose_under_a_draining_scoped_lockdown(&fortress);
        match poll_once(fut.as_mut(), Waker::noop()) {
            Poll::Pending => {}
            Poll::Ready(phase) => {
                let phase_taken = phase.is_ok();
                drop(phase);
                panic!("{layout:?}: a phase taken ({phase_taken}) with a visit inside");
            }
        }
        visit.check();
        drop(visit);
        let mut phase = block_on(fut).unwrap();
        phase.write(1);
        drop(phase);
        assert_eq!(guest.read(|v| v.check(), &fired()), Ok(1));

        // Blocking: its token firing makes it look again. Here the waiter runs beside
        // the re-close, so it may also wake between its steps and, seeing the shuts
        // field move, close again on its own: the steps are made without asserting the
        // gate's state in between, and the token fires however this thread leaves the
        // scope, so a failure cannot leave the waiter asleep.
        let fortress = unlocked(Torn::default(), layout);
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let visit = guest.enter_owned(&Abort::never()).unwrap();
        let give_up = Abort::new();
        thread::scope(|s| {
            let (guard, give_up) = (&guard, &give_up);
            let waiter = s.spawn(move || guard.exclusive(give_up).map(|mut e| e.write(2)));
            struct FireOnExit<'a>(&'a Abort);
            impl Drop for FireOnExit<'_> {
                fn drop(&mut self) {
                    self.0.abort();
                }
            }
            let _fire = FireOnExit(give_up);
            until("the scoped close", || fortress.is_locked());
            let other = fortress.guard();
            other.unlock().unwrap();
            assert_eq!(other.exclusive(&fired()).err(), Some(Error::Aborted));
            let _ = other.lockdown(&fired());
            give_up.abort();
            assert_eq!(
                waiter.join().unwrap(),
                Err(Error::Aborted),
                "{layout:?}: a phase taken with a visit inside"
            );
        });
        visit.check();
        drop(visit);
    }
}

// ----- 12. Wakers that re-enter the fortress -----

/// A task waker that, each time it is woken, works the fortress itself: a visit if
/// the gate admits one (checking the value), a scoped lockdown with a fired token (a
/// phase if it gets one, writing the value), an unlock. It runs wherever the crate
/// wakes it: inside a phase's end, a claim, a visit's leaving, a kill.
struct Meddler {
    guard: Guard<Torn>,
    guest: Guest<Torn>,
    wakes: AtomicUsize,
    phases: AtomicUsize,
}

impl std::task::Wake for Meddler {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let n = self.wakes.fetch_add(1, SeqCst) as u64;
        if let Some(visit) = self.guest.try_enter() {
            visit.check();
        }
        if let Ok(mut phase) = self.guard.exclusive(&fired()) {
            assert!(self.guest.try_enter().is_none(), "a visit inside a phase");
            phase.check();
            phase.write(1_000 + n);
            self.phases.fetch_add(1, SeqCst);
        }
        let _ = self.guard.unlock();
    }
}

#[test]
fn wakers_that_reenter_the_fortress_never_see_a_visit_beside_a_phase() {
    for layout in LAYOUTS {
        let fortress = unlocked(Torn::default(), layout);
        let meddler = Arc::new(Meddler {
            guard: fortress.guard(),
            guest: fortress.guest(),
            wakes: AtomicUsize::new(0),
            phases: AtomicUsize::new(0),
        });
        let waker = Waker::from(Arc::clone(&meddler));
        let (guard, other, guest) = (fortress.guard(), fortress.guard(), fortress.guest());

        // In the drain group: a scoped lockdown waits for a visit; the visit's leaving
        // wakes the meddler, which may take the phase before this future does.
        let visit = guest.enter(&Abort::never()).unwrap();
        let mut fut = Box::pin(guard.exclusive_async(Abort::NEVER));
        assert!(poll_once(fut.as_mut(), &waker).is_pending());
        drop(visit);
        let mut phase = block_on(fut).unwrap();
        assert!(guest.try_enter().is_none(), "{layout:?}");
        phase.write(1);

        // In the gate group: a scoped lockdown and a visit wait for this phase; its
        // end wakes the meddler from inside the `Exclusive`'s drop.
        let mut waiting = Box::pin(other.exclusive_async(Abort::NEVER));
        assert!(poll_once(waiting.as_mut(), &waker).is_pending());
        let mut entry = Box::pin(guest.enter_async(Abort::NEVER));
        assert!(poll_once(entry.as_mut(), &waker).is_pending());
        drop(phase);
        // Whoever got in first, the value is whole and the two never overlap.
        match poll_once(entry.as_mut(), &waker) {
            Poll::Ready(visit) => {
                let visit = visit.unwrap();
                visit.check();
                assert!(
                    poll_once(waiting.as_mut(), &waker).is_pending(),
                    "{layout:?}"
                );
                drop(visit);
            }
            Poll::Pending => {}
        }
        drop(entry);
        let mut second = block_on(waiting).unwrap();
        assert!(guest.try_enter().is_none(), "{layout:?}");
        second.write(2);
        // A kill during this phase wakes whatever waits (the meddler's own calls then
        // answer `Shutdown`), and the phase goes on.
        let mut late = Box::pin(guard.exclusive_async(Abort::NEVER));
        assert!(poll_once(late.as_mut(), &waker).is_pending());
        fortress.kill();
        assert_eq!(
            poll_once(late.as_mut(), &waker).map(|r| r.err()),
            Poll::Ready(Some(Error::Shutdown))
        );
        drop(late);
        second.write(3);
        drop(second);
        fortress.wait().unwrap();
        assert!(meddler.wakes.load(SeqCst) > 0, "{layout:?}: never woken");
        drop((guard, other, guest, waker));
        // The meddler holds a guard and a guest: a cycle only through the waker,
        // which the crate no longer stores.
        let meddler = Arc::into_inner(meddler).expect("no waker left stored");
        drop(meddler);
        let value = fortress.try_into_inner().unwrap();
        assert_eq!(value.check(), 3);
    }
}
