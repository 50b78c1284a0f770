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
//! The `value_*` and `exclusive_std` rows time a fortress that holds a `u64`
//! (`Fortress::holding(0_u64)`, single word): reading it through a visit against an
//! entry into a `Fortress<()>` (what holding a value costs a visit), and against tokio's
//! `RwLock<u64>` read; writing it through an exclusive phase against std's
//! `RwLock<u64>` write.
//!
//! The `after_waits` rows compare a fortress on which 1,000 waits of every kind ended
//! without success (aborted, or their future dropped) with a fresh one, in the same
//! alternating blocks: the waits must leave nothing that slows the fast paths.
//!
//!     cargo run -p fortress-gate-benches --release --bin paired [-- --runs 3] [-- --only KEY]
//!
//! `PAIRED_ROUNDS` sets the rounds per row (default 1000; the wake-up row runs twice as
//! many hand-offs of each). `--only KEY` runs just the rows whose key (printed beside
//! each row) or name contains `KEY`, e.g. `--only after_waits`.

use fortress_gate::{Abort, Error, Fortress, Guard, Guest, Layout};
use fortress_gate_benches::{block_on, read_through, write_through, Padded, WakeUps};
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

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
fn open<T>(fortress: Fortress<T>) -> (Fortress<T>, Guard<T>, Guest<T>) {
    let (guard, guest) = (fortress.guard(), fortress.guest());
    guard.unlock().unwrap();
    (fortress, guard, guest)
}

/// The rows of one run, as they are measured: key, name, target, measurement.
struct Rows<'a> {
    /// Only the rows whose key or name contains this, if given.
    only: Option<&'a str>,
    rows: Vec<(&'static str, &'static str, Option<f64>, Row)>,
}

impl Rows<'_> {
    /// Whether a row with this key or name is to run.
    fn wants(&self, key: &str, name: &str) -> bool {
        self.only
            .is_none_or(|only| key.contains(only) || name.contains(only))
    }

    /// Measures the row (only if it is wanted) and adds it.
    fn add(
        &mut self,
        key: &'static str,
        name: &'static str,
        target: Option<f64>,
        measure: impl FnOnce() -> Row,
    ) {
        if self.wants(key, name) {
            self.rows.push((key, name, target, measure()));
        }
    }
}

