//! The read-mostly layout's own figures, each as a median over rounds of one run:
//!
//! * `both_cores`: two threads visiting at once (enter + drop), on a read-mostly
//!   fortress and on a sharded one, rounds alternating; the cost per visit as each
//!   thread sees it (wall time / visits per thread), the ratio of the two per round,
//!   and the read-mostly cost against one thread's alone in the same run (a 2-vCPU
//!   guest may give both threads one core);
//! * `lockdown`: lockdown + unlock with nobody inside, with 1, 2, 16 and 64 threads
//!   that have visited (all but the timing thread parked): median and p99 of 2,000
//!   cycles, and the first lockdown of each fortress apart;
//! * `lockdown beside a busy visitor`: the same, while another thread keeps visiting
//!   (the lockdown waits for its visit, and the barrier interrupts its CPU), on a
//!   read-mostly fortress and on the single word;
//! * `memory`: what a thread's first visit to a fortress adds to the process's
//!   resident memory (its slot, and its entries in the two lists), over 10,000
//!   fortresses that one thread visits, less what the fortresses take unvisited.
//!
//! `cargo run -p fortress-gate-benches --release --bin read_mostly -- --runs 3`
//! (`ROUNDS` sets the rounds of `both_cores`). On a quiet machine only.

use fortress_gate::{read_mostly_barrier, Abort, Fortress, Guard, Guest, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn open(layout: Layout) -> Fortress {
    let fortress = Fortress::holding_with((), layout);
    fortress.guard().unlock().unwrap();
    fortress
}

/// Visits by `threads` threads at once for `period`: ns per visit as each thread sees it.
fn visiting(guest: &Guest, threads: usize, period: Duration) -> f64 {
    let start = Arc::new(Barrier::new(threads));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (guest, start, stop) = (guest.clone(), start.clone(), stop.clone());
            thread::spawn(move || {
                let never = Abort::never();
                start.wait();
                let began = Instant::now();
                let mut visits = 0_u64;
                while !stop.load(Relaxed) {
                    for _ in 0..1_000 {
                        drop(black_box(guest.enter(&never).unwrap()));
                    }
                    visits += 1_000;
                }
                began.elapsed().as_nanos() as f64 / visits as f64
            })
        })
        .collect();
    thread::sleep(period);
    stop.store(true, Relaxed);
    let per: Vec<f64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    per.iter().sum::<f64>() / per.len() as f64
}

fn both_cores(rounds: usize) {
    let period = Duration::from_millis(100);
    let read_mostly = open(Layout::ReadMostly);
    let sharded = open(Layout::Sharded);
    let (mut rm2, mut sh2, mut ratio, mut rm1, mut scale) =
        (vec![], vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let (a, b) = if round % 2 == 0 {
            let a = visiting(&read_mostly.guest(), 2, period);
            (a, visiting(&sharded.guest(), 2, period))
        } else {
            let b = visiting(&sharded.guest(), 2, period);
            (visiting(&read_mostly.guest(), 2, period), b)
        };
        let one = visiting(&read_mostly.guest(), 1, period);
        rm2.push(a);
        sh2.push(b);
        ratio.push(a / b);
        rm1.push(one);
        scale.push(a / one);
    }
    println!(
        "both_cores: read-mostly {:.2} ns/visit per thread, sharded {:.2}; read-mostly / sharded {:.3} (target <= 0.5); \
         read-mostly one thread {:.2} ns, both-core / one-thread {:.2}",
        median(&mut rm2),
        median(&mut sh2),
        median(&mut ratio),
        median(&mut rm1),
        median(&mut scale)
    );
    println!("read_mostly,both_cores_ratio,{:.4}", median(&mut ratio));
}

/// Times 2,000 cycles of lockdown + unlock, with `pause` after each: median and p99 in
/// µs.
fn cycles(guard: &Guard, pause: Duration) -> (f64, f64) {
    let never = Abort::never();
    let mut times = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        let began = Instant::now();
        guard.lockdown(&never).unwrap();
        guard.unlock().unwrap();
        times.push(began.elapsed().as_nanos() as f64 / 1e3);
        if !pause.is_zero() {
            thread::sleep(pause);
        }
    }
    (median(&mut times), percentile(&mut times, 0.99))
}

