//! The sharded fortress (`Fortress::sharded`, `Fortress::with_shards`) against the
//! single state word (`Fortress::new`), each group measured in one run:
//!
//! * `sharded/one_thread`: one visit (enter + drop) on an open fortress, one thread,
//!   against the bare atomic pair on a cache-padded word (the floor of both designs);
//! * `sharded/both_cores`: two threads visiting at once, each on its own core; the
//!   time reported is per visit *as each thread sees it* (wall time / visits per
//!   thread), so perfect scaling equals the `one_thread` cost. (The `contended` group
//!   of `fortress.rs` divides by the visits of all threads instead: half of this.)
//!   Bounds: the bare pair on one shared line and on a line per thread; control: the
//!   same two threads forced onto one slot;
//! * `sharded/lockdown_unlock`: lockdown + unlock with nobody inside, for the single
//!   word and for 1, 2, 8 and 64 slots: the price the guard pays for the slots.
//!
//! `cargo bench -p fortress-gate-benches --bench sharded`, then
//! `python3 benches/report_sharded.py` for the medians and the target ratios.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use fortress_gate::{Abort, Fortress, Guard, Guest};
use fortress_gate_benches::Padded;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

/// What a guest pays: one read-modify-write in, one out. The floor of both designs.
#[inline]
fn atomic_pair(word: &AtomicU64) {
    black_box(word.fetch_add(4, Ordering::Acquire));
    black_box(word.fetch_sub(4, Ordering::Release));
}

/// One visit through the waiting entry (its fast path on an open gate).
#[inline]
fn enter_drop(guest: &Guest, never: &Abort) {
    drop(black_box(guest.enter(never).unwrap()));
}

/// One visit through the entry that never waits.
#[inline]
fn try_enter_drop(guest: &Guest) {
    drop(black_box(guest.try_enter().unwrap()));
}

/// An unlocked fortress, a guard and a guest of it.
fn open(fortress: Fortress) -> (Fortress, Guard, Guest) {
    let (guard, guest) = (fortress.guard(), fortress.guest());
    guard.unlock().unwrap();
    (fortress, guard, guest)
}

fn one_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("sharded/one_thread");
    let never = Abort::never();

    let word = Padded::default();
    g.bench_function("atomic_pair", |b| b.iter(|| atomic_pair(&word.0)));

    let (_word_fortress, _word_guard, word_guest) = open(Fortress::new());
    g.bench_function("word_enter_drop", |b| {
        b.iter(|| enter_drop(&word_guest, &never))
    });
    g.bench_function("word_try_enter_drop", |b| {
        b.iter(|| try_enter_drop(&word_guest))
    });

    let (_sharded, _sharded_guard, sharded_guest) = open(Fortress::sharded());
    g.bench_function("sharded_enter_drop", |b| {
        b.iter(|| enter_drop(&sharded_guest, &never))
    });
    g.bench_function("sharded_try_enter_drop", |b| {
        b.iter(|| try_enter_drop(&sharded_guest))
    });
    g.finish();
}

/// Two fresh threads each run `iters` calls of `op(thread index)` at once; returns
/// the wall time from the first thread starting to the last one finishing.
///
/// The threads meet at a `Barrier` (so both exist and are runnable), then at a short
/// spin rendezvous (so they leave it within nanoseconds of each other, not a futex
/// wake-up apart); only the loop after that is timed, by the threads themselves.
fn on_both_cores(iters: u64, op: impl Fn(usize) + Sync) -> Duration {
    const THREADS: usize = 2;
    let barrier = Barrier::new(THREADS);
    let arrived = AtomicUsize::new(0);
    let spans: Vec<(Instant, Instant)> = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|index| {
                let (barrier, arrived, op) = (&barrier, &arrived, &op);
                s.spawn(move || {
                    barrier.wait();
                    arrived.fetch_add(1, Ordering::AcqRel);
                    while arrived.load(Ordering::Acquire) < THREADS {
                        std::hint::spin_loop();
                    }
                    let start = Instant::now();
                    for _ in 0..iters {
                        op(index);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let start = spans.iter().map(|span| span.0).min().unwrap();
    let end = spans.iter().map(|span| span.1).max().unwrap();
    end - start
}

fn both_cores(c: &mut Criterion) {
    let mut g = c.benchmark_group("sharded/both_cores");
    let never = Abort::never();

    // The two bounds: both threads hammering one line, and each its own line.
    let shared = Padded::default();
    g.bench_function("atomic_pair_shared", |b| {
        b.iter_custom(|n| on_both_cores(n, |_| atomic_pair(&shared.0)))
    });
    let private = [Padded::default(), Padded::default()];
    g.bench_function("atomic_pair_private", |b| {
        b.iter_custom(|n| on_both_cores(n, |i| atomic_pair(&private[i].0)))
    });

    let (_word_fortress, _word_guard, word_guest) = open(Fortress::new());
    g.bench_function("word_enter_drop", |b| {
        b.iter_custom(|n| on_both_cores(n, |_| enter_drop(&word_guest, &never)))
    });

    // Two slots for two threads. A thread's slot is `hint % slots`, and the hint comes
    // from a process-wide counter that hands out consecutive numbers round-robin, at a
    // thread's first visit to any sharded fortress. Each sample spawns two fresh
    // threads, and while they run no other thread visits a sharded fortress (the bench
    // thread only joins), so they draw consecutive hints k and k + 1: different slots
    // for any slot count of at least 2. (`Fortress::sharded()` is 2 slots here.)
    let (_sharded, _sharded_guard, sharded_guest) = open(Fortress::with_shards(2));
    g.bench_function("sharded_enter_drop", |b| {
        b.iter_custom(|n| on_both_cores(n, |_| enter_drop(&sharded_guest, &never)))
    });
    // The control: the same two threads forced onto one slot. It should cost what the
    // single word does; if `sharded_enter_drop` costs the same, the threads collided.
    let (_one_slot, _one_slot_guard, one_slot_guest) = open(Fortress::with_shards(1));
    g.bench_function("one_slot_enter_drop", |b| {
        b.iter_custom(|n| on_both_cores(n, |_| enter_drop(&one_slot_guest, &never)))
    });
    g.finish();
}

/// Lockdown + unlock of an open fortress with nobody inside; leaves it open.
fn lockdown_unlock_once(guard: &Guard, never: &Abort) {
    guard.lockdown(never).unwrap();
    guard.unlock().unwrap();
}

fn lockdown_unlock(c: &mut Criterion) {
    let mut g = c.benchmark_group("sharded/lockdown_unlock");
    let never = Abort::never();

    let (_word, word_guard, _) = open(Fortress::new());
    g.bench_function("word", |b| {
        b.iter(|| lockdown_unlock_once(&word_guard, &never))
    });
    for shards in [1, 2, 8, 64] {
        let (fortress, guard, _) = open(Fortress::with_shards(shards));
        assert_eq!(fortress.shards(), shards);
        g.bench_function(BenchmarkId::new("shards", shards), |b| {
            b.iter(|| lockdown_unlock_once(&guard, &never))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = one_thread, both_cores, lockdown_unlock
}
criterion_main!(benches);
