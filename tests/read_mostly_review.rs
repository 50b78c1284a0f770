//! Adversarial review of `Layout::ReadMostly` through the public API (plus
//! `internals::{snapshot, reader_slots}`). Every wait is bounded, so a lost wake-up is
//! a failure, not a hang. Where a rule can be checked on the single word as well, the
//! same scenario runs on `Layout::Word` (and, for information, `Layout::Sharded`): every
//! rule must hold identically. (Written by an adversarial review of the layout; its
//! three races of a fired token against another guard's pass failed before the passes
//! dropped their references and took their phases inside the pass.) Not under Miri: it
//! races thousands of rounds.
#![cfg(not(miri))]

use fortress_gate::internals::{reader_slots, snapshot, Kind, Waiters};
use fortress_gate::{read_mostly_barrier, Abort, Error, Fortress, Layout, OwnedVisit, Worker};
use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU64, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

mod common;

/// The layout of `common::fortress` (not used here: each test names its layouts).
#[allow(dead_code)]
const LAYOUT: Layout = Layout::ReadMostly;

use common::{within, HANG};

const RM: Layout = Layout::ReadMostly;
const WORD: Layout = Layout::Word;

// ------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------

fn join_within<T>(what: &str, handle: thread::JoinHandle<T>) -> T {
    let start = Instant::now();
    while !handle.is_finished() {
        assert!(
            start.elapsed() < HANG,
            "{what}: still blocked after {HANG:?}"
        );
        thread::sleep(Duration::from_millis(1));
    }
    match handle.join() {
        Ok(out) => out,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < HANG, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

fn until_flag<T>(f: &Fortress<T>, waiters: Waiters, kind: Kind) {
    until(&format!("{waiters:?} {kind:?} flagged"), || {
        snapshot(f).has(waiters, kind)
    });
}

fn fired() -> Abort {
    let a = Abort::new();
    a.abort();
    a
}

fn unlocked<T>(value: T, layout: Layout) -> Fortress<T> {
    let f = Fortress::holding_with(value, layout);
    f.guard().unlock().unwrap();
    f
}

/// Whether the read-mostly fortresses really count beside the word in this run.
fn counts_beside() -> bool {
    read_mostly_barrier().is_some()
}

struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct CountingWaker(AtomicUsize);
impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}
fn counting_waker() -> (Waker, Arc<CountingWaker>) {
    let c = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (Waker::from(c.clone()), c)
}

fn poll_once<F: Future + ?Sized>(fut: std::pin::Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

/// Blocks on `fut` by polling it whenever its waker fires (and every 50 ms anyway is
/// NOT done: a lost wake-up must show). Fails after `HANG`.
fn block_on_strict<F: Future>(what: &str, fut: F) -> F::Output {
    struct Flag(Mutex<bool>, std::sync::Condvar);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            *self.0.lock().unwrap() = true;
            self.1.notify_all();
        }
    }
    let flag = Arc::new(Flag(Mutex::new(false), std::sync::Condvar::new()));
    let waker = Waker::from(flag.clone());
    let mut fut = pin!(fut);
    let start = Instant::now();
    loop {
        if let Poll::Ready(out) = poll_once(fut.as_mut(), &waker) {
            return out;
        }
        let mut woken = flag.0.lock().unwrap();
        while !*woken {
            let left = HANG
                .checked_sub(start.elapsed())
                .unwrap_or_else(|| panic!("{what}: still pending after {HANG:?} (lost wake-up)"));
            woken = flag.1.wait_timeout(woken, left).unwrap().0;
            assert!(
                start.elapsed() < HANG,
                "{what}: still pending after {HANG:?} (lost wake-up)"
            );
        }
        *woken = false;
    }
}

/// Book-keeping shared by visitors and phases: a visit marks itself present and checks
/// that no phase runs; a phase marks itself and checks that no visit is present.
#[derive(Default)]
struct Watch {
    present: AtomicI64,
    in_phase: AtomicBool,
    overlaps: AtomicU64,
    visits: AtomicU64,
    phases: AtomicU64,
    stop: AtomicBool,
}

impl Watch {
    fn visit_begin(&self, value: &[u64; 2]) {
        self.present.fetch_add(1, SeqCst);
        if self.in_phase.load(SeqCst) || value[0] != value[1] {
            self.overlaps.fetch_add(1, SeqCst);
        }
    }
    fn visit_end(&self, value: &[u64; 2]) {
        if self.in_phase.load(SeqCst) || value[0] != value[1] {
            self.overlaps.fetch_add(1, SeqCst);
        }
        self.present.fetch_sub(1, SeqCst);
        self.visits.fetch_add(1, Relaxed);
    }
    fn phase(&self, value: &mut [u64; 2]) {
        self.in_phase.store(true, SeqCst);
        if self.present.load(SeqCst) != 0 {
            self.overlaps.fetch_add(1, SeqCst);
        }
        value[0] += 1;
        std::hint::spin_loop();
        value[1] += 1;
        if self.present.load(SeqCst) != 0 {
            self.overlaps.fetch_add(1, SeqCst);
        }
        self.in_phase.store(false, SeqCst);
        self.phases.fetch_add(1, Relaxed);
    }
}

/// An owned visit with the watch's book-keeping, ended on drop (possibly in a
/// thread-local destructor, possibly on another thread).
struct Watched {
    visit: Option<OwnedVisit<[u64; 2]>>,
    watch: Arc<Watch>,
}

impl Watched {
    fn new(visit: OwnedVisit<[u64; 2]>, watch: Arc<Watch>) -> Watched {
        watch.visit_begin(&visit);
        Watched {
            visit: Some(visit),
            watch,
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(visit) = self.visit.take() {
            self.watch.visit_end(&visit);
            drop(visit);
        }
    }
}

thread_local! {
    static TLS_HELD: RefCell<Vec<Watched>> = const { RefCell::new(Vec::new()) };
}

// ------------------------------------------------------------------------------------
// 1. The abort rule under concurrency: "a call that did not need to wait never
//    answers Aborted". Word is the reference.
// ------------------------------------------------------------------------------------

/// A thread sees the kill (its `try_enter` is refused: only the kill can refuse it
/// here) while no visit is inside; `wait_with` on a fired token must then answer `Ok`
/// ("as every wait, it answers Ok without looking at abort if it need not wait").
/// Returns how many of `rounds` answered `Aborted`.
fn wait_with_fired_after_kill_seen(layout: Layout, rounds: usize) -> (usize, Vec<String>) {
    let mut bad = 0;
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let fortress = unlocked((), layout);
        let guest = fortress.guest();
        let start = Arc::new(Barrier::new(2));
        let killer = {
            let (f, start) = (fortress.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                f.kill();
            })
        };
        start.wait();
        // Spin until the kill is visible; every visit made meanwhile ends at once.
        let t0 = Instant::now();
        while let Some(v) = guest.try_enter() {
            drop(v);
            assert!(t0.elapsed() < HANG);
        }
        let answer = fortress.wait_with(&fired());
        if answer != Ok(()) {
            bad += 1;
            if samples.len() < 3 {
                samples.push(format!("{answer:?} with state {:?}", snapshot(&fortress)));
            }
        }
        killer.join().unwrap();
        // Once the kill returned, the answer must certainly be Ok.
        assert_eq!(
            fortress.wait_with(&fired()),
            Ok(()),
            "{layout:?}: after kill returned"
        );
    }
    (bad, samples)
}

#[test]
fn word_wait_with_fired_token_once_kill_is_seen_and_nobody_inside_is_ok() {
    let (bad, samples) = wait_with_fired_after_kill_seen(WORD, 1000);
    assert_eq!(bad, 0, "Word answered Aborted {bad} times: {samples:?}");
}