fn lockdowns(threads: usize) {
    let fortress = open(Layout::ReadMostly);
    let never = Abort::never();
    // `threads - 1` threads visit once and park; this thread is the last.
    let (done, parked) = mpsc::channel::<()>();
    let release = Arc::new(Barrier::new(threads));
    let parked_threads: Vec<_> = (1..threads)
        .map(|_| {
            let (guest, release, done) = (fortress.guest(), release.clone(), done.clone());
            thread::spawn(move || {
                guest.visit(|| (), &Abort::never()).unwrap();
                done.send(()).unwrap();
                release.wait(); // parked until the cycles are over
            })
        })
        .collect();
    for _ in 1..threads {
        parked.recv().unwrap();
    }
    fortress.guest().visit(|| (), &never).unwrap();
    let guard = fortress.guard();
    let first = Instant::now();
    guard.lockdown(&never).unwrap();
    let first = first.elapsed().as_nanos() as f64 / 1e3;
    guard.unlock().unwrap();
    let (med, p99) = cycles(&guard, Duration::ZERO);
    release.wait();
    parked_threads.into_iter().for_each(|t| t.join().unwrap());
    println!(
        "lockdown: {threads:>2} threads that visited: lockdown+unlock median {med:.2} µs, p99 {p99:.2} µs \
         (first lockdown {first:.2} µs, not counted)"
    );
    println!("read_mostly,lockdown_{threads},{med:.3},{p99:.3}");
}

/// Lockdown + unlock while another thread keeps visiting (each lockdown waits for the
/// visit in progress, and its barrier interrupts the visiting thread's CPU): median and
/// p99 of 2,000 cycles, on a read-mostly fortress and on the single word.
fn lockdowns_beside_a_visitor(layout: Layout) {
    let fortress = open(layout);
    let stop = Arc::new(AtomicBool::new(false));
    let (guest, halt) = (fortress.guest(), stop.clone());
    let visitor = thread::spawn(move || {
        while !halt.load(Relaxed) {
            // Waits while the gate is closed, as a guest does.
            drop(black_box(guest.enter(&Abort::never()).unwrap()));
        }
    });
    // A pause between cycles lets the visitor visit.
    let (med, p99) = cycles(&fortress.guard(), Duration::from_micros(20));
    stop.store(true, Relaxed);
    visitor.join().unwrap();
    println!(
        "lockdown beside a busy visitor, {layout:?}: lockdown+unlock median {med:.2} µs, p99 {p99:.2} µs"
    );
    println!("read_mostly,lockdown_busy_{layout:?},{med:.3},{p99:.3}");
}

/// The process's resident memory in bytes (Linux; 0 elsewhere).
fn resident() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn memory() {
    const FORTRESSES: usize = 10_000;
    let bytes = thread::spawn(|| {
        let before = resident();
        let fortresses: Vec<_> = (0..FORTRESSES).map(|_| open(Layout::ReadMostly)).collect();
        let made = resident();
        for fortress in &fortresses {
            fortress.guest().visit(|| (), &Abort::never()).unwrap();
        }
        let visited = resident();
        let per_fortress = (made - before) / FORTRESSES;
        (per_fortress, (visited - made) / FORTRESSES)
    })
    .join()
    .unwrap();
    println!(
        "memory: a read-mostly fortress takes {} bytes; each thread that visits it adds {} bytes",
        bytes.0, bytes.1
    );
    println!("read_mostly,memory_per_thread,{}", bytes.1);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(9);
    let _warm = open(Layout::ReadMostly);
    println!("barrier: {:?}", read_mostly_barrier());
    for run in 1..=runs {
        println!("--- run {run}");
        both_cores(rounds);
        for threads in [1, 2, 16, 64] {
            lockdowns(threads);
        }
        lockdowns_beside_a_visitor(Layout::ReadMostly);
        lockdowns_beside_a_visitor(Layout::Word);
        memory();
    }
}