/// The rows of one run: key, name, target, measurement.
fn run(rounds: usize, only: Option<&str>) -> Vec<(&'static str, &'static str, Option<f64>, Row)> {
    let never = Abort::never();
    let word = Padded::default();
    let (_f, guard, guest) = open(Fortress::new());
    let (_s, _sg, sharded) = open(Fortress::sharded());
    let (_v, value_guard, value_guest) = open(Fortress::holding(0_u64));
    let std_lock = RwLock::new(());
    let std_value = RwLock::new(0_u64);
    let tokio_lock = tokio::sync::RwLock::new(());
    let tokio_value = tokio::sync::RwLock::new(0_u64);
    let async_lock = async_lock::RwLock::new(());
    let visit = || guest.visit(|| black_box(()), &never).unwrap();
    let pair = || atomic_pair(&word.0);
    let mut rows = Rows {
        only,
        rows: Vec::new(),
    };
    rows.add("visit_pair", "visit / atomic pair", Some(1.05), || {
        paired(rounds, visit, pair)
    });
    rows.add("visit_std", "visit / std RwLock read", Some(0.90), || {
        paired(rounds, visit, || drop(black_box(std_lock.read().unwrap())))
    });
    rows.add(
        "std_pair",
        "std RwLock read / atomic pair (the floor)",
        None,
        || paired(rounds, || drop(black_box(std_lock.read().unwrap())), pair),
    );
    rows.add("enter_pair", "enter+drop / atomic pair", Some(1.10), || {
        paired(
            rounds,
            || drop(black_box(guest.enter(&never).unwrap())),
            pair,
        )
    });
    rows.add(
        "lockdown_std",
        "lockdown+unlock / std write+drop",
        Some(1.10),
        || {
            paired(
                rounds,
                || {
                    guard.lockdown(&never).unwrap();
                    guard.unlock().unwrap();
                },
                || drop(black_box(std_lock.write().unwrap())),
            )
        },
    );
    // What holding a value costs a visit: the same entry and drop on a `Fortress<()>`,
    // without the read.
    rows.add(
        "value_enter",
        "enter+read u64+drop / enter+drop on Fortress<()>",
        Some(1.03),
        || {
            paired(
                rounds,
                || read_through(value_guest.enter(&never).unwrap()),
                || drop(black_box(guest.enter(&never).unwrap())),
            )
        },
    );
    // An exclusive phase with nobody inside, writing the value, against std's write
    // lock writing its own.
    rows.add(
        "exclusive_std",
        "exclusive+write u64+drop / std write+write+drop",
        Some(1.10),
        || {
            paired(
                rounds,
                || write_through(value_guard.exclusive(&never).unwrap()),
                || write_through(std_value.write().unwrap()),
            )
        },
    );
    rows.add(
        "sharded_pair",
        "sharded enter+drop / atomic pair",
        Some(1.30),
        || {
            paired(
                rounds,
                || drop(black_box(sharded.enter(&never).unwrap())),
                pair,
            )
        },
    );
    let enter_async =
        || block_on(async { drop(black_box(guest.enter_async(&never).await.unwrap())) });
    rows.add(
        "async_tokio",
        "async enter+drop / tokio RwLock read",
        Some(0.45),
        || {
            paired(rounds, enter_async, || {
                block_on(async { drop(black_box(tokio_lock.read().await)) })
            })
        },
    );
    rows.add(
        "async_async_lock",
        "async enter+drop / async-lock read",
        Some(1.00),
        || {
            paired(rounds, enter_async, || {
                block_on(async { drop(black_box(async_lock.read().await)) })
            })
        },
    );
    // Async reads of a value, both sides polled by the same `block_on`.
    rows.add(
        "value_async_tokio",
        "async enter+read u64+drop / tokio RwLock<u64> read",
        Some(0.45),
        || {
            paired(
                rounds,
                || block_on(async { read_through(value_guest.enter_async(&never).await.unwrap()) }),
                || block_on(async { read_through(tokio_value.read().await) }),
            )
        },
    );
    rows.add(
        "wake_up",
        "async wake-up unlock->task / tokio RwLock",
        Some(1.00),
        || wake_ups(rounds * 2),
    );
    read_mostly_rows(&mut rows, rounds, &visit, &pair);
    after_waits_rows(&mut rows, rounds);
    rows.rows
}

/// The `read_mostly` rows: a visit on per-thread counts against the atomic pair, std's
/// read and the single word's visit. With `FORTRESS_GATE_READ_MOSTLY=fallback` in the
/// environment the same fortress takes the single word's path (`read_mostly_word` then
/// checks that it costs what the word does).
fn read_mostly_rows(rows: &mut Rows<'_>, rounds: usize, word_visit: &impl Fn(), pair: &impl Fn()) {
    let never = Abort::never();
    let (_f, _g, guest) = open(Fortress::holding_with(0_u64, Layout::ReadMostly));
    let enter = || drop(black_box(guest.enter(&never).unwrap()));
    rows.add(
        "read_mostly_pair",
        "read-mostly enter+drop / atomic pair",
        Some(0.50),
        || paired(rounds, enter, pair),
    );
    rows.add(
        "read_mostly_read",
        "read-mostly read u64 / atomic pair",
        Some(0.50),
        || {
            paired(
                rounds,
                || _ = black_box(guest.read(|v| *v, &never).unwrap()),
                pair,
            )
        },
    );
    let std_lock = RwLock::new(0_u64);
    rows.add(
        "read_mostly_std",
        "read-mostly read u64 / std RwLock<u64> read",
        Some(0.90),
        || {
            paired(
                rounds,
                || _ = black_box(guest.read(|v| *v, &never).unwrap()),
                || _ = black_box(*std_lock.read().unwrap()),
            )
        },
    );
    rows.add(
        "read_mostly_word",
        "read-mostly visit / single-word visit (1.10 in the fallback)",
        None,
        || {
            paired(
                rounds,
                || guest.visit(|| black_box(()), &never).unwrap(),
                word_visit,
            )
        },
    );
}