#[test]
fn sharded_wait_with_fired_token_once_kill_is_seen_and_nobody_inside_is_ok() {
    let (bad, samples) = wait_with_fired_after_kill_seen(Layout::Sharded, 1000);
    assert_eq!(
        bad, 0,
        "Sharded (for comparison) answered Aborted {bad}/1000 times: {samples:?}"
    );
}

#[test]
fn read_mostly_wait_with_fired_token_once_kill_is_seen_and_nobody_inside_is_ok() {
    let (bad, samples) = wait_with_fired_after_kill_seen(RM, 1000);
    assert_eq!(
        bad, 0,
        "ReadMostly: wait_with(fired) answered Aborted {bad}/1000 times although the kill \
         was visible and no visit was inside (Word: never): {samples:?}"
    );
}

/// Two guards, no guest ever. Guard A loops on `lockdown(never)` + `unlock()`
/// (`toggle_both`) or on `unlock()` alone; guard B calls `lockdown(&fired)` or
/// `exclusive(&fired)` in a loop. Nobody is ever inside, so by "a call that did not
/// need to wait never answers Aborted" / "a lockdown of a fortress with no visit inside
/// succeeds", B must never see `Aborted` (the single word never answers it here).
/// Returns (calls, aborted, samples of the state before/after a failing call).
fn fired_calls_racing_another_guard(
    layout: Layout,
    toggle_both: bool,
    exclusive: bool,
    for_: Duration,
) -> (u64, u64, Vec<String>) {
    let fortress = unlocked((), layout);
    let stop = Arc::new(AtomicBool::new(false));
    let toggler = {
        let (g, stop) = (fortress.guard(), stop.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Relaxed) {
                if toggle_both {
                    g.lockdown(&Abort::never()).unwrap();
                }
                g.unlock().unwrap();
                n += 1;
            }
            n
        })
    };
    let guard = fortress.guard();
    let token = fired();
    let (mut calls, mut bad, mut samples) = (0u64, 0u64, Vec::new());
    let t0 = Instant::now();
    while t0.elapsed() < for_ {
        calls += 1;
        let answer = if exclusive {
            guard.exclusive(&token).map(drop)
        } else {
            guard.lockdown(&token)
        };
        if answer.is_err() {
            bad += 1;
            if samples.len() < 2 {
                samples.push(format!(
                    "call {calls} -> {answer:?}, state after: {:?}",
                    snapshot(&fortress)
                ));
            }
        }
    }
    stop.store(true, Relaxed);
    let toggles = toggler.join().unwrap();
    samples.push(format!("{toggles} toggles by guard A"));
    (calls, bad, samples)
}

fn check_fired_race(layout: Layout, toggle_both: bool, exclusive: bool) {
    let (calls, bad, samples) = fired_calls_racing_another_guard(
        layout,
        toggle_both,
        exclusive,
        Duration::from_millis(1000),
    );
    let what = if exclusive {
        "exclusive(&fired)"
    } else {
        "lockdown(&fired)"
    };
    let other = if toggle_both {
        "lockdown+unlock"
    } else {
        "unlock only"
    };
    assert_eq!(
        bad, 0,
        "{layout:?}: {what} answered Aborted {bad}/{calls} times with nobody ever inside, \
         while another guard looped on {other}: {samples:?}"
    );
}

#[test]
fn word_fired_lockdown_racing_a_toggling_guard_never_aborts() {
    check_fired_race(WORD, true, false);
}

#[test]
fn read_mostly_fired_lockdown_racing_a_toggling_guard_never_aborts() {
    check_fired_race(RM, true, false);
}

#[test]
fn sharded_fired_lockdown_racing_a_toggling_guard_never_aborts() {
    check_fired_race(Layout::Sharded, true, false);
}

#[test]
fn word_fired_exclusive_racing_an_unlocking_guard_never_aborts() {
    check_fired_race(WORD, false, true);
}

#[test]
fn read_mostly_fired_exclusive_racing_an_unlocking_guard_never_aborts() {
    check_fired_race(RM, false, true);
}

#[test]
fn sharded_fired_exclusive_racing_an_unlocking_guard_never_aborts() {
    check_fired_race(Layout::Sharded, false, true);
}

/// The same two races with a lone guard (no other guard acts): never `Aborted` on any
/// layout. A control: the failures above need a second guard.
#[test]
fn read_mostly_fired_lockdown_and_exclusive_alone_never_abort() {
    let fortress = unlocked((), RM);
    let guard = fortress.guard();
    let token = fired();
    for i in 0..2000 {
        assert_eq!(guard.lockdown(&token), Ok(()), "round {i}");
        guard.unlock().unwrap();
        assert!(guard.exclusive(&token).is_ok(), "round {i}");
        assert_eq!(guard.lockdown(&token), Ok(()), "round {i}");
        assert!(guard.exclusive(&token).is_ok(), "round {i}");
    }
}

// ------------------------------------------------------------------------------------
// 2. Exclusion: no visit overlaps an exclusive phase, whatever else happens.
// ------------------------------------------------------------------------------------

/// The chaos scenario: persistent visitors (try_enter, enter with deadlines), visits
/// handed to an ender thread, short-lived threads that leave visits in thread-locals
/// (ended in their destructors, possibly after the crate's per-thread list is gone),
/// one guard taking exclusive phases, a second guard unlocking, locking down (fired,
/// short deadlines, never) at random. No visit may overlap a phase.
fn chaos(layout: Layout, for_: Duration) -> Arc<Watch> {
    let fortress = unlocked([0u64; 2], layout);
    let watch = Arc::new(Watch::default());
    let (ender_tx, ender_rx) = mpsc::channel::<Watched>();
    let ender = thread::spawn(move || {
        for w in ender_rx {
            thread::yield_now();
            drop(w);
        }
    });
    let mut threads = Vec::new();
    for id in 0..3u64 {
        let (guest, watch, ender_tx) = (fortress.guest(), watch.clone(), ender_tx.clone());
        threads.push(thread::spawn(move || {
            let mut rng = Rng::new(id + 1);
            while !watch.stop.load(Relaxed) {
                match rng.below(6) {
                    0 | 1 => {
                        if let Some(v) = guest.try_enter() {
                            watch.visit_begin(&v);
                            watch.visit_end(&v);
                        } else {
                            thread::yield_now();
                        }
                    }
                    2 => {
                        let _ = guest.read(
                            |v| {
                                watch.visit_begin(v);
                                watch.visit_end(v);
                            },
                            &Abort::after(Duration::from_millis(2)),
                        );
                    }
                    3 => {
                        if let Ok(v) = guest.enter_owned(&Abort::after(Duration::from_millis(2))) {
                            let _ = ender_tx.send(Watched::new(v, watch.clone()));
                        }
                    }
                    4 => {
                        // A short-lived thread: a visit, then one kept in a thread-local
                        // that ends as the thread exits.
                        let (guest, watch) = (guest.clone(), watch.clone());
                        let early = rng.below(2) == 0;
                        thread::spawn(move || {
                            if early {
                                TLS_HELD.with(|h| assert!(h.borrow().is_empty()));
                            }
                            if let Some(v) = guest.try_enter() {
                                watch.visit_begin(&v);
                                watch.visit_end(&v);
                            }
                            if let Ok(v) =
                                guest.enter_owned(&Abort::after(Duration::from_millis(2)))
                            {
                                let w = Watched::new(v, watch.clone());
                                TLS_HELD.with(|h| h.borrow_mut().push(w));
                            }
                        })
                        .join()
                        .unwrap();
                    }
                    _ => {
                        // Nested visits on one thread.
                        if let Some(a) = guest.try_enter() {
                            watch.visit_begin(&a);
                            if let Some(b) = guest.try_enter() {
                                watch.visit_begin(&b);
                                watch.visit_end(&b);
                            }
                            watch.visit_end(&a);
                        }
                    }
                }
            }
        }));
    }
    // The other guard.
    {
        let (guard, watch) = (fortress.guard(), watch.clone());
        threads.push(thread::spawn(move || {
            let mut rng = Rng::new(99);
            while !watch.stop.load(Relaxed) {
                match rng.below(5) {
                    0 | 1 => {
                        let _ = guard.unlock();
                    }
                    2 => {
                        let _ = guard.lockdown(&fired());
                    }
                    3 => {
                        let _ = guard.lockdown(&Abort::after(Duration::from_micros(200)));
                    }
                    _ => {
                        let _ = guard.lockdown(&Abort::after(Duration::from_millis(5)));
                    }
                }
                thread::yield_now();
            }
        }));
    }
    let guard = fortress.guard();
    let t0 = Instant::now();
    while t0.elapsed() < for_ {
        match guard.exclusive(&Abort::after(Duration::from_millis(20))) {
            Ok(mut phase) => watch.phase(&mut phase),
            Err(Error::Aborted) => {}
            Err(e) => panic!("{e:?}"),
        }
        thread::yield_now();
    }
    watch.stop.store(true, SeqCst);
    guard.unlock().unwrap();
    for t in threads {
        join_within("a chaos thread", t);
    }
    drop(ender_tx);
    join_within("the ender", ender);
    // Quiescent: nobody inside.
    assert_eq!(fortress.guests(), 0, "{layout:?}: guests() after the chaos");
    assert_eq!(watch.present.load(SeqCst), 0);
    within("a final lockdown", move || {
        fortress.guard().lockdown(&Abort::never())
    })
    .unwrap();
    watch
}

