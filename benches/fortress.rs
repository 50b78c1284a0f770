//! Fortress against its anchors, each group measured in one run:
//!
//! * `uncontended`: one visit (enter + leave) on an open fortress, against the bare
//!   atomic pair that is this design's floor, std's and parking_lot's read locks, and
//!   a hand-written `Mutex` + `Condvar` fortress; and `enter` + reading the `u64` of a
//!   `Fortress::holding(0_u64)` + drop, against `enter` + drop on a `Fortress<()>`;
//! * `lockdown`: lockdown + unlock with nobody inside, against write lock + drop; and
//!   `exclusive` + writing the `u64` of a `Fortress::holding(0_u64)` + drop, against
//!   std's `RwLock<u64>` write + the same write + drop;
//! * `contended`: every core visiting at once;
//! * `wakeup`: from `unlock` to a sleeping guest running, and from the last visit
//!   leaving to a sleeping lockdown returning, against a `Mutex` + `Condvar` hand-off;
//! * `async_uncontended`: `enter_async` + drop on an open fortress, against tokio's and
//!   async-lock's `RwLock::read` + drop, all polled by one minimal `block_on`; and
//!   `enter_async` + reading the `u64` of a `Fortress::holding(0_u64)` + drop, against
//!   tokio's `RwLock<u64>` read + the same read + drop;
//! * `async_wakeup`: from `unlock` to a task pending at the gate running, on a
//!   two-worker tokio runtime, against the same hand-off through tokio's `RwLock`
//!   (`WakeUps` in `lib.rs`, shared with `paired.rs`).
//!
//! `cargo bench -p fortress-gate-benches`, then `python3 benches/report.py` for the ratios.
//! `cargo run -p fortress-gate-benches --release --bin paired` measures the
//! single-thread and async ratios again in alternating blocks, which cancels the
//! machine's drift between two functions timed one after the other.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use fortress_gate::{Abort, Fortress, Guard, Guest};
use fortress_gate_benches::{block_on, read_through, write_through, WakeUps, FALL_ASLEEP};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier, Condvar, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

/// What a user would write by hand: a flag and a count under a mutex.
#[derive(Default)]
struct CondvarFortress {
    state: Mutex<(bool, usize)>, // (locked, guests)
    changed: Condvar,
}

impl CondvarFortress {
    fn visit<T>(&self, f: impl FnOnce() -> T) -> T {
        let mut s = self.state.lock().unwrap();
        while s.0 {
            s = self.changed.wait(s).unwrap();
        }
        s.1 += 1;
        drop(s);
        let out = f();
        let mut s = self.state.lock().unwrap();
        s.1 -= 1;
        if s.1 == 0 {
            self.changed.notify_all();
        }
        out
    }

    fn lockdown(&self) {
        let mut s = self.state.lock().unwrap();
        s.0 = true;
        while s.1 > 0 {
            s = self.changed.wait(s).unwrap();
        }
    }

    fn unlock(&self) {
        self.state.lock().unwrap().0 = false;
        self.changed.notify_all();
    }
}

fn open_fortress() -> (Fortress, Guard, Guest) {
    open(Fortress::new())
}