/// How many waits of each kind end without success before the `after_waits` rows.
const AFTER_WAITS: usize = 1_000;

/// The `after_waits` rows: a fortress on which [`AFTER_WAITS`] waits of every kind
/// ended without success, against a fresh one, both open and single-word.
fn after_waits_rows(rows: &mut Rows<'_>, rounds: usize) {
    const LOCKDOWN: (&str, &str) = (
        "after_waits_lockdown",
        "after 1,000 aborted waits: lockdown+unlock / fresh",
    );
    const ENTER: (&str, &str) = (
        "after_waits_enter",
        "after 1,000 aborted waits: enter+drop / fresh",
    );
    if !rows.wants(LOCKDOWN.0, LOCKDOWN.1) && !rows.wants(ENTER.0, ENTER.1) {
        return; // the waits take about a second: skip them too
    }
    let never = Abort::never();
    let (_a, after_guard, after_guest) = open(after_aborted_waits(AFTER_WAITS));
    let (_f, fresh_guard, fresh_guest) = open(Fortress::new());
    let cycle = |guard: &Guard| {
        guard.lockdown(&never).unwrap();
        guard.unlock().unwrap();
    };
    rows.add(LOCKDOWN.0, LOCKDOWN.1, Some(1.05), || {
        paired(rounds, || cycle(&after_guard), || cycle(&fresh_guard))
    });
    rows.add(ENTER.0, ENTER.1, Some(1.05), || {
        paired(
            rounds,
            || drop(black_box(after_guest.enter(&never).unwrap())),
            || drop(black_box(fresh_guest.enter(&never).unwrap())),
        )
    });
}

/// A new single-word fortress on which `n` waits of every kind have ended without
/// success, each after it waited (a thread gets 50 µs to fall asleep, a future is
/// polled until it has stored its waker), left as a fresh one would be used: open, no
/// visit inside, and one slow pass made (an unlock, a lockdown and an unlock), as the
/// `after_cancels` example does. The kinds, each with a visit inside:
///
/// * threads asleep, then aborted: `exclusive` (it backs out), `lockdown` (the gate
///   stays closed), `enter` at the closed gate, `wait_with` on the live fortress;
/// * futures polled until they wait (twice: a first poll of an entry may spend its
///   budget instead), then aborted and polled to the end, or dropped: `exclusive_async`
///   (both, each backs out), `lockdown_async` (both), `enter_async` (both),
///   `wait_async` (dropped: it takes no token).
fn after_aborted_waits(n: usize) -> Fortress {
    let fortress = Fortress::new();
    let (guard, guest) = (fortress.guard(), fortress.guest());
    let never = Abort::never();
    guard.unlock().unwrap();
    for _ in 0..n {
        let inside = guest.enter(&never).unwrap();

        // Scoped lockdowns on the open gate: each backs out.
        aborted_while_asleep(|abort| guard.exclusive(abort).map(drop));
        assert!(!fortress.is_locked(), "an aborted exclusive backs out");
        abort_pending(
            &Abort::new(),
            |abort| guard.exclusive_async(abort),
            |visit| visit.map(drop),
        );
        drop_pending(guard.exclusive_async(&never));
        assert!(!fortress.is_locked(), "an exclusive future backs out");

        // Plain lockdowns: the gate stays closed.
        abort_pending(
            &Abort::new(),
            |abort| guard.lockdown_async(abort),
            |done| done,
        );
        guard.unlock().unwrap();
        drop_pending(guard.lockdown_async(&never));
        guard.unlock().unwrap();
        aborted_while_asleep(|abort| guard.lockdown(abort));
        assert!(fortress.is_locked(), "an aborted lockdown still locks");

        // Entries at the closed gate, and waits for the end of the live fortress.
        aborted_while_asleep(|abort| guest.enter(abort).map(drop));
        abort_pending(
            &Abort::new(),
            |abort| guest.enter_async(abort),
            |visit| visit.map(drop),
        );
        drop_pending(guest.enter_async(&never));
        aborted_while_asleep(|abort| fortress.wait_with(abort));
        drop_pending(fortress.wait_async());

        drop(inside);
        guard.unlock().unwrap();
    }
    // The slow pass.
    guard.unlock().unwrap();
    guard.lockdown(&never).unwrap();
    guard.unlock().unwrap();
    assert!(!fortress.is_locked() && fortress.guests() == 0);
    fortress
}

