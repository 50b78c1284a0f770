//! What only the read-mostly layout has: per-thread counts that threads leave behind,
//! visits that end where their thread's slot is gone, and the store-buffering shape on
//! real threads. CI runs this binary a second time with
//! `FORTRESS_GATE_READ_MOSTLY=fallback`, where the same fortresses take the single
//! word's path.

mod common;

/// The layout of the fortresses under test (read by `common::fortress`).
#[allow(dead_code)]
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::ReadMostly;

use common::within;
use fortress_gate::internals::reader_slots;
use fortress_gate::{read_mostly_barrier, Abort, Fortress, Layout, OwnedVisit};
use std::cell::RefCell;
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;

/// Whether this run falls back to the single word (then no slot is ever handed out).
fn fallback() -> bool {
    read_mostly_barrier().is_none()
}

fn unlocked<T>(value: T) -> Fortress<T> {
    let fortress = Fortress::holding_with(value, Layout::ReadMostly);
    fortress.guard().unlock().unwrap();
    fortress
}

/// Whether to run small: under Miri, or where CI sets `FORTRESS_NO_TIMING`
/// (ThreadSanitizer).
fn small() -> bool {
    cfg!(miri) || std::env::var_os("FORTRESS_NO_TIMING").is_some()
}

/// The barrier this process uses: the counts on Linux (unless CI forced the fallback),
/// the fences in a checking build.
#[test]
fn the_barrier_is_chosen_once_and_named() {
    let forced = std::env::var_os("FORTRESS_GATE_READ_MOSTLY").is_some_and(|v| v == "fallback");
    let barrier = read_mostly_barrier();
    assert_eq!(barrier, read_mostly_barrier(), "chosen once");
    match barrier {
        None => assert!(
            forced || !cfg!(target_os = "linux"),
            "Linux has membarrier; only the switch forces the fallback"
        ),
        Some(name) => {
            assert!(!forced, "the switch forces the fallback");
            let fences = cfg!(miri) || name.starts_with("fence");
            assert!(fences || name.starts_with("membarrier"), "{name}");
        }
    }
    let fortress = unlocked(());
    let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
    assert_eq!(reader_slots(&fortress), usize::from(!fallback()));
    assert_eq!(fortress.guests(), 1);
    drop(visit);
    assert_eq!(fortress.guests(), 0);
}

/// The store-buffering shape on real threads: guests visit in tight loops (a store of
/// their entry, a load of the word) while a guard takes exclusive phases in a loop (a
/// store to the word, then the scan's loads). Inside each visit the guest marks itself
/// present and checks that no phase runs; inside each phase the guard checks that no
/// guest is present and writes the value the guests read twice. Dropping the heavy
/// barrier or a light fence lets the two sides' loads both miss the other's store, and
/// a visit overlaps a phase. Runs in the fallback too.
#[test]
fn no_visit_overlaps_an_exclusive_phase_on_real_threads() {
    let phases = if small() { 200 } else { 100_000 };
    let fortress = unlocked(0_u64);
    let present = Arc::new(AtomicU64::new(0));
    let in_phase = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let visits = Arc::new(AtomicU64::new(0));
    let guests: Vec<_> = (0..2)
        .map(|_| {
            let (guest, present, in_phase, stop, visits) = (
                fortress.guest(),
                present.clone(),
                in_phase.clone(),
                stop.clone(),
                visits.clone(),
            );
            thread::spawn(move || {
                while !stop.load(SeqCst) {
                    let Some(visit) = guest.try_enter() else {
                        thread::yield_now();
                        continue;
                    };
                    present.fetch_add(1, SeqCst);
                    let first = *visit;
                    assert!(!in_phase.load(SeqCst), "a visit overlaps a phase");
                    assert_eq!(*visit, first, "the value changed inside a visit");
                    present.fetch_sub(1, SeqCst);
                    drop(visit);
                    visits.fetch_add(1, Relaxed);
                }
            })
        })
        .collect();
    let (guard, seen) = (fortress.guard(), visits.clone());
    within("the guard's phases", move || {
        // At least `phases` phases, and until the guests have visited as often: on a
        // busy machine the guests' threads may start late.
        let mut done = 0;
        while done < phases || seen.load(Relaxed) < phases {
            let mut phase = guard.exclusive(&Abort::never()).unwrap();
            in_phase.store(true, SeqCst);
            assert_eq!(present.load(SeqCst), 0, "a guest is inside the phase");
            *phase += 1;
            in_phase.store(false, SeqCst);
            drop(phase);
            done += 1;
        }
        stop.store(true, SeqCst);
    });
    guests.into_iter().for_each(|g| g.join().unwrap());
    assert!(visits.load(Relaxed) >= phases);
    assert_eq!(fortress.guests(), 0);
}