#[test]
fn read_mostly_chaos_no_visit_overlaps_a_phase() {
    let watch = chaos(RM, Duration::from_millis(2500));
    assert_eq!(
        watch.overlaps.load(SeqCst),
        0,
        "visits overlapped phases (visits {}, phases {})",
        watch.visits.load(Relaxed),
        watch.phases.load(Relaxed)
    );
    assert!(watch.phases.load(Relaxed) > 0 && watch.visits.load(Relaxed) > 0);
}

#[test]
fn word_chaos_no_visit_overlaps_a_phase() {
    let watch = chaos(WORD, Duration::from_millis(1500));
    assert_eq!(watch.overlaps.load(SeqCst), 0);
}

/// A single guard (so nothing reopens behind it): after each `lockdown` that returns
/// `Ok`, no visit is present until it unlocks. Visitors churn with visits that end on
/// other threads and in short-lived threads. Mixes aborted lockdowns (the gate stays
/// closed: no visit may start), then unlock, then lockdown.
#[test]
fn read_mostly_single_guard_lockdown_ok_means_empty_until_unlock() {
    let fortress = unlocked([0u64; 2], RM);
    let watch = Arc::new(Watch::default());
    let (ender_tx, ender_rx) = mpsc::channel::<Watched>();
    let ender = thread::spawn(move || ender_rx.into_iter().for_each(drop));
    let mut threads = Vec::new();
    for id in 0..2u64 {
        let (guest, watch, ender_tx) = (fortress.guest(), watch.clone(), ender_tx.clone());
        threads.push(thread::spawn(move || {
            let mut rng = Rng::new(id + 7);
            while !watch.stop.load(Relaxed) {
                match rng.below(3) {
                    0 => {
                        if let Ok(v) = guest.enter_owned(&Abort::after(Duration::from_millis(1))) {
                            let _ = ender_tx.send(Watched::new(v, watch.clone()));
                        }
                    }
                    1 => {
                        if let Some(v) = guest.try_enter() {
                            watch.visit_begin(&v);
                            watch.visit_end(&v);
                        }
                    }
                    _ => {
                        let (guest, watch) = (guest.clone(), watch.clone());
                        thread::spawn(move || {
                            if let Some(v) = guest.try_enter() {
                                watch.visit_begin(&v);
                                watch.visit_end(&v);
                            }
                        })
                        .join()
                        .unwrap();
                    }
                }
            }
        }));
    }
    let guard = fortress.guard();
    let guest = fortress.guest();
    let t0 = Instant::now();
    let mut rounds = 0;
    while t0.elapsed() < Duration::from_millis(2000) {
        rounds += 1;
        let token = match rounds % 3 {
            0 => fired(),
            1 => Abort::after(Duration::from_micros(300)),
            _ => Abort::never(),
        };
        match guard.lockdown(&token) {
            Ok(()) => {
                let present = watch.present.load(SeqCst);
                assert_eq!(
                    present, 0,
                    "round {rounds}: lockdown Ok with {present} present"
                );
                assert!(guest.try_enter().is_none(), "a visit entered a locked gate");
                thread::sleep(Duration::from_micros(50));
                let present = watch.present.load(SeqCst);
                assert_eq!(
                    present, 0,
                    "round {rounds}: a visit started after lockdown Ok"
                );
            }
            Err(Error::Aborted) => {
                assert!(fortress.is_locked(), "an aborted lockdown still locks");
                assert!(
                    guest.try_enter().is_none(),
                    "a visit entered after an aborted lockdown"
                );
                // Then lock down again, for good.
                within("the lockdown after an abort", {
                    let g = fortress.guard();
                    move || g.lockdown(&Abort::never())
                })
                .unwrap();
                assert_eq!(watch.present.load(SeqCst), 0);
            }
            Err(e) => panic!("{e:?}"),
        }
        guard.unlock().unwrap();
    }
    watch.stop.store(true, SeqCst);
    for t in threads {
        join_within("a visitor", t);
    }
    drop(ender_tx);
    join_within("the ender", ender);
    assert_eq!(fortress.guests(), 0);
    assert_eq!(watch.overlaps.load(SeqCst), 0);
}

// ------------------------------------------------------------------------------------
// 3. Lost wake-ups: a lockdown waiting for visits that end in every possible way.
// ------------------------------------------------------------------------------------

/// How a visit ends in `drain_wakeup_round`.
#[derive(Clone, Copy, Debug)]
enum Ending {
    SameThread,
    OtherThread,
    ThreadExitTls,
    ThreadExitAfterHandOff,
}

/// A lockdown asleep (flagged) while one visit is inside; the visit ends in `ending`'s
/// way; the lockdown must return within `HANG`.
fn drain_wakeup_round(layout: Layout, ending: Ending, async_lockdown: bool) {
    let fortress = unlocked([0u64; 2], layout);
    let watch = Arc::new(Watch::default());
    let (entered_tx, entered_rx) = mpsc::channel::<Option<OwnedVisit<[u64; 2]>>>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let guest = fortress.guest();
    let holder = thread::spawn(move || {
        let visit = guest.enter_owned(&Abort::never()).unwrap();
        match ending {
            Ending::SameThread => {
                entered_tx.send(None).unwrap();
                go_rx.recv().unwrap();
                drop(visit);
            }
            Ending::OtherThread => {
                entered_tx.send(Some(visit)).unwrap();
            }
            Ending::ThreadExitTls => {
                TLS_HELD.with(|h| h.borrow_mut().push(Watched::new(visit, watch)));
                entered_tx.send(None).unwrap();
                go_rx.recv().unwrap();
            }
            Ending::ThreadExitAfterHandOff => {
                // The visit's entry is on this thread's slot; the thread exits (its slot
                // goes back) before the visit ends elsewhere.
                entered_tx.send(Some(visit)).unwrap();
            }
        }
    });
    let handed = entered_rx.recv_timeout(HANG).unwrap();
    let mut holder = Some(holder);
    if let Ending::ThreadExitAfterHandOff = ending {
        holder.take().unwrap().join().unwrap();
        // A new thread takes the freed slot and visits a lot on it.
        let g = fortress.guest();
        thread::spawn(move || {
            for _ in 0..100 {
                drop(g.try_enter());
            }
        })
        .join()
        .unwrap();
    }
    let guard = fortress.guard();
    let done = Arc::new(AtomicBool::new(false));
    let lockdown = {
        let done = done.clone();
        thread::spawn(move || {
            let r = if async_lockdown {
                block_on_strict("lockdown_async", guard.lockdown_async(&Abort::never()))
            } else {
                guard.lockdown(&Abort::never())
            };
            done.store(true, SeqCst);
            r
        })
    };
    until_flag(
        &fortress,
        Waiters::Drain,
        if async_lockdown {
            Kind::Task
        } else {
            Kind::Thread
        },
    );
    thread::sleep(Duration::from_millis(2));
    assert!(
        !done.load(SeqCst),
        "{layout:?} {ending:?}: lockdown returned with a visit inside"
    );
    match ending {
        Ending::SameThread | Ending::ThreadExitTls => {
            go_tx.send(()).unwrap();
            holder.take().unwrap().join().unwrap();
        }
        Ending::OtherThread => {
            let v = handed.unwrap();
            thread::spawn(move || drop(v)).join().unwrap();
            holder.take().unwrap().join().unwrap();
        }
        Ending::ThreadExitAfterHandOff => {
            let v = handed.unwrap();
            thread::spawn(move || drop(v)).join().unwrap();
        }
    }
    let r = join_within(
        &format!("{layout:?} {ending:?} async={async_lockdown}: the lockdown"),
        lockdown,
    );
    assert_eq!(r, Ok(()));
    assert_eq!(fortress.guests(), 0, "{layout:?} {ending:?}");
    assert!(fortress.is_locked());
}

