//! What a guest can expect from a guard that cycles: the guard locks down, holds the
//! exclusive phase for 5 µs, unlocks and at once locks down again, over and over; one
//! guest thread keeps visiting. Reports how many visits get through per second and how
//! long the guest waits at worst (and at the 99th percentile), for the fortress, std's
//! `RwLock` and parking_lot's, in one run.
//!
//!     cargo run -p fortress-gate-benches --release --bin fairness [-- --runs 3]
//!
//! `FAIRNESS_SECS` sets each variant's duration (default 2).

use fortress_gate::{Abort, Fortress};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const EXCLUSIVE: Duration = Duration::from_micros(5);

/// One of the locks under test, as the guard and the guest use it.
trait Gate: Send + Sync + 'static {
    /// The guard's exclusive phase: `hold` runs while no guest is inside.
    fn exclusive(&self, hold: &dyn Fn());
    /// The guest's visit.
    fn visit(&self);
}

impl Gate for Fortress {
    fn exclusive(&self, hold: &dyn Fn()) {
        let guard = self.guard();
        guard.lockdown(Abort::NEVER).unwrap();
        hold();
        guard.unlock().unwrap();
    }
    fn visit(&self) {
        self.guest().visit(|| (), Abort::NEVER).unwrap();
    }
}

impl Gate for std::sync::RwLock<()> {
    fn exclusive(&self, hold: &dyn Fn()) {
        let _write = self.write().unwrap();
        hold();
    }
    fn visit(&self) {
        drop(self.read().unwrap());
    }
}

impl Gate for parking_lot::RwLock<()> {
    fn exclusive(&self, hold: &dyn Fn()) {
        let _write = self.write();
        hold();
    }
    fn visit(&self) {
        drop(self.read());
    }
}

/// Busy-waits for `d`: an exclusive phase that does work rather than sleep.
fn spin_for(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

struct Outcome {
    visits_per_s: f64,
    /// Visits that had to wait (1 µs or more) for the guard, per second.
    waited_per_s: f64,
    p99: Duration,
    worst: Duration,
    cycles_per_s: f64,
}

fn run(gate: Arc<dyn Gate>, secs: f64) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let guard = {
        let (gate, stop) = (Arc::clone(&gate), Arc::clone(&stop));
        thread::spawn(move || {
            let mut cycles = 0u64;
            while !stop.load(Relaxed) {
                gate.exclusive(&|| spin_for(EXCLUSIVE));
                cycles += 1;
            }
            cycles
        })
    };
    let start = Instant::now();
    let run_for = Duration::from_secs_f64(secs);
    let mut waits = Vec::new();
    while start.elapsed() < run_for {
        let asked = Instant::now();
        gate.visit();
        waits.push(asked.elapsed());
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    let cycles = guard.join().unwrap();
    waits.sort_unstable();
    let at = |q: f64| waits[((waits.len() - 1) as f64 * q) as usize];
    let waited = waits.partition_point(|w| *w < Duration::from_micros(1));
    Outcome {
        visits_per_s: waits.len() as f64 / elapsed,
        waited_per_s: (waits.len() - waited) as f64 / elapsed,
        p99: at(0.99),
        worst: *waits.last().unwrap(),
        cycles_per_s: cycles as f64 / elapsed,
    }
}

fn main() {
    let secs: f64 = fortress_gate_benches::env_number("FAIRNESS_SECS", 2.0);
    let runs = fortress_gate_benches::runs_arg();
    type Make = fn() -> Arc<dyn Gate>;
    let variants: [(&str, Make); 3] = [
        ("fortress-gate", || {
            let fortress = Fortress::new();
            fortress.guard().unlock().unwrap();
            Arc::new(fortress)
        }),
        ("std RwLock", || Arc::new(std::sync::RwLock::new(()))),
        ("parking_lot RwLock", || {
            Arc::new(parking_lot::RwLock::new(()))
        }),
    ];
    let mut table: Vec<Vec<Outcome>> = variants.iter().map(|_| Vec::new()).collect();
    for run_no in 1..=runs {
        println!(
            "run {run_no}: a guard cycling with {EXCLUSIVE:?} exclusive phases, one guest visiting"
        );
        println!(
            "  {:<20} {:>12} {:>14} {:>12} {:>12} {:>14}",
            "variant", "visits/s", "waited visits/s", "p99 wait", "worst wait", "guard cycles/s"
        );
        for ((name, make), outcomes) in variants.iter().zip(&mut table) {
            let o = run(make(), secs);
            println!(
                "  {:<20} {:>12.0} {:>14.0} {:>12.1?} {:>12.1?} {:>14.0}",
                name, o.visits_per_s, o.waited_per_s, o.p99, o.worst, o.cycles_per_s
            );
            println!(
                "fairness,{name},{:.0},{:.0},{},{},{:.0}",
                o.visits_per_s,
                o.waited_per_s,
                o.p99.as_nanos(),
                o.worst.as_nanos(),
                o.cycles_per_s
            );
            outcomes.push(o);
        }
    }
    if runs > 1 {
        println!("medians over {runs} runs [min - max]");
        for ((name, _), outcomes) in variants.iter().zip(&mut table) {
            let mut v: Vec<f64> = outcomes.iter().map(|o| o.visits_per_s).collect();
            let mut w: Vec<Duration> = outcomes.iter().map(|o| o.worst).collect();
            v.sort_by(f64::total_cmp);
            w.sort();
            println!(
                "  {:<20} visits/s {:.0} [{:.0} - {:.0}]  worst wait {:.1?} [{:.1?} - {:.1?}]",
                name,
                v[v.len() / 2],
                v[0],
                v[v.len() - 1],
                w[w.len() / 2],
                w[0],
                w[w.len() - 1]
            );
        }
    }
}