/// `fortress`, opened, and its handles.
fn open<T>(fortress: Fortress<T>) -> (Fortress<T>, Guard<T>, Guest<T>) {
    let (guard, guest) = (fortress.guard(), fortress.guest());
    guard.unlock().unwrap();
    (fortress, guard, guest)
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended");
    let never = Abort::never();

    let word = AtomicU64::new(0);
    g.bench_function("atomic_pair", |b| {
        b.iter(|| {
            black_box(word.fetch_add(32, Ordering::Acquire));
            black_box(word.fetch_sub(32, Ordering::Release));
        })
    });
    let (_f, _guard, guest) = open_fortress();
    g.bench_function("fortress_visit", |b| {
        b.iter(|| guest.visit(|| black_box(()), &never).unwrap())
    });
    g.bench_function("fortress_enter_drop", |b| {
        b.iter(|| drop(black_box(guest.enter(&never).unwrap())))
    });
    // Against `fortress_enter_drop`: what holding a value costs a visit.
    let (_v, _value_guard, value_guest) = open(Fortress::holding(0_u64));
    g.bench_function("fortress_value_enter_read", |b| {
        b.iter(|| read_through(value_guest.enter(&never).unwrap()))
    });
    let std_lock = RwLock::new(());
    g.bench_function("std_rwlock_read", |b| {
        b.iter(|| drop(black_box(std_lock.read().unwrap())))
    });
    let pl_lock = parking_lot::RwLock::new(());
    g.bench_function("parking_lot_read", |b| {
        b.iter(|| drop(black_box(pl_lock.read())))
    });
    let cv = CondvarFortress::default();
    g.bench_function("condvar_fortress_visit", |b| {
        b.iter(|| cv.visit(|| black_box(())))
    });
    g.finish();
}

fn lockdown(c: &mut Criterion) {
    let mut g = c.benchmark_group("lockdown");
    let never = Abort::never();
    let (_f, guard, _guest) = open_fortress();
    g.bench_function("fortress_lockdown_unlock", |b| {
        b.iter(|| {
            guard.lockdown(&never).unwrap();
            guard.unlock().unwrap();
        })
    });
    let std_lock = RwLock::new(());
    g.bench_function("std_rwlock_write", |b| {
        b.iter(|| drop(black_box(std_lock.write().unwrap())))
    });
    let (_v, value_guard, _value_guest) = open(Fortress::holding(0_u64));
    g.bench_function("fortress_value_exclusive_write", |b| {
        b.iter(|| write_through(value_guard.exclusive(&never).unwrap()))
    });
    let std_value = RwLock::new(0_u64);
    g.bench_function("std_rwlock_u64_write", |b| {
        b.iter(|| write_through(std_value.write().unwrap()))
    });
    let pl_lock = parking_lot::RwLock::new(());
    g.bench_function("parking_lot_write", |b| {
        b.iter(|| drop(black_box(pl_lock.write())))
    });
    let cv = CondvarFortress::default();
    g.bench_function("condvar_fortress_lockdown_unlock", |b| {
        b.iter(|| {
            cv.lockdown();
            cv.unlock();
        })
    });
    g.finish();
}

/// Runs `iters` operations split over every core at once; returns the wall time.
fn on_every_core(iters: u64, op: impl Fn() + Sync) -> Duration {
    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    let per_thread = iters.div_ceil(cores as u64);
    let start = Barrier::new(cores + 1);
    thread::scope(|s| {
        for _ in 0..cores {
            s.spawn(|| {
                start.wait();
                for _ in 0..per_thread {
                    op();
                }
            });
        }
        start.wait();
        Instant::now()
    })
    .elapsed() // measured after the scope has joined every worker
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("contended");
    let never = Abort::never();
    let word = AtomicU64::new(0);
    g.bench_function("atomic_pair", |b| {
        b.iter_custom(|n| {
            on_every_core(n, || {
                black_box(word.fetch_add(32, Ordering::Acquire));
                black_box(word.fetch_sub(32, Ordering::Release));
            })
        })
    });
    let (_f, _guard, guest) = open_fortress();
    g.bench_function("fortress_visit", |b| {
        b.iter_custom(|n| on_every_core(n, || guest.visit(|| black_box(()), &never).unwrap()))
    });
    let std_lock = RwLock::new(());
    g.bench_function("std_rwlock_read", |b| {
        b.iter_custom(|n| on_every_core(n, || drop(black_box(std_lock.read().unwrap()))))
    });
    let pl_lock = parking_lot::RwLock::new(());
    g.bench_function("parking_lot_read", |b| {
        b.iter_custom(|n| on_every_core(n, || drop(black_box(pl_lock.read()))))
    });
    let cv = CondvarFortress::default();
    g.bench_function("condvar_fortress_visit", |b| {
        b.iter_custom(|n| on_every_core(n, || cv.visit(|| black_box(()))))
    });
    g.finish();
}