#[test]
fn read_mostly_every_way_a_visit_ends_wakes_the_drain() {
    for ending in [
        Ending::SameThread,
        Ending::OtherThread,
        Ending::ThreadExitTls,
        Ending::ThreadExitAfterHandOff,
    ] {
        for async_lockdown in [false, true] {
            for _ in 0..3 {
                drain_wakeup_round(RM, ending, async_lockdown);
            }
        }
    }
}

/// Many rounds of: a few visits inside, a lockdown that must wait, the visits ending
/// at random moments on random threads (while the lockdown flags, scans, sleeps);
/// the lockdown must always come back. Also an exclusive phase and `wait` after kill.
#[test]
fn read_mostly_drain_never_loses_a_wakeup_under_random_timing() {
    let mut rng = Rng::new(4242);
    let t0 = Instant::now();
    let mut rounds = 0;
    while t0.elapsed() < Duration::from_millis(2500) {
        rounds += 1;
        let fortress = unlocked([0u64; 2], RM);
        let k = 1 + rng.below(3) as usize;
        let visits: Vec<_> = (0..k)
            .map(|_| fortress.guest().enter_owned(&Abort::never()).unwrap())
            .collect();
        let mode = rng.below(3);
        let waiter = {
            let (guard, f) = (fortress.guard(), fortress.clone());
            thread::spawn(move || match mode {
                0 => guard.lockdown(&Abort::never()),
                1 => guard.exclusive(&Abort::never()).map(drop),
                _ => {
                    f.kill();
                    f.wait_with(&Abort::never())
                }
            })
        };
        let enders: Vec<_> = visits
            .into_iter()
            .map(|v| {
                let delay = Duration::from_micros(rng.below(400));
                let in_tls = rng.below(3) == 0;
                thread::spawn(move || {
                    thread::sleep(delay);
                    if in_tls {
                        // Ends as this thread exits, in its local destructors.
                        let w = Watched::new(v, Arc::default());
                        TLS_HELD.with(|h| h.borrow_mut().push(w));
                    } else {
                        drop(v);
                    }
                })
            })
            .collect();
        enders.into_iter().for_each(|e| e.join().unwrap());
        let r = join_within(&format!("round {rounds} mode {mode}"), waiter);
        assert_eq!(r, Ok(()), "round {rounds} mode {mode}");
        assert_eq!(fortress.guests(), 0);
    }
}

// ------------------------------------------------------------------------------------
// 4. Kill during a drain, then wait; async futures dropped mid-drain.
// ------------------------------------------------------------------------------------

fn kill_during_drain_then_wait(layout: Layout) {
    let fortress = unlocked((), layout);
    let v1 = fortress.guest().enter_owned(&Abort::never()).unwrap();
    let v2 = fortress.guest().enter_owned(&Abort::never()).unwrap();
    let lockdown = {
        let g = fortress.guard();
        thread::spawn(move || g.lockdown(&Abort::never()))
    };
    until_flag(&fortress, Waiters::Drain, Kind::Thread);
    // An async wait_async pending too.
    let f2 = fortress.clone();
    let (waker, wakes) = counting_waker();
    let mut wait_fut = Box::pin(async move { f2.wait_async().await });
    assert!(poll_once(wait_fut.as_mut(), &waker).is_pending());
    fortress.kill();
    assert_eq!(
        join_within("lockdown after kill", lockdown),
        Err(Error::Shutdown)
    );
    assert_eq!(
        fortress.wait_with(&Abort::after(Duration::from_millis(20))),
        Err(Error::Aborted),
        "{layout:?}: visits are still inside"
    );
    assert_eq!(fortress.guests(), 2, "{layout:?}");
    assert!(poll_once(wait_fut.as_mut(), &waker).is_pending());
    // A waiting `wait` on another thread.
    let waiter = {
        let f = fortress.clone();
        thread::spawn(move || f.wait())
    };
    until_flag(&fortress, Waiters::Done, Kind::Thread);
    thread::spawn(move || drop(v1)).join().unwrap();
    thread::sleep(Duration::from_millis(5));
    assert!(
        !waiter.is_finished(),
        "{layout:?}: wait returned with a visit inside"
    );
    drop(v2); // last one, on this thread
    join_within("wait after the last visit", waiter).unwrap();
    until("wait_async woken", || wakes.0.load(SeqCst) > 0);
    assert!(poll_once(wait_fut.as_mut(), &waker).is_ready());
    assert_eq!(fortress.wait_with(&fired()), Ok(()));
    assert_eq!(fortress.guests(), 0);
    assert_eq!(fortress.guard().unlock(), Err(Error::Shutdown));
    assert!(fortress.is_locked(), "kill leaves the lock state alone");
}

#[test]
fn read_mostly_kill_during_drain_then_wait() {
    for _ in 0..5 {
        kill_during_drain_then_wait(RM);
    }
}

#[test]
fn word_kill_during_drain_then_wait() {
    kill_during_drain_then_wait(WORD);
}

