//! Many threads, many cycles: the guard's exclusive phase never overlaps a visit, and
//! racing guards never deadlock.

mod common;

/// The layout of the fortresses under test (read by `common::fortress`).
/// `tests/sharded.rs` and `tests/read_mostly.rs` run this file again in their layouts.
#[allow(dead_code)]
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::Word;

use common::within;
use fortress_gate::{Abort, Error, Worker};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;

/// The "directory": two plain words that the guard rewrites while it holds the
/// fortress and guests read inside visits, with no synchronisation of their own.
struct Directory(UnsafeCell<[u64; 2]>);

// SAFETY: this is the claim under test: the fortress orders every write (after a
// lockdown, before the unlock) against every read (inside a visit). If it did not,
// Miri and ThreadSanitizer would report a data race on this cell.
unsafe impl Sync for Directory {}

impl Directory {
    fn read(&self) -> [u64; 2] {
        // SAFETY: called only inside a visit; see the `Sync` impl.
        unsafe { *self.0.get() }
    }
    fn write(&self, version: u64) {
        // SAFETY: called only between a successful lockdown and the next unlock.
        unsafe { *self.0.get() = [version, version] }
    }
}

const CYCLES: u64 = if cfg!(miri) { 30 } else { 5_000 };
const GUESTS: usize = 3;

#[test]
fn lockdown_cycles_never_overlap_a_visit() {
    lockdown_cycles_on(common::fortress());
}

/// Three guests through one slot of a sharded fortress: whichever leaves last releases
/// the slot, and the guard must see what every guest did (an ordering that only the
/// last guest's exit carries shows here as a data race under ThreadSanitizer).
#[test]
fn lockdown_cycles_with_guests_sharing_one_slot_never_overlap_a_visit() {
    lockdown_cycles_on(fortress_gate::Fortress::with_shards(1));
}

fn lockdown_cycles_on(fortress: fortress_gate::Fortress) {
    // The test's bookkeeping is Relaxed on purpose: it must not order the directory
    // accesses itself, or it would hide a missing ordering in the fortress from Miri
    // and ThreadSanitizer. (Relaxed atomics are still coherent, so the asserts hold.)
    let exclusive = Arc::new(AtomicBool::new(false));
    let inside = Arc::new(AtomicUsize::new(0));
    // The "directory": two words the guard rewrites together while exclusive.
    let version = Arc::new(Directory(UnsafeCell::new([0, 0])));
    let done = Abort::new();
    let visits = Arc::new(AtomicU64::new(0));

    let guests: Vec<_> = (0..GUESTS)
        .map(|_| {
            let (guest, exclusive, inside, version, done, visits) = (
                fortress.guest(),
                exclusive.clone(),
                inside.clone(),
                version.clone(),
                done.clone(),
                visits.clone(),
            );
            thread::spawn(move || loop {
                let seen = guest.visit(
                    || {
                        inside.fetch_add(1, Relaxed);
                        assert!(!exclusive.load(Relaxed), "a visit overlapped the guard");
                        let a = version.read()[0];
                        thread::yield_now();
                        let b = version.read()[1];
                        assert!(!exclusive.load(Relaxed), "a visit overlapped the guard");
                        inside.fetch_sub(1, Relaxed);
                        (a, b)
                    },
                    &done,
                );
                match seen {
                    Ok((a, b)) => {
                        assert_eq!(a, b, "torn read");
                        visits.fetch_add(1, Relaxed);
                    }
                    Err(Error::Aborted) => return,
                    Err(other) => panic!("unexpected {other}"),
                }
            })
        })
        .collect();

    let guard = fortress.guard();
    let (ex, ins, ver) = (exclusive.clone(), inside.clone(), version.clone());
    let stopper = done.clone();
    let admitted = visits.clone();
    let cycles = within("guard cycles", move || {
        for cycle in 1..=CYCLES {
            guard.lockdown(&Abort::never()).unwrap();
            ex.store(true, Relaxed);
            assert_eq!(
                ins.load(Relaxed),
                0,
                "lockdown returned with a visit inside"
            );
            ver.write(cycle);
            ex.store(false, Relaxed);
            guard.unlock().unwrap();
            // Let some guests in before the next lockdown (bounded: guests may be
            // slow to wake on a loaded machine).
            let before = admitted.load(Relaxed);
            for _ in 0..50 {
                if admitted.load(Relaxed) > before {
                    break;
                }
                thread::yield_now();
            }
        }
        // Close for good, then release the guests that wait at the gate.
        guard.lockdown(&Abort::never()).unwrap();
        stopper.abort();
        CYCLES
    });
    within("guests", move || {
        guests.into_iter().for_each(|g| g.join().unwrap())
    });
    let visits = visits.load(Relaxed);
    assert_eq!(cycles, CYCLES);
    assert!(visits >= CYCLES / 10, "too few visits ran: {visits}");
    assert_eq!(fortress.guests(), 0);
    eprintln!("stress: {cycles} lockdown/unlock cycles, {visits} visits by {GUESTS} guests");
}

#[test]
fn racing_guards_never_deadlock() {
    let fortress = common::fortress();
    let stop = Abort::new();
    let guests: Vec<_> = (0..2)
        .map(|_| {
            let (guest, stop) = (fortress.guest(), stop.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                while guest.visit(|| n += 1, &stop).is_ok() {}
                n
            })
        })
        .collect();
    let guards: Vec<_> = (0..2u64)
        .map(|seed| {
            let guard = fortress.guard();
            thread::spawn(move || {
                // A small deterministic mix of unlocks and lockdowns per guard.
                let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for _ in 0..CYCLES / 5 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if x % 2 == 0 {
                        guard.unlock().unwrap();
                    } else {
                        guard.lockdown(&Abort::never()).unwrap();
                    }
                }
                // Every guard ends with a lockdown: once all have closed the gate,
                // every pending lockdown must complete.
                guard.lockdown(&Abort::never()).unwrap();
            })
        })
        .collect();
    within("racing guards", move || {
        for g in guards {
            g.join().unwrap();
        }
    });
    assert!(fortress.is_locked());
    stop.abort();
    within("guests", move || {
        for g in guests {
            g.join().unwrap();
        }
    });
    fortress.kill();
    within("wait", move || fortress.wait().unwrap());
}