/// Gives the other thread [`FALL_ASLEEP`], then polls the fortress's `Debug` until
/// a sleeper of this kind has announced itself (outside the timed region).
fn until_asleep(fortress: &Fortress, field: &str) {
    thread::sleep(FALL_ASLEEP);
    while !format!("{fortress:?}").contains(field) {
        thread::yield_now();
    }
}

fn wakeup(c: &mut Criterion) {
    let mut g = c.benchmark_group("wakeup");
    g.sample_size(20);

    // unlock -> a guest asleep at the gate runs its visit.
    g.bench_function(BenchmarkId::new("unlock_to_visit", "fortress"), |b| {
        b.iter_custom(|n| {
            let fortress = Fortress::new();
            let (guard, guest) = (fortress.guard(), fortress.guest());
            let (tx, rx) = mpsc::channel();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let helper = thread::spawn(move || {
                // Each visit starts only once the gate is closed again.
                while go_rx.recv().is_ok() {
                    let ran = guest.visit(Instant::now, &Abort::never()).unwrap();
                    tx.send(ran).unwrap();
                }
            });
            let mut total = Duration::ZERO;
            for _ in 0..n {
                go_tx.send(()).unwrap();
                until_asleep(&fortress, "Gate Threads");
                let t0 = Instant::now();
                guard.unlock().unwrap();
                total += rx.recv().unwrap() - t0;
                guard.lockdown(&Abort::never()).unwrap();
            }
            drop(go_tx);
            helper.join().unwrap();
            total
        })
    });
    g.bench_function(BenchmarkId::new("unlock_to_visit", "condvar"), |b| {
        b.iter_custom(|n| {
            let shared = Arc::new((CondvarFortress::default(), ()));
            shared.0.lockdown();
            let (tx, rx) = mpsc::channel();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let helper_shared = shared.clone();
            let helper = thread::spawn(move || {
                let (cv, _) = &*helper_shared;
                while go_rx.recv().is_ok() {
                    let ran = cv.visit(Instant::now);
                    tx.send(ran).unwrap();
                }
            });
            let mut total = Duration::ZERO;
            for _ in 0..n {
                go_tx.send(()).unwrap();
                thread::sleep(FALL_ASLEEP);
                let t0 = Instant::now();
                shared.0.unlock();
                total += rx.recv().unwrap() - t0;
                shared.0.lockdown();
            }
            drop(go_tx);
            helper.join().unwrap();
            total
        })
    });

    // The last visit leaves -> a lockdown asleep on the drain returns.
    g.bench_function(BenchmarkId::new("leave_to_lockdown", "fortress"), |b| {
        b.iter_custom(|n| {
            let (fortress, guard, guest) = open_fortress();
            let (tx, rx) = mpsc::channel::<Instant>();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let observer = fortress.clone();
            let helper = thread::spawn(move || {
                for _ in 0..n {
                    let visit = guest.enter(&Abort::never()).unwrap();
                    go_tx.send(()).unwrap();
                    until_asleep(&observer, "Drain Threads");
                    let t0 = Instant::now();
                    drop(visit);
                    tx.send(t0).unwrap();
                }
            });
            let mut total = Duration::ZERO;
            for _ in 0..n {
                go_rx.recv().unwrap();
                guard.lockdown(&Abort::never()).unwrap();
                let t1 = Instant::now();
                total += t1 - rx.recv().unwrap();
                guard.unlock().unwrap();
            }
            helper.join().unwrap();
            total
        })
    });
    g.bench_function(BenchmarkId::new("leave_to_lockdown", "condvar"), |b| {
        b.iter_custom(|n| {
            let cv = Arc::new(CondvarFortress::default());
            let (tx, rx) = mpsc::channel::<Instant>();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let helper_cv = cv.clone();
            let helper = thread::spawn(move || {
                for _ in 0..n {
                    let t0 = helper_cv.visit(|| {
                        go_tx.send(()).unwrap();
                        thread::sleep(FALL_ASLEEP);
                        Instant::now()
                    });
                    tx.send(t0).unwrap();
                }
            });
            let mut total = Duration::ZERO;
            for _ in 0..n {
                go_rx.recv().unwrap();
                cv.lockdown();
                let t1 = Instant::now();
                total += t1 - rx.recv().unwrap();
                cv.unlock();
            }
            helper.join().unwrap();
            total
        })
    });
    g.finish();
}