/// Runs `wait` on this thread with a fresh token that another thread fires once the
/// wait has had time to fall asleep (after its short spin); the wait must answer
/// `Aborted`.
fn aborted_while_asleep(wait: impl FnOnce(&Abort) -> Result<(), Error>) {
    let abort = Abort::new();
    thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_micros(50));
            abort.abort();
        });
        assert_eq!(wait(&abort), Err(Error::Aborted));
    });
}

/// Polls `fut` twice with a waker that does nothing; it must be pending, that is
/// waiting with its waker stored.
fn poll_pending<F: Future>(mut fut: std::pin::Pin<&mut F>, cx: &mut Context<'_>) {
    for _ in 0..2 {
        assert!(fut.as_mut().poll(cx).is_pending(), "the wait had to wait");
    }
}

/// Makes the future that `start` makes with `abort` (a fresh token) wait, then fires
/// the token: the next poll must answer `Aborted` (through `result`, which drops what
/// it holds).
fn abort_pending<'a, F: Future>(
    abort: &'a Abort,
    start: impl FnOnce(&'a Abort) -> F,
    result: impl FnOnce(F::Output) -> Result<(), Error>,
) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(start(abort));
    poll_pending(fut.as_mut(), &mut cx);
    abort.abort();
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => assert_eq!(result(out), Err(Error::Aborted)),
        Poll::Pending => panic!("an aborted wait is still pending"),
    }
}

/// Makes `fut` wait, then drops it.
fn drop_pending<F: Future>(fut: F) {
    let mut fut = pin!(fut);
    poll_pending(fut.as_mut(), &mut Context::from_waker(Waker::noop()));
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

/// The text after `--only` on the command line, if any.
fn only_arg() -> Option<String> {
    std::env::args().skip_while(|a| a != "--only").nth(1)
}

fn main() {
    let rounds: usize = fortress_gate_benches::env_number("PAIRED_ROUNDS", 1000);
    let runs = fortress_gate_benches::runs_arg();
    let only = only_arg();
    let mut table: Vec<(&str, Option<f64>, Vec<f64>)> = Vec::new();
    for run_no in 1..=runs {
        println!("run {run_no}: medians of {rounds} alternating rounds");
        println!(
            "  {:<52} {:>10} {:>10} {:>7}  key",
            "contender / baseline", "ns", "ns", "ratio"
        );
        let measured = run(rounds, only.as_deref());
        assert!(
            !measured.is_empty(),
            "no row's key or name contains {:?}",
            only.as_deref().unwrap_or_default()
        );
        for (i, (key, name, target, row)) in measured.into_iter().enumerate() {
            println!(
                "  {name:<52} {:>10.2} {:>10.2} {:>7.3}  {key}",
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
            "  {name:<52} {m:6.3} [{:.3} - {:.3}]  {goal:8} {verdict}",
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
}