/// What each step leaves, as (is_locked, guests, answer): run on a layout, compared
/// with Word.
fn async_dropped_mid_drain_trace(layout: Layout) -> Vec<String> {
    let mut trace = Vec::new();
    let (never, fire) = (Abort::never(), fired());
    let fortress = unlocked((), layout);
    let guard = fortress.guard();
    let mut note = |what: &str, f: &Fortress, extra: String| {
        trace.push(format!(
            "{what}: locked={} guests={} {extra}",
            f.is_locked(),
            f.guests()
        ));
    };
    let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
    // A plain async lockdown polled once (pending), dropped: the gate stays closed.
    {
        let mut fut = pin!(guard.lockdown_async(&never));
        let p = poll_once(fut.as_mut(), Waker::noop());
        note(
            "lockdown_async polled",
            &fortress,
            format!("{:?}", p.is_pending()),
        );
    }
    note("lockdown_async dropped", &fortress, String::new());
    let v2 = fortress.guest().try_enter().is_some();
    note("try_enter", &fortress, format!("{v2}"));
    drop(visit);
    note("visit dropped", &fortress, String::new());
    // Nobody inside: a fired lockdown needs no wait.
    let r = guard.lockdown(&fired());
    note("lockdown(fired)", &fortress, format!("{r:?}"));
    guard.unlock().unwrap();
    note("unlock", &fortress, String::new());
    // A scoped one dropped mid-drain backs out.
    let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
    {
        let mut fut = pin!(guard.exclusive_async(&never));
        let p = poll_once(fut.as_mut(), Waker::noop());
        note(
            "exclusive_async polled",
            &fortress,
            format!("{:?}", p.is_pending()),
        );
    }
    note("exclusive_async dropped", &fortress, String::new());
    // Aborted lockdown, then the async exclusive with fired token.
    let r = guard.lockdown(&fired());
    note("lockdown(fired) with visit", &fortress, format!("{r:?}"));
    {
        let mut fut = pin!(guard.exclusive_async(&fire));
        let p = poll_once(fut.as_mut(), Waker::noop());
        note(
            "exclusive_async(fired) on closed gate",
            &fortress,
            format!("{p:?}").replace("Exclusive", "X"),
        );
    }
    drop(visit);
    note("visit dropped", &fortress, String::new());
    {
        let mut fut = pin!(guard.exclusive_async(&fire));
        let p = poll_once(fut.as_mut(), Waker::noop()).map(|r| r.map(drop));
        note("exclusive_async(fired), empty", &fortress, format!("{p:?}"));
    }
    note("after phase", &fortress, String::new());
    // Pending async lockdown woken by the last visit leaving; then dropped un-polled.
    let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
    let (waker, wakes) = counting_waker();
    {
        let mut fut = pin!(guard.lockdown_async(&never));
        let p = poll_once(fut.as_mut(), &waker);
        note(
            "lockdown_async polled with visit",
            &fortress,
            format!("{:?}", p.is_pending()),
        );
        drop(visit);
        let woken = wakes.0.load(SeqCst) > 0;
        note("visit dropped; waker woken", &fortress, format!("{woken}"));
        let p = poll_once(fut.as_mut(), &waker);
        note("lockdown_async polled again", &fortress, format!("{p:?}"));
    }
    trace
}

#[test]
fn read_mostly_async_futures_dropped_mid_drain_behave_as_word() {
    let word = async_dropped_mid_drain_trace(WORD);
    let rm = async_dropped_mid_drain_trace(RM);
    assert_eq!(rm, word, "ReadMostly differs from Word");
}

// ------------------------------------------------------------------------------------
// 5. Quiescent answers of guests() and is_locked(); forgotten visits.
// ------------------------------------------------------------------------------------

fn quiescent_trace(layout: Layout) -> Vec<String> {
    let mut trace = Vec::new();
    let fortress = Fortress::holding_with(7u32, layout);
    let guard = fortress.guard();
    let guest = fortress.guest();
    macro_rules! note {
        ($what:expr) => {
            trace.push(format!(
                "{}: locked={} guests={}",
                $what,
                fortress.is_locked(),
                fortress.guests()
            ))
        };
        ($what:expr, $r:expr) => {
            trace.push(format!(
                "{}: {:?} locked={} guests={}",
                $what,
                $r,
                fortress.is_locked(),
                fortress.guests()
            ))
        };
    }
    note!("new");
    note!("lockdown(fired) new", guard.lockdown(&fired()));
    note!("unlock", guard.unlock());
    note!("unlock again", guard.unlock());
    let a = guest.enter_owned(&Abort::never()).unwrap();
    let b = guest.enter(&Abort::never()).unwrap();
    note!("two visits");
    // A visit that starts here and ends on a thread that exits.
    let c = guest.enter_owned(&Abort::never()).unwrap();
    note!("three visits");
    thread::spawn(move || drop(c)).join().unwrap();
    note!("one ended elsewhere");
    // A visit started on a thread that exits, kept here.
    let g2 = guest.clone();
    let d = thread::spawn(move || g2.enter_owned(&Abort::never()).unwrap())
        .join()
        .unwrap();
    note!("one from an exited thread");
    note!("lockdown(fired) with visits", guard.lockdown(&fired()));
    note!(
        "exclusive(fired) on a closed gate",
        guard.exclusive(&fired()).map(drop)
    );
    note!("try_enter closed", guest.try_enter().map(|v| *v));
    drop(b);
    note!("b dropped");
    drop(d);
    note!("d dropped");
    note!(
        "lockdown(short) with a visit",
        guard.lockdown(&Abort::after(Duration::from_millis(5)))
    );
    drop(a);
    note!("a dropped, nobody flagged");
    note!("lockdown(fired) empty", guard.lockdown(&fired()));
    note!("lockdown again", guard.lockdown(&Abort::never()));
    note!("unlock", guard.unlock());
    // exclusive that backs out.
    let e = guest.enter_owned(&Abort::never()).unwrap();
    note!(
        "exclusive(fired) backs out",
        guard.exclusive(&fired()).map(drop)
    );
    note!(
        "exclusive(short) backs out",
        guard
            .exclusive(&Abort::after(Duration::from_millis(5)))
            .map(drop)
    );
    drop(e);
    note!("e dropped");
    {
        let mut x = guard.exclusive(&fired()).unwrap();
        *x += 1;
        trace.push(format!(
            "in phase: locked={} guests={} try_enter={:?}",
            fortress.is_locked(),
            fortress.guests(),
            guest.try_enter().map(|v| *v)
        ));
        note!("unlock inside phase", guard.unlock());
        note!("lockdown(fired) inside phase", guard.lockdown(&fired()));
    }
    note!("phase ended");
    note!("read", guest.read(|v| *v, &fired()));
    // Forgotten visits.
    std::mem::forget(guest.enter(&Abort::never()).unwrap());
    let g3 = guest.clone();
    thread::spawn(move || std::mem::forget(g3.enter_owned(&Abort::never()).unwrap()))
        .join()
        .unwrap();
    note!("two forgotten");
    // A thread that reuses the forgetter's slot.
    let g4 = guest.clone();
    thread::spawn(move || {
        for _ in 0..10 {
            drop(g4.try_enter());
        }
    })
    .join()
    .unwrap();
    note!("slot reused");
    note!(
        "lockdown(short) with forgotten",
        guard.lockdown(&Abort::after(Duration::from_millis(5)))
    );
    note!("unlock", guard.unlock());
    note!(
        "exclusive(short) with forgotten",
        guard
            .exclusive(&Abort::after(Duration::from_millis(5)))
            .map(drop)
    );
    fortress.kill();
    note!("killed");
    note!(
        "wait_with(short) with forgotten",
        fortress.wait_with(&Abort::after(Duration::from_millis(5)))
    );
    note!("try_enter killed", guest.try_enter().map(|v| *v));
    note!("visit killed", guest.visit(|| (), &fired()));
    trace
}

#[test]
fn read_mostly_quiescent_answers_match_word_step_by_step() {
    let word = quiescent_trace(WORD);
    let rm = quiescent_trace(RM);
    if rm != word {
        let diff: Vec<_> = word
            .iter()
            .zip(&rm)
            .filter(|(w, r)| w != r)
            .map(|(w, r)| format!("\n  word: {w}\n  rm:   {r}"))
            .collect();
        panic!("ReadMostly differs from Word:{}", diff.join(""));
    }
}

// ------------------------------------------------------------------------------------
// 6. Visits inside thread-local destructors.
// ------------------------------------------------------------------------------------

/// A thread-local whose destructor enters the fortress, reports, holds the visit until
/// told, checks the value, and leaves.
struct Probe {
    guest: Option<fortress_gate::Guest<[u64; 2]>>,
    inside: Option<mpsc::Sender<()>>,
    go: Option<mpsc::Receiver<()>>,
    result: Arc<Mutex<Option<Result<(), Error>>>>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        let Some(guest) = self.guest.take() else {
            return;
        };
        let result = match guest.enter(&Abort::after(Duration::from_secs(10))) {
            Ok(visit) => {
                self.inside.take().unwrap().send(()).unwrap();
                self.go.take().unwrap().recv().unwrap();
                assert_eq!(visit[0], visit[1]);
                drop(visit);
                Ok(())
            }
            Err(e) => Err(e),
        };
        *self.result.lock().unwrap() = Some(result);
    }
}

