//! Reads during reloads: a small in-memory config (64 words) that readers keep reading
//! while a reloader replaces it every 2 ms, protected by five mechanisms (seven
//! variants) in one run:
//!
//! * on two OS threads of readers (the machine has two cores): fortress-gate's
//!   blocking `enter` / `exclusive` (on the single word, and on `Layout::ReadMostly`),
//!   `std::sync::RwLock`, `parking_lot::RwLock`, and `arc_swap::ArcSwap` (readers
//!   `load()`, the reloader `store`s a new `Arc`);
//! * on a two-worker tokio runtime with 8 reader tasks, each yielding every 64 reads:
//!   fortress-gate's `enter_async` / `exclusive_async`, and `tokio::sync::RwLock`.
//!
//! Every lock holds the config itself: the fortress is a `Fortress<Config>`
//! (`Fortress::holding`), read through its visits' `Deref` and written through its
//! exclusive phases' `DerefMut`, as the `RwLock`s are through their guards.
//!
//! A reload writes the words one by one with the new version, so a reader that sees
//! words of two versions has made a torn read; there must be none. Every 16th read is
//! timed (`Instant::now()` around it, so a read's latency includes any wait for a
//! reload to finish, and about 20-40 ns of clock reading).
//!
//! `cargo run -p fortress-gate-benches --release --bin service [-- --runs 3]`;
//! `SERVICE_SECS` sets each variant's duration (default 2 s). Besides the table, one
//! line per variant: `service,<name>,<reads_per_s>,<p50_ns>,<p99_ns>,<max_ns>,<reloads>,<torn>`,
//! and with `--runs N > 1`, one per variant over the runs:
//! `service-runs,<name>,<median reads_per_s>,<min>,<max>,<median p99_ns>,<min>,<max>`.

use arc_swap::ArcSwap;
use fortress_gate::{Abort, Fortress, Guard, Guest, Layout};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Words in the config.
const WORDS: usize = 64;
/// The pause between two reloads.
const RELOAD_EVERY: Duration = Duration::from_millis(2);
/// One read in this many is timed.
const SAMPLE_EVERY: u64 = 16;
/// Reader threads of the blocking variants.
const THREADS: usize = 2;
/// Reader tasks of the async variants, on this many runtime workers.
const TASKS: usize = 8;
const WORKERS: usize = 2;
/// An async reader yields to the runtime after this many reads.
const YIELD_EVERY: u64 = 64;

type Config = [u64; WORDS];

/// True if the words are not all of one version.
fn torn(mut words: impl Iterator<Item = u64>) -> bool {
    let first = words.next();
    words.any(|w| Some(w) != first)
}

/// A config shared by blocking readers and a blocking reloader.
trait Blocking: Sync {
    /// Reads the whole config; true if the read was torn.
    fn read(&self) -> bool;
    /// Rewrites every word with `version`, word by word.
    fn reload(&self, version: u64);
}

/// fortress-gate holding the config: readers read it in a visit, the reloader writes
/// it in an exclusive phase.
struct FortressConfig {
    guard: Guard<Config>,
    guest: Guest<Config>,
}

impl FortressConfig {
    fn new() -> FortressConfig {
        FortressConfig::with(Layout::Word)
    }

    fn with(layout: Layout) -> FortressConfig {
        let fortress = Fortress::holding_with([0; WORDS], layout); // locked at first
        fortress.guard().unlock().expect("a new fortress unlocks");
        FortressConfig {
            guard: fortress.guard(),
            guest: fortress.guest(),
        }
    }
}

impl Blocking for FortressConfig {
    fn read(&self) -> bool {
        let config = self.guest.enter(&Abort::never()).expect("never killed");
        torn(config.iter().copied()) // the visit ends when `config` is dropped
    }

    fn reload(&self, version: u64) {
        let mut config = self.guard.exclusive(&Abort::never()).expect("never killed");
        for w in config.iter_mut() {
            *w = version;
        } // the phase ends, and the gate opens, when `config` is dropped
    }
}

impl Blocking for std::sync::RwLock<Config> {
    fn read(&self) -> bool {
        torn(self.read().unwrap().iter().copied())
    }

    fn reload(&self, version: u64) {
        let mut config = self.write().unwrap();
        for w in config.iter_mut() {
            *w = version;
        }
    }
}

impl Blocking for parking_lot::RwLock<Config> {
    fn read(&self) -> bool {
        torn(self.read().iter().copied())
    }

    fn reload(&self, version: u64) {
        let mut config = self.write();
        for w in config.iter_mut() {
            *w = version;
        }
    }
}

impl Blocking for ArcSwap<Config> {
    fn read(&self) -> bool {
        torn(self.load().iter().copied())
    }

    fn reload(&self, version: u64) {
        // The new config is built aside, word by word; readers keep the old one.
        let mut config = [0; WORDS];
        for w in config.iter_mut() {
            *w = version;
        }
        self.store(Arc::new(config));
    }
}