/// Entries in a loop inside one task of a tokio current-thread runtime, where both
/// budgets act: the fortress's own (every 129th entry yields once) and tokio's, which
/// tokio's `RwLock` takes part in.
fn async_in_tokio(c: &mut Criterion) {
    let mut g = c.benchmark_group("async_in_tokio");
    g.measurement_time(Duration::from_secs(2));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (_f, _guard, guest) = open_fortress();
    g.bench_function("fortress_enter_drop", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let never = Abort::never();
                let start = Instant::now();
                for _ in 0..iters {
                    drop(black_box(guest.enter_async(&never).await.unwrap()));
                }
                start.elapsed()
            })
        })
    });
    let tokio_lock = tokio::sync::RwLock::new(());
    g.bench_function("tokio_rwlock_read", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    drop(black_box(tokio_lock.read().await));
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn async_uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("async_uncontended");
    g.measurement_time(Duration::from_secs(2));
    let never = Abort::never();

    let (_f, _guard, guest) = open_fortress();
    g.bench_function("fortress_enter_drop", |b| {
        b.iter(|| block_on(async { drop(black_box(guest.enter_async(&never).await.unwrap())) }))
    });
    let tokio_lock = tokio::sync::RwLock::new(());
    g.bench_function("tokio_rwlock_read", |b| {
        b.iter(|| block_on(async { drop(black_box(tokio_lock.read().await)) }))
    });
    let async_lock = async_lock::RwLock::new(());
    g.bench_function("async_lock_read", |b| {
        b.iter(|| block_on(async { drop(black_box(async_lock.read().await)) }))
    });
    let (_v, _value_guard, value_guest) = open(Fortress::holding(0_u64));
    g.bench_function("fortress_value_enter_read", |b| {
        b.iter(|| block_on(async { read_through(value_guest.enter_async(&never).await.unwrap()) }))
    });
    let tokio_value = tokio::sync::RwLock::new(0_u64);
    g.bench_function("tokio_rwlock_u64_read", |b| {
        b.iter(|| block_on(async { read_through(tokio_value.read().await) }))
    });
    g.finish();
}

fn async_wakeup(c: &mut Criterion) {
    let mut g = c.benchmark_group("async_wakeup");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(2));
    // One runtime for both contenders; the bench thread is not one of its workers, so
    // every wake-up crosses threads, as a guard's `unlock` from elsewhere would.
    let mut wake_ups = WakeUps::default();
    // unlock -> a task pending at the closed gate runs.
    g.bench_function(BenchmarkId::new("unlock_to_task", "fortress"), |b| {
        b.iter_custom(|n| (0..n).map(|_| wake_ups.fortress()).sum())
    });
    // The same hand-off through tokio's RwLock: the bench thread holds the write lock,
    // a task awaits `read()`, the bench thread drops the write guard.
    g.bench_function(BenchmarkId::new("unlock_to_task", "tokio_rwlock"), |b| {
        b.iter_custom(|n| (0..n).map(|_| wake_ups.tokio()).sum())
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = uncontended, lockdown, contended, wakeup, async_uncontended, async_in_tokio, async_wakeup
}
criterion_main!(benches);