thread_local! {
    static PROBE: RefCell<Option<Probe>> = const { RefCell::new(None) };
}

/// `early`: the probe's local is made before the thread's first visit (so it is
/// destroyed after the crate's per-thread list); `second_fortress`: the destructor
/// visits a fortress the thread never visited before; `no_prior_visit`: the thread
/// makes no visit at all before its destructors run (the destructor's visit is the
/// thread's first use of the crate's per-thread list).
fn visit_from_tls_destructor(early: bool, second_fortress: bool, no_prior_visit: bool) {
    let fortress = unlocked([0u64; 2], RM);
    // The fortress the destructor visits: the same one, or one this thread never
    // visited before its locals died.
    let target = if second_fortress {
        unlocked([0u64; 2], RM)
    } else {
        fortress.clone()
    };
    let (inside_tx, inside_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let result = Arc::new(Mutex::new(None));
    let probe = Probe {
        guest: Some(target.guest()),
        inside: Some(inside_tx),
        go: Some(go_rx),
        result: result.clone(),
    };
    let guest = fortress.guest();
    let worker = thread::spawn(move || {
        if no_prior_visit {
            PROBE.with(|p| *p.borrow_mut() = Some(probe));
            drop(guest);
        } else if early {
            // Registered before the first visit: destroyed after the crate's list.
            PROBE.with(|p| *p.borrow_mut() = Some(probe));
            guest.visit(|| (), &Abort::never()).unwrap();
        } else {
            guest.visit(|| (), &Abort::never()).unwrap();
            PROBE.with(|p| *p.borrow_mut() = Some(probe));
        }
    });
    inside_rx
        .recv_timeout(HANG)
        .expect("the destructor's visit");
    assert_eq!(
        target.guests(),
        1,
        "early={early} second={second_fortress} none={no_prior_visit}"
    );
    // A phase must wait for the destructor's visit.
    let done = Arc::new(AtomicBool::new(false));
    let phase = {
        let (g, done) = (target.guard(), done.clone());
        thread::spawn(move || {
            let mut x = g.exclusive(&Abort::never())?;
            done.store(true, SeqCst);
            x[0] += 1;
            x[1] += 1;
            Ok::<(), Error>(())
        })
    };
    until_flag(&target, Waiters::Drain, Kind::Thread);
    thread::sleep(Duration::from_millis(2));
    assert!(
        !done.load(SeqCst),
        "early={early} second={second_fortress} none={no_prior_visit}: the phase began while a destructor's visit was inside"
    );
    go_tx.send(()).unwrap();
    join_within("the worker", worker);
    join_within("the phase", phase).unwrap();
    assert_eq!(*result.lock().unwrap(), Some(Ok(())));
    assert_eq!(target.guests(), 0);
    assert_eq!(fortress.guests(), 0);
    target.guard().lockdown(&fired()).unwrap();
}

#[test]
fn read_mostly_visit_in_a_thread_local_destructor_registered_before_or_after_first_visit() {
    for early in [false, true] {
        for second in [false, true] {
            visit_from_tls_destructor(early, second, false);
        }
    }
    visit_from_tls_destructor(false, false, true);
    visit_from_tls_destructor(false, true, true);
}

/// Many threads at once leave visits in thread-locals (some made before their first
/// visit, some after) and exit while a lockdown drains and a guard takes phases.
#[test]
fn read_mostly_threads_exiting_mid_drain_with_tls_visits() {
    let fortress = unlocked([0u64; 2], RM);
    let watch = Arc::new(Watch::default());
    for round in 0..30 {
        let start = Arc::new(Barrier::new(5));
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let go_rx = Arc::new(Mutex::new(go_rx));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let (guest, watch, start, go_rx) = (
                    fortress.guest(),
                    watch.clone(),
                    start.clone(),
                    go_rx.clone(),
                );
                thread::spawn(move || {
                    if (i + round) % 2 == 0 {
                        TLS_HELD.with(|h| assert!(h.borrow().is_empty()));
                    }
                    let v = guest.enter_owned(&Abort::never()).unwrap();
                    let w = Watched::new(v, watch.clone());
                    TLS_HELD.with(|h| h.borrow_mut().push(w));
                    start.wait();
                    let _ = go_rx.lock().unwrap().recv();
                })
            })
            .collect();
        start.wait();
        let lockdown = {
            let (g, watch) = (fortress.guard(), watch.clone());
            thread::spawn(move || {
                let mut x = g.exclusive(&Abort::never())?;
                watch.phase(&mut x);
                Ok::<(), Error>(())
            })
        };
        until_flag(&fortress, Waiters::Drain, Kind::Thread);
        assert_eq!(fortress.guests(), 4);
        drop(go_tx);
        for t in threads {
            join_within("a tls thread", t);
        }
        join_within("the phase", lockdown).unwrap();
        assert_eq!(fortress.guests(), 0);
        assert!(!fortress.is_locked());
    }
    assert_eq!(watch.overlaps.load(SeqCst), 0);
    if counts_beside() {
        let slots = reader_slots(&fortress);
        assert!(
            slots <= 8,
            "{slots} slots for 4 threads at a time (+ slack)"
        );
    }
}

// ------------------------------------------------------------------------------------
// 7. Several read-mostly fortresses per thread; fortresses dropped and new ones made.
// ------------------------------------------------------------------------------------

