//! The single-thread targets as paired measurements. Criterion times each function
//! for seconds, one after the other, so a change in the machine's speed between them
//! (a shared host's neighbours, frequency) lands on one side of a ratio: on the 2-core
//! machine here its ratios of two 6 ns functions move by 10–20 % from run to run. Here
//! a contender and its baseline run in alternating blocks of about half a millisecond
//! (the order swapped every round), the ratio is taken per round, and its median is
//! reported: drift that is slow next to a block cancels out.
//!
//! The wake-up row alternates single hand-offs instead (fortress, tokio, tokio,
//! fortress, ...) and compares the medians of the two latencies.
//!
//!     cargo run -p fortress-gate-benches --release --bin paired [-- --runs 3]
//!
//! `PAIRED_ROUNDS` sets the rounds per row (default 1000; the wake-up row runs twice as
//! many hand-offs of each).

use fortress_gate::{Abort, Fortress, Guard, Guest};
use fortress_gate_benches::{block_on, Padded, WakeUps};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Instant;

/// Calls of one side per block: about half a millisecond of 6 ns operations.
const BLOCK: u32 = 80_000;

/// The floor of every design here: one read-modify-write in, one out.
#[inline]
fn atomic_pair(word: &AtomicU64) {
    black_box(word.fetch_add(1 << 24, Ordering::Acquire));
    black_box(word.fetch_sub(1 << 24, Ordering::Release));
}

/// Nanoseconds per call of `f` over one block. Generic and out of line, so each side
/// gets its own loop with `f` inlined, as criterion's `iter` has.
#[inline(never)]
fn block<F: FnMut()>(f: &mut F) -> f64 {
    let start = Instant::now();
    for _ in 0..BLOCK {
        f();
    }
    start.elapsed().as_secs_f64() * 1e9 / f64::from(BLOCK)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One row: the medians of each side's ns per call and of the per-round ratio.
struct Row {
    a: f64,
    b: f64,
    ratio: f64,
}

fn paired(rounds: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> Row {
    block(&mut a); // warm up both: caches, branch predictors, lazy thread-locals
    block(&mut b);
    let (mut ta, mut tb, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (x, y) = if round % 2 == 0 {
            let x = block(&mut a);
            (x, block(&mut b))
        } else {
            let y = block(&mut b);
            (block(&mut a), y)
        };
        ta.push(x);
        tb.push(y);
        ratios.push(x / y);
    }
    Row {
        a: median(&mut ta),
        b: median(&mut tb),
        ratio: median(&mut ratios),
    }
}

/// An open fortress and its handles.
fn open(fortress: Fortress) -> (Fortress, Guard, Guest) {
    let (guard, guest) = (fortress.guard(), fortress.guest());
    guard.unlock().unwrap();
    (fortress, guard, guest)
}

/// The rows of one run: name, target, measurement.
fn run(rounds: usize) -> Vec<(&'static str, Option<f64>, Row)> {
    let never = Abort::never();
    let word = Padded::default();
    let (_f, guard, guest) = open(Fortress::new());
    let (_s, _sg, sharded) = open(Fortress::sharded());
    let std_lock = RwLock::new(());
    let tokio_lock = tokio::sync::RwLock::new(());
    let async_lock = async_lock::RwLock::new(());
    let visit = || guest.visit(|| black_box(()), &never).unwrap();
    let pair = || atomic_pair(&word.0);
    let mut rows = vec![
        (
            "visit / atomic pair",
            Some(1.05),
            paired(rounds, visit, pair),
        ),
        (
            "visit / std RwLock read",
            Some(0.90),
            paired(rounds, visit, || drop(black_box(std_lock.read().unwrap()))),
        ),
        (
            "std RwLock read / atomic pair (the floor)",
            None,
            paired(rounds, || drop(black_box(std_lock.read().unwrap())), pair),
        ),
        (
            "enter+drop / atomic pair",
            Some(1.10),
            paired(
                rounds,
                || drop(black_box(guest.enter(&never).unwrap())),
                pair,
            ),
        ),
        (
            "lockdown+unlock / std write+drop",
            Some(1.10),
            paired(
                rounds,
                || {
                    guard.lockdown(&never).unwrap();
                    guard.unlock().unwrap();
                },
                || drop(black_box(std_lock.write().unwrap())),
            ),
        ),
        (
            "sharded enter+drop / atomic pair",
            Some(1.30),
            paired(
                rounds,
                || drop(black_box(sharded.enter(&never).unwrap())),
                pair,
            ),
        ),
    ];
    let enter_async =
        || block_on(async { drop(black_box(guest.enter_async(&never).await.unwrap())) });
    rows.push((
        "async enter+drop / tokio RwLock read",
        Some(0.45),
        paired(rounds, enter_async, || {
            block_on(async { drop(black_box(tokio_lock.read().await)) })
        }),
    ));
    rows.push((
        "async enter+drop / async-lock read",
        Some(1.00),
        paired(rounds, enter_async, || {
            block_on(async { drop(black_box(async_lock.read().await)) })
        }),
    ));
    rows.push((
        "async wake-up unlock->task / tokio RwLock",
        Some(1.00),
        wake_ups(rounds * 2),
    ));
    rows
}

/// `n` hand-offs of each, alternating (see `WakeUps`); the ratio of the medians.
fn wake_ups(n: usize) -> Row {
    let mut wake_ups = WakeUps::default();
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    let ns = |d: std::time::Duration| d.as_secs_f64() * 1e9;
    for i in 0..n {
        if i % 2 == 0 {
            ta.push(ns(wake_ups.fortress()));
            tb.push(ns(wake_ups.tokio()));
        } else {
            tb.push(ns(wake_ups.tokio()));
            ta.push(ns(wake_ups.fortress()));
        }
    }
    let (a, b) = (median(&mut ta), median(&mut tb));
    Row { a, b, ratio: a / b }
}

fn main() {
    let rounds: usize = fortress_gate_benches::env_number("PAIRED_ROUNDS", 1000);
    let runs = fortress_gate_benches::runs_arg();
    let mut table: Vec<(&str, Option<f64>, Vec<f64>)> = Vec::new();
    for run_no in 1..=runs {
        println!("run {run_no}: medians of {rounds} alternating rounds");
        println!(
            "  {:<44} {:>10} {:>10} {:>7}",
            "contender / baseline", "ns", "ns", "ratio"
        );
        for (i, (name, target, row)) in run(rounds).into_iter().enumerate() {
            println!(
                "  {name:<44} {:>10.2} {:>10.2} {:>7.3}",
                row.a, row.b, row.ratio
            );
            println!("paired,{name},{:.3},{:.3},{:.4}", row.a, row.b, row.ratio);
            if run_no == 1 {
                table.push((name, target, Vec::new()));
            }
            table[i].2.push(row.ratio);
        }
    }
    println!("ratios: median over {runs} run(s) [min - max] (target)");
    for (name, target, mut ratios) in table {
        let m = median(&mut ratios);
        let goal = target.map_or(String::new(), |t| format!("<= {t:.2}"));
        let verdict = match target {
            Some(t) if m <= t => "ok",
            Some(_) => "MISSED",
            None => "",
        };
        println!(
            "  {name:<44} {m:6.3} [{:.3} - {:.3}]  {goal:8} {verdict}",
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
}