thread_local! {
    static HELD: RefCell<Option<OwnedVisit>> = const { RefCell::new(None) };
}

/// A thread keeps its visit in a `thread_local!` and exits while a lockdown drains: the
/// visit ends in the thread's local destructors, before or after the fortress's own
/// per-thread slot list is gone (on the shared slot then), and the lockdown returns.
#[test]
fn a_visit_held_in_a_thread_local_ends_as_its_thread_exits_during_a_drain() {
    // `early`: the thread's own local is made before its first visit, so its
    // destructor runs after the fortress's (the later-made local goes first).
    for early in [false, true] {
        let fortress = unlocked(());
        let (entered, go) = (mpsc::channel(), mpsc::channel::<()>());
        let guest = fortress.guest();
        let (entered_tx, go_rx) = (entered.0, go.1);
        let holder = thread::spawn(move || {
            if early {
                HELD.with(|held| assert!(held.borrow().is_none()));
            }
            let visit = guest.enter_owned(&Abort::never()).unwrap();
            HELD.with(|held| *held.borrow_mut() = Some(visit));
            entered_tx.send(()).unwrap();
            go_rx.recv().unwrap();
        });
        entered.1.recv().unwrap();
        let guard = fortress.guard();
        let lockdown = thread::spawn(move || guard.lockdown(&Abort::never()));
        common::until_asleep(&fortress, common::Sleepers::Drain);
        assert!(!lockdown.is_finished(), "a visit is inside");
        go.0.send(()).unwrap();
        holder.join().unwrap();
        within("the lockdown", move || lockdown.join().unwrap()).unwrap();
        assert_eq!(fortress.guests(), 0, "early: {early}");
    }
}

/// Threads that come and go reuse the slots that exited threads gave back: 10,000
/// short-lived threads, four at a time, each visiting once, leave no more slots than
/// threads were ever alive at once. (Not under Miri or ThreadSanitizer: too slow.)
#[test]
fn ten_thousand_short_lived_threads_leave_a_handful_of_slots() {
    if small() {
        return;
    }
    let fortress = unlocked(());
    let batch = 4;
    for _ in 0..10_000 / batch {
        let start = Arc::new(Barrier::new(batch));
        let threads: Vec<_> = (0..batch)
            .map(|_| {
                let (guest, start) = (fortress.guest(), start.clone());
                thread::spawn(move || {
                    start.wait();
                    guest.visit(|| (), &Abort::never()).unwrap();
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
    }
    let slots = reader_slots(&fortress);
    assert!(
        slots <= batch,
        "{slots} slots for {batch} threads at a time"
    );
    assert_eq!(slots == 0, fallback());
    fortress.guard().lockdown(&Abort::never()).unwrap();
}

/// A visit that starts on one thread and ends on another counts its exit on the
/// second: the fortress drains, and a lockdown waits for the visit until then.
#[test]
fn a_visit_handed_to_another_thread_is_waited_for_and_counted_once() {
    let fortress = unlocked(String::from("config"));
    let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
    let (tx, rx) = mpsc::channel::<OwnedVisit<String>>();
    let ender = thread::spawn(move || {
        let visit = rx.recv().unwrap();
        assert_eq!(*visit, "config");
    });
    assert_eq!(fortress.guests(), 1);
    tx.send(visit).unwrap();
    ender.join().unwrap();
    assert_eq!(fortress.guests(), 0);
    let phase = fortress.guard().exclusive_owned(&Abort::never());
    assert!(phase.is_ok());
}