/// One thread visits several fortresses alternately, with visits held across each
/// other (the per-thread list is searched and reordered on every switch), while each
/// fortress's guard takes phases. Fortresses are dropped and new ones made as it goes.
#[test]
fn read_mostly_many_fortresses_alternately_with_drops_and_new_ones() {
    let n = 6;
    let mut fortresses: Vec<(Fortress<[u64; 2]>, Arc<Watch>)> = (0..n)
        .map(|_| (unlocked([0u64; 2], RM), Arc::new(Watch::default())))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mut generation = 0;
    while t0.elapsed() < Duration::from_millis(2500) {
        generation += 1;
        // Guards: one thread taking phases on every fortress in turn.
        let phaser = {
            let pairs: Vec<_> = fortresses
                .iter()
                .map(|(f, w)| (f.guard(), w.clone()))
                .collect();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Relaxed) {
                    let (g, w) = &pairs[i % pairs.len()];
                    if let Ok(mut x) = g.exclusive(&Abort::after(Duration::from_millis(20))) {
                        w.phase(&mut x);
                    }
                    i += 1;
                }
            })
        };
        // Visitors: two threads, each alternating over every fortress, holding a visit
        // on one while visiting the next.
        let visitors: Vec<_> = (0..2)
            .map(|seed| {
                let pairs: Vec<_> = fortresses
                    .iter()
                    .map(|(f, w)| (f.guest(), w.clone()))
                    .collect();
                let stop = stop.clone();
                thread::spawn(move || {
                    let mut rng = Rng::new(seed + 31 * generation);
                    let mut held: Vec<(usize, Watched)> = Vec::new();
                    let mut ops = 0u64;
                    while !stop.load(Relaxed) || !held.is_empty() {
                        ops += 1;
                        let i = rng.below(pairs.len() as u64) as usize;
                        let (guest, watch) = &pairs[i];
                        if stop.load(Relaxed) || held.len() >= 3 || rng.below(3) == 0 {
                            if !held.is_empty() {
                                let k = rng.below(held.len() as u64) as usize;
                                drop(held.swap_remove(k));
                            }
                            continue;
                        }
                        if rng.below(2) == 0 {
                            if let Some(v) = guest.try_enter() {
                                watch.visit_begin(&v);
                                watch.visit_end(&v);
                            }
                        } else if let Ok(v) =
                            guest.enter_owned(&Abort::after(Duration::from_micros(500)))
                        {
                            held.push((i, Watched::new(v, watch.clone())));
                        }
                    }
                    ops
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(150));
        stop.store(true, SeqCst);
        for v in visitors {
            join_within("a visitor", v);
        }
        join_within("the phaser", phaser);
        stop.store(false, SeqCst);
        for (f, w) in &fortresses {
            assert_eq!(w.overlaps.load(SeqCst), 0, "generation {generation}");
            assert_eq!(
                f.guests(),
                0,
                "generation {generation}: guests() of a quiescent fortress"
            );
            assert_eq!(w.present.load(SeqCst), 0);
            // Make sure each is open for the next generation.
            f.guard().unlock().unwrap();
        }
        // Drop two fortresses (their slots stay in the threads' lists until pruned), and
        // make two new ones.
        fortresses.remove(0);
        fortresses.remove(0);
        fortresses.push((unlocked([0u64; 2], RM), Arc::new(Watch::default())));
        fortresses.push((unlocked([0u64; 2], RM), Arc::new(Watch::default())));
    }
    for (f, _) in &fortresses {
        within("a final lockdown", {
            let g = f.guard();
            move || g.lockdown(&fired())
        })
        .unwrap();
    }
}

/// A pool of long-lived threads keeps visiting the current fortress; fortresses are
/// dropped (while the pool's threads still hold slot entries for them, and while one
/// of them still holds a visit) and new ones made. Counts stay exact on each new one.
#[test]
fn read_mostly_fortresses_dropped_while_threads_hold_slot_entries() {
    type Job = Box<dyn FnOnce() + Send>;
    let (txs, pool): (Vec<mpsc::Sender<Job>>, Vec<_>) = (0..3)
        .map(|_| {
            let (tx, rx) = mpsc::channel::<Job>();
            (
                tx,
                thread::spawn(move || rx.into_iter().for_each(|job| job())),
            )
        })
        .unzip();
    let run_on = |i: usize, job: Job| {
        let (done_tx, done_rx) = mpsc::channel();
        txs[i]
            .send(Box::new(move || {
                job();
                done_tx.send(()).unwrap();
            }))
            .unwrap();
        done_rx.recv_timeout(HANG).expect("a pool job");
    };
    let kept_visits: Arc<Mutex<Vec<OwnedVisit<u64>>>> = Arc::default();
    for generation in 0..40u64 {
        let fortress = unlocked(generation, RM);
        for i in 0..3 {
            let (g, kept) = (fortress.guest(), kept_visits.clone());
            run_on(
                i,
                Box::new(move || {
                    for _ in 0..5 {
                        assert_eq!(*g.enter(&Abort::never()).unwrap(), generation);
                    }
                    if i == 0 && generation % 5 == 0 {
                        kept.lock()
                            .unwrap()
                            .push(g.enter_owned(&Abort::never()).unwrap());
                    }
                }),
            );
        }
        let expected = u64::from(generation % 5 == 0);
        assert_eq!(fortress.guests(), expected, "generation {generation}");
        if counts_beside() {
            assert_eq!(reader_slots(&fortress), 3, "generation {generation}");
        }
        if expected == 1 {
            // The visit (entered on pool thread 0) ends on pool thread 2, which must
            // find its own slot for this fortress among stale ones.
            let v = kept_visits.lock().unwrap().pop().unwrap();
            let lockdown = {
                let g = fortress.guard();
                thread::spawn(move || g.lockdown(&Abort::never()))
            };
            until_flag(&fortress, Waiters::Drain, Kind::Thread);
            run_on(2, Box::new(move || drop(v)));
            join_within("the lockdown", lockdown).unwrap();
            fortress.guard().unlock().unwrap();
        }
        assert_eq!(fortress.guests(), 0, "generation {generation}");
        within("lockdown", {
            let g = fortress.guard();
            move || g.lockdown(&fired())
        })
        .unwrap();
        if generation % 3 == 0 {
            // Keep a visit on a fortress whose handles are all dropped.
            fortress.guard().unlock().unwrap();
            let v = fortress.guest().enter_owned(&Abort::never()).unwrap();
            drop(fortress);
            run_on(1, Box::new(move || drop(v)));
        }
    }
    drop(txs);
    pool.into_iter().for_each(|t| t.join().unwrap());
}

// ------------------------------------------------------------------------------------
// 8. Many short-lived threads racing lockdowns and phases.
// ------------------------------------------------------------------------------------

#[test]
fn read_mostly_short_lived_threads_racing_lockdowns() {
    let fortress = unlocked([0u64; 2], RM);
    let watch = Arc::new(Watch::default());
    let stop = Arc::new(AtomicBool::new(false));
    let guards = {
        let (g, watch, stop) = (fortress.guard(), watch.clone(), stop.clone());
        thread::spawn(move || {
            let mut rng = Rng::new(5);
            while !stop.load(Relaxed) {
                match rng.below(3) {
                    0 => {
                        if let Ok(mut x) = g.exclusive(&Abort::after(Duration::from_millis(10))) {
                            watch.phase(&mut x);
                        }
                    }
                    1 => {
                        let _ = g.lockdown(&Abort::after(Duration::from_micros(100)));
                        let _ = g.unlock();
                    }
                    _ => {
                        let _ = g.lockdown(&Abort::never());
                        let _ = g.unlock();
                    }
                }
            }
        })
    };
    let t0 = Instant::now();
    let mut spawned = 0;
    while t0.elapsed() < Duration::from_millis(2000) {
        let batch: Vec<_> = (0..4)
            .map(|i| {
                let (guest, watch) = (fortress.guest(), watch.clone());
                thread::spawn(move || {
                    for _ in 0..3 {
                        if let Ok(v) = guest.enter_owned(&Abort::after(Duration::from_millis(2))) {
                            let w = Watched::new(v, watch.clone());
                            if i == 0 {
                                TLS_HELD.with(|h| h.borrow_mut().push(w));
                            } else {
                                drop(w);
                            }
                        }
                    }
                })
            })
            .collect();
        spawned += batch.len();
        for t in batch {
            join_within("a short-lived thread", t);
        }
    }
    stop.store(true, SeqCst);
    join_within("the guard", guards);
    assert_eq!(watch.overlaps.load(SeqCst), 0, "{spawned} threads");
    assert_eq!(fortress.guests(), 0);
    within("the last lockdown", {
        let g = fortress.guard();
        move || g.lockdown(&Abort::never())
    })
    .unwrap();
    if counts_beside() {
        let slots = reader_slots(&fortress);
        assert!(slots <= 8, "{slots} slots for at most 4+2 threads at once");
    }
}

// ------------------------------------------------------------------------------------
// 9. Wakers that re-enter, from a leaver's wake.
// ------------------------------------------------------------------------------------

/// An async lockdown's waker, woken by a leaving guest on the guest's thread, re-enters
/// the fortress (a bounce off the closed gate, `guests()`, `is_locked()`): no deadlock,
/// no panic (the per-thread list must not be borrowed then).
#[test]
fn read_mostly_waker_that_reenters_from_a_leavers_wake() {
    struct Reenter {
        fortress: Fortress<()>,
        calls: AtomicUsize,
    }
    impl Wake for Reenter {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref()
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.calls.fetch_add(1, SeqCst);
            let guest = self.fortress.guest();
            drop(guest.try_enter());
            let _ = self.fortress.guests();
            let _ = self.fortress.is_locked();
        }
    }
    for _ in 0..20 {
        let fortress = unlocked((), RM);
        let re = Arc::new(Reenter {
            fortress: fortress.clone(),
            calls: AtomicUsize::new(0),
        });
        let waker = Waker::from(re.clone());
        let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
        let guard = fortress.guard();
        let never = Abort::never();
        let mut fut = pin!(guard.lockdown_async(&never));
        assert!(poll_once(fut.as_mut(), &waker).is_pending());
        within("the leaver", move || drop(visit));
        until("the waker", || re.calls.load(SeqCst) > 0);
        assert_eq!(poll_once(fut.as_mut(), &waker), Poll::Ready(Ok(())));
        drop(re);
    }
}