/// The same for async tasks.
trait Async: Send + Sync + 'static {
    fn read(&self) -> impl Future<Output = bool> + Send;
    fn reload(&self, version: u64) -> impl Future<Output = ()> + Send;
}

impl Async for FortressConfig {
    async fn read(&self) -> bool {
        let config = self.guest.enter_async(&Abort::never()).await;
        torn(config.expect("never killed").iter().copied())
    }

    async fn reload(&self, version: u64) {
        let config = self.guard.exclusive_async(&Abort::never()).await;
        let mut config = config.expect("never killed");
        for w in config.iter_mut() {
            *w = version;
        }
    }
}

impl Async for tokio::sync::RwLock<Config> {
    async fn read(&self) -> bool {
        torn(self.read().await.iter().copied())
    }

    async fn reload(&self, version: u64) {
        let mut config = self.write().await;
        for w in config.iter_mut() {
            *w = version;
        }
    }
}

/// What one reader saw: reads, torn reads, and the timed reads' latencies (ns).
#[derive(Default)]
struct Reader {
    reads: u64,
    torn: u64,
    samples: Vec<u64>,
}

impl Reader {
    /// `SAMPLE_EVERY` reads, the first of them timed.
    fn chunk(&mut self, read: impl Fn() -> bool) {
        let start = Instant::now();
        let first = read();
        self.samples.push(start.elapsed().as_nanos() as u64);
        self.torn += u64::from(first);
        for _ in 1..SAMPLE_EVERY {
            self.torn += u64::from(read());
        }
        self.reads += SAMPLE_EVERY;
    }

    /// As `chunk`, for async reads.
    async fn chunk_async<F: Future<Output = bool>>(&mut self, read: impl Fn() -> F) {
        let start = Instant::now();
        let first = read().await;
        self.samples.push(start.elapsed().as_nanos() as u64);
        self.torn += u64::from(first);
        for _ in 1..SAMPLE_EVERY {
            self.torn += u64::from(read().await);
        }
        self.reads += SAMPLE_EVERY;
    }
}

/// One variant's figures.
struct Outcome {
    name: &'static str,
    reads_per_s: f64,
    p50_ns: u64,
    p99_ns: u64,
    max_ns: u64,
    reloads: u64,
    torn: u64,
}

impl Outcome {
    fn new(name: &'static str, readers: Vec<Reader>, elapsed: Duration, reloads: u64) -> Self {
        let reads: u64 = readers.iter().map(|r| r.reads).sum();
        let torn = readers.iter().map(|r| r.torn).sum();
        let mut samples: Vec<u64> = readers.into_iter().flat_map(|r| r.samples).collect();
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Outcome {
            name,
            reads_per_s: reads as f64 / elapsed.as_secs_f64(),
            p50_ns: at(0.5),
            p99_ns: at(0.99),
            max_ns: at(1.0),
            reloads,
            torn,
        }
    }
}

/// Runs `config` for `secs` with `THREADS` reader threads and one reloader thread.
fn blocking(name: &'static str, config: &impl Blocking, secs: Duration) -> Outcome {
    let stop = AtomicBool::new(false);
    let start = Barrier::new(THREADS + 2); // the readers, the reloader, this thread
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    let mut reader = Reader::default();
                    start.wait();
                    while !stop.load(Relaxed) {
                        reader.chunk(|| config.read());
                    }
                    reader
                })
            })
            .collect();
        let reloader = s.spawn(|| {
            start.wait();
            let mut version = 0;
            while !stop.load(Relaxed) {
                std::thread::sleep(RELOAD_EVERY);
                version += 1;
                config.reload(version);
            }
            version
        });
        start.wait();
        let began = Instant::now();
        std::thread::sleep(secs);
        stop.store(true, Relaxed);
        let elapsed = began.elapsed();
        let readers = readers.into_iter().map(|r| r.join().unwrap()).collect();
        Outcome::new(name, readers, elapsed, reloader.join().unwrap())
    })
}

/// Runs `config` for `secs` with `TASKS` reader tasks and one reload task on a
/// `WORKERS`-thread tokio runtime.
fn in_tasks<C: Async>(name: &'static str, config: C, secs: Duration) -> Outcome {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let config = Arc::new(config);
    let stop = Arc::new(AtomicBool::new(false));
    runtime.block_on(async {
        let began = Instant::now();
        let readers: Vec<_> = (0..TASKS)
            .map(|_| {
                let (config, stop) = (config.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut reader = Reader::default();
                    while !stop.load(Relaxed) {
                        for _ in 0..YIELD_EVERY / SAMPLE_EVERY {
                            reader.chunk_async(|| config.read()).await;
                        }
                        tokio::task::yield_now().await; // let the reload task run
                    }
                    reader
                })
            })
            .collect();
        let reloader = tokio::spawn({
            let (config, stop) = (config.clone(), stop.clone());
            async move {
                let mut version = 0;
                while !stop.load(Relaxed) {
                    tokio::time::sleep(RELOAD_EVERY).await;
                    version += 1;
                    config.reload(version).await;
                }
                version
            }
        });
        tokio::time::sleep(secs).await;
        stop.store(true, Relaxed);
        let elapsed = began.elapsed();
        let mut done = Vec::new();
        for reader in readers {
            done.push(reader.await.unwrap());
        }
        Outcome::new(name, done, elapsed, reloader.await.unwrap())
    })
}