// ------------------------------------------------------------------------------------
// 10. The last opener's drop kills a closed fortress; wakers that run guard operations.
// ------------------------------------------------------------------------------------

fn last_opener_drop_kills(layout: Layout) -> Vec<String> {
    let mut trace = Vec::new();
    let fortress = unlocked((), layout);
    let guest = fortress.guest();
    let visit = guest.enter_owned(&Abort::never()).unwrap();
    let guard = fortress.guard();
    trace.push(format!("lockdown(fired): {:?}", guard.lockdown(&fired())));
    // A guest waiting at the closed gate, and a lockdown waiting for the drain.
    let waiting_guest = {
        let g = guest.clone();
        thread::spawn(move || g.visit(|| (), &Abort::never()))
    };
    until_flag(&fortress, Waiters::Gate, Kind::Thread);
    // (A waiting lockdown would hold an opener itself: only guests wait here.)
    drop(guard);
    drop(fortress); // the last opener: kills the closed fortress
    trace.push(format!(
        "guest: {:?}",
        join_within("the waiting guest", waiting_guest)
    ));
    trace.push(format!("try_enter: {}", guest.try_enter().is_some()));
    drop(visit);
    trace.push(format!("visit after: {:?}", guest.visit(|| (), &fired())));
    trace
}

#[test]
fn read_mostly_last_opener_drop_kills_as_word() {
    assert_eq!(last_opener_drop_kills(RM), last_opener_drop_kills(WORD));
}

/// Wakers that run guard operations and visits when woken by a leaving guest, a kill, an
/// unlock, or the scan that drains: no deadlock (the guards' pass must not be held
/// while they run), no panic.
#[test]
fn read_mostly_wakers_that_run_guard_operations() {
    struct Busy {
        fortress: Fortress<()>,
        calls: AtomicUsize,
    }
    impl Wake for Busy {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref()
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.calls.fetch_add(1, SeqCst);
            let f = &self.fortress;
            let _ = f.guests();
            let _ = f.is_locked();
            drop(f.guest().try_enter());
            // A guard operation that changes nothing (the gate is closed here).
            let _ = f.guard().lockdown(&fired());
        }
    }
    for round in 0..30 {
        let fortress = unlocked((), RM);
        let busy = Arc::new(Busy {
            fortress: fortress.clone(),
            calls: AtomicUsize::new(0),
        });
        let waker = Waker::from(busy.clone());
        let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
        let guard = fortress.guard();
        let never = Abort::never();
        // An async lockdown and an async wait, both pending.
        let mut lockdown = Box::pin(guard.lockdown_async(&never));
        assert!(poll_once(lockdown.as_mut(), &waker).is_pending());
        let f2 = fortress.clone();
        let mut wait = Box::pin(async move { f2.wait_async().await });
        assert!(poll_once(wait.as_mut(), &waker).is_pending());
        if round % 2 == 0 {
            within("the leaver", move || drop(visit));
            until("a wake", || busy.calls.load(SeqCst) > 0);
            assert_eq!(poll_once(lockdown.as_mut(), &waker), Poll::Ready(Ok(())));
            within("the kill", {
                let f = fortress.clone();
                move || f.kill()
            });
        } else {
            within("the kill", {
                let f = fortress.clone();
                move || f.kill()
            });
            assert_eq!(
                poll_once(lockdown.as_mut(), &waker),
                Poll::Ready(Err(Error::Shutdown))
            );
            within("the leaver", move || drop(visit));
        }
        until("wait_async woken", || {
            poll_once(wait.as_mut(), &waker).is_ready()
        });
    }
}

// ------------------------------------------------------------------------------------
// 11. Panics end visits; re-entering deadlocks only until the abort.
// ------------------------------------------------------------------------------------

fn panic_and_reentry(layout: Layout) -> Vec<String> {
    let mut trace = Vec::new();
    let fortress = unlocked((), layout);
    let (inside_tx, inside_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let guest = fortress.guest();
    let panicker = thread::spawn(move || {
        let _ = guest.visit(
            || {
                inside_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                panic!("a visit panics (expected by the test)");
            },
            &Abort::never(),
        );
    });
    inside_rx.recv_timeout(HANG).unwrap();
    let lockdown = {
        let g = fortress.guard();
        thread::spawn(move || g.lockdown(&Abort::never()))
    };
    until_flag(&fortress, Waiters::Drain, Kind::Thread);
    go_tx.send(()).unwrap();
    trace.push(format!("panicked: {}", panicker.join().is_err()));
    trace.push(format!(
        "lockdown: {:?}",
        join_within("the lockdown", lockdown)
    ));
    trace.push(format!("guests: {}", fortress.guests()));
    fortress.guard().unlock().unwrap();
    // A visit that locks down its own fortress: waits until its abort fires.
    let guard = fortress.guard();
    let r = fortress.guest().visit(
        || guard.lockdown(&Abort::after(Duration::from_millis(20))),
        &Abort::never(),
    );
    trace.push(format!("lockdown inside own visit: {r:?}"));
    // The gate stays closed (an aborted lockdown still locks); the visit has ended.
    trace.push(format!(
        "locked={} guests={}",
        fortress.is_locked(),
        fortress.guests()
    ));
    trace.push(format!("lockdown now: {:?}", guard.lockdown(&fired())));
    guard.unlock().unwrap();
    // Visiting again while a lockdown waits for this very visit.
    let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
    let waiting = {
        let g = fortress.guard();
        thread::spawn(move || g.lockdown(&Abort::never()))
    };
    until_flag(&fortress, Waiters::Drain, Kind::Thread);
    let again = fortress
        .guest()
        .enter(&Abort::after(Duration::from_millis(20)))
        .map(drop);
    trace.push(format!("re-entry while a lockdown waits: {again:?}"));
    drop(visit);
    trace.push(format!(
        "lockdown: {:?}",
        join_within("the lockdown", waiting)
    ));
    trace
}

#[test]
fn read_mostly_panics_and_reentry_as_word() {
    assert_eq!(panic_and_reentry(RM), panic_and_reentry(WORD));
}

/// An async lockdown, pending and flagged, is dropped; a blocking lockdown then waits
/// for the same visit: the visit's end must wake it (the dropped task's flag is gone,
/// the thread's flag must be there).
#[test]
fn read_mostly_dropped_async_lockdown_then_blocking_lockdown_is_woken() {
    for round in 0..20 {
        let fortress = unlocked((), RM);
        let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
        let guard = fortress.guard();
        {
            let never = Abort::never();
            let (waker, _) = counting_waker();
            let mut fut = pin!(guard.lockdown_async(&never));
            assert!(poll_once(fut.as_mut(), &waker).is_pending());
            assert!(snapshot(&fortress).has(Waiters::Drain, Kind::Task));
        }
        assert!(
            !snapshot(&fortress).has(Waiters::Drain, Kind::Task),
            "round {round}"
        );
        let blocking = {
            let g = fortress.guard();
            thread::spawn(move || g.lockdown(&Abort::never()))
        };
        until_flag(&fortress, Waiters::Drain, Kind::Thread);
        if round % 2 == 0 {
            thread::spawn(move || drop(visit)).join().unwrap();
        } else {
            drop(visit);
        }
        assert_eq!(join_within("the blocking lockdown", blocking), Ok(()));
        assert_eq!(fortress.guests(), 0);
    }
}