/// One run of the whole comparison.
fn compare(secs: Duration) -> Vec<Outcome> {
    let fresh = || -> Config { [0; WORDS] };
    vec![
        blocking("fortress-gate", &FortressConfig::new(), secs),
        blocking(
            "fortress-gate read-mostly",
            &FortressConfig::with(Layout::ReadMostly),
            secs,
        ),
        blocking("std RwLock", &std::sync::RwLock::new(fresh()), secs),
        blocking(
            "parking_lot RwLock",
            &parking_lot::RwLock::new(fresh()),
            secs,
        ),
        blocking("arc-swap", &ArcSwap::from_pointee(fresh()), secs),
        in_tasks("fortress-gate async", FortressConfig::new(), secs),
        in_tasks("tokio RwLock", tokio::sync::RwLock::new(fresh()), secs),
    ]
}

fn micros(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn print_table(outcomes: &[Outcome]) {
    println!(
        "{:<20} {:>12} {:>9} {:>9} {:>10} {:>8} {:>5}",
        "variant", "reads/s", "p50 µs", "p99 µs", "max µs", "reloads", "torn"
    );
    for o in outcomes {
        println!(
            "{:<20} {:>12.0} {:>9.3} {:>9.3} {:>10.1} {:>8} {:>5}",
            o.name,
            o.reads_per_s,
            micros(o.p50_ns),
            micros(o.p99_ns),
            micros(o.max_ns),
            o.reloads,
            o.torn
        );
    }
    for o in outcomes {
        println!(
            "service,{},{:.0},{},{},{},{},{}",
            o.name, o.reads_per_s, o.p50_ns, o.p99_ns, o.max_ns, o.reloads, o.torn
        );
    }
}

/// Per variant, the median and range over the runs of reads/s and p99.
fn print_summary(runs: &[Vec<Outcome>]) {
    println!("\nover {} runs: median [min – max]", runs.len());
    println!("{:<20} {:>34} {:>28}", "variant", "reads/s", "p99 µs");
    let mut lines = Vec::new();
    for (i, first) in runs[0].iter().enumerate() {
        let spread = |f: &dyn Fn(&Outcome) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(|run| f(&run[i])).collect();
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[0], v[v.len() - 1]) // median: the upper one of an even count
        };
        let rate = spread(&|o| o.reads_per_s);
        let p99 = spread(&|o| o.p99_ns as f64);
        println!(
            "{:<20} {:>10.0} [{:>9.0} – {:>9.0}] {:>8.3} [{:>7.3} – {:>7.3}]",
            first.name,
            rate.0,
            rate.1,
            rate.2,
            p99.0 / 1e3,
            p99.1 / 1e3,
            p99.2 / 1e3
        );
        lines.push(format!(
            "service-runs,{},{:.0},{:.0},{:.0},{:.0},{:.0},{:.0}",
            first.name, rate.0, rate.1, rate.2, p99.0, p99.1, p99.2
        ));
    }
    for line in lines {
        println!("{line}");
    }
}

fn main() {
    let secs: f64 = fortress_gate_benches::env_number("SERVICE_SECS", 2.0);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = match args.as_slice() {
        [] => 1,
        [flag, n] if flag == "--runs" => n.parse().expect("--runs N: a positive number"),
        _ => panic!("usage: service [--runs N]"),
    };
    assert!(runs > 0, "--runs N: a positive number");
    println!(
        "reads during reloads: {WORDS}-word config, a reload every {RELOAD_EVERY:?}, \
         {secs} s per variant; {THREADS} reader threads, or {TASKS} reader tasks on \
         {WORKERS} tokio workers (the async variants); every {SAMPLE_EVERY}th read timed"
    );
    let mut all = Vec::new();
    for run in 1..=runs {
        if runs > 1 {
            println!("\nrun {run} of {runs}");
        }
        let outcomes = compare(Duration::from_secs_f64(secs));
        print_table(&outcomes);
        all.push(outcomes);
    }
    if runs > 1 {
        print_summary(&all);
    }
    let torn: u64 = all.iter().flatten().map(|o| o.torn).sum();
    if torn > 0 {
        eprintln!("{torn} torn reads: a variant let a reader see a half-written config");
        std::process::exit(1);
    }
}
