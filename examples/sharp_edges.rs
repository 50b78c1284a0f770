//! Sharp edges of a fortress in a service, measured. The guide's section "Sharp
//! edges in a service" quotes what this program prints.
//!
//!     cargo run --release --example sharp_edges
//!
//! (a) A pending lockdown holds every new visit until it gets in or gives up.
//! (b) A blocking `exclusive` inside a task on a current-thread runtime cannot get in:
//!     the visit it waits for belongs to a task that cannot run meanwhile.
//! (c) A guard that locks down again at once after each unlock keeps waiting tasks
//!     out; a pause between its cycles lets them in.
//! (d) `wait` and `wait_async` return only after a kill; to wait for the visits of
//!     the moment to leave, lock down.
//! (e) What tokio can tell about the thread that calls: a runtime worker, a blocking
//!     thread, or a worker inside `block_in_place`.
//!
//! Every figure is one measurement on whatever machine runs it, so it varies from run
//! to run; the whole program takes about four seconds.

use fortress_gate::{Abort, BoxError, Error, Fortress, Guest, Worker};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long the long visits of (a) and (b) last.
const LONG_VISIT: Duration = Duration::from_millis(20);
/// How long each request of (c) is willing to wait at the gate.
const PATIENCE: Duration = Duration::from_millis(100);
/// How long each exclusive phase of (c) works.
const PHASE_WORK: Duration = Duration::from_micros(5);
/// How long each variant of (c) runs.
const CYCLING_FOR: Duration = Duration::from_millis(400);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<(), BoxError> {
    println!("sharp edges: one run, on this machine; the figures vary from run to run");
    pending_lockdown()?;
    blocking_exclusive_in_a_task()?;
    cycling_guard()?;
    wait_needs_a_kill()?;
    which_thread()?;
    Ok(())
}

/// (a) A long visit is inside; a guard's `exclusive` closes the gate and waits for it,
/// with or without a deadline; requests that arrive meanwhile wait at the closed gate.
fn pending_lockdown() -> Result<(), BoxError> {
    println!("(a) requests arriving while a lockdown waits for a visit of 3 x 20 ms:");
    let long_visit = 3 * LONG_VISIT;
    for deadline in [Some(Duration::from_millis(20)), None] {
        let fortress = Fortress::holding(String::from("config 1"));
        let guard = fortress.guard();
        guard.unlock()?;
        let guest = fortress.guest();

        let visit = guest.enter_owned(&Abort::never())?;
        let visitor = thread::spawn(move || {
            thread::sleep(long_visit); // a slow report, in one visit
            drop(visit);
        });
        let locker = thread::spawn(move || {
            let abort = deadline.map_or_else(Abort::never, Abort::after);
            let asked = Instant::now();
            let outcome = guard.exclusive(&abort).map(|mut config| {
                *config = String::from("config 2");
            }); // the phase ends here, at once
            (outcome, asked.elapsed())
        });
        while !fortress.is_locked() {
            thread::yield_now(); // until the lockdown has closed the gate
        }
        // Four requests, arriving 0, 5, 10 and 15 ms after the gate closed.
        let closed = Instant::now();
        let requests: Vec<_> = (0..4_u32)
            .map(|i| {
                let guest = guest.clone();
                thread::spawn(move || {
                    thread::sleep((closed + Duration::from_millis(5) * i) - Instant::now());
                    let arrived = Instant::now();
                    let seen = guest.read(|config| config.clone(), &Abort::never());
                    (arrived.elapsed(), seen)
                })
            })
            .collect();
        let waits: Vec<String> = requests
            .into_iter()
            .map(|request| {
                let (waited, seen) = request.join().expect("request thread");
                format!("{:.1} ms ({})", ms(waited), seen.expect("a visit"))
            })
            .collect();
        let (outcome, locked_for) = locker.join().expect("locker thread");
        visitor.join().expect("visitor thread");
        match deadline {
            Some(deadline) => println!(
                "    deadline {} ms: the exclusive call returned {:?} after {:.1} ms; \
                 the requests waited {}",
                deadline.as_millis(),
                outcome,
                ms(locked_for),
                waits.join(", ")
            ),
            None => println!(
                "    no deadline: the exclusive call returned {:?} after {:.1} ms; the \
                 requests waited {}",
                outcome,
                ms(locked_for),
                waits.join(", ")
            ),
        }
    }
    Ok(())
}

/// (b) On a current-thread runtime, a task holds a visit that needs 20 ms (a timer);
/// another task asks for an exclusive phase, first with the blocking call, then with
/// the async one.
fn blocking_exclusive_in_a_task() -> Result<(), BoxError> {
    println!("(b) exclusive inside a task on a current-thread runtime, deadline 500 ms,");
    println!(
        "    while another task's visit needs {} ms:",
        LONG_VISIT.as_millis()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    for blocking in [true, false] {
        let outcome: Result<(Result<(), Error>, Duration), BoxError> = runtime.block_on(async {
            let fortress = Fortress::holding(0_u64);
            let guard = fortress.guard();
            guard.unlock()?;
            let guest = fortress.guest();
            let (entered, is_inside) = tokio::sync::oneshot::channel();
            let request = tokio::spawn(async move {
                let visit = guest.enter_async(Abort::NEVER).await?;
                let _ = entered.send(());
                tokio::time::sleep(LONG_VISIT).await; // the visit's own I/O
                Ok::<u64, Error>(*visit)
            });
            is_inside.await?;
            let reload = tokio::spawn(async move {
                let within = Abort::after(Duration::from_millis(500));
                let asked = Instant::now();
                let outcome = if blocking {
                    // Blocks the runtime's only thread: the request task cannot run,
                    // so its timer cannot fire and its visit never ends.
                    guard.exclusive(&within).map(|mut n| *n += 1)
                } else {
                    guard.exclusive_async(&within).await.map(|mut n| *n += 1)
                };
                (outcome, asked.elapsed())
            });
            let result = reload.await?;
            request.await??;
            Ok(result)
        });
        let (outcome, took) = outcome?;
        println!(
            "    {:<17} returned {:?} after {:.1} ms",
            if blocking {
                "exclusive:"
            } else {
                "exclusive_async:"
            },
            outcome,
            ms(took)
        );
    }
    Ok(())
}

/// (c) A guard that cycles exclusive phases of `PHASE_WORK` on its own thread, with
/// various pauses between them, against two tasks on a current-thread runtime that
/// keep asking for visits, each entry giving up after `PATIENCE`.
fn cycling_guard() -> Result<(), BoxError> {
    println!(
        "(c) a guard cycling {} us exclusive phases vs 2 tasks entering over and over, each \
         entry giving up after {} ms ({} ms per variant):",
        PHASE_WORK.as_micros(),
        PATIENCE.as_millis(),
        CYCLING_FOR.as_millis()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    // What the guard does between two phases; `None`: it takes no phase at all.
    type Pause = Option<fn()>;
    let pauses: [(&str, Pause); 4] = [
        ("idle guard", None),
        ("no pause", Some(|| {})),
        ("thread::yield_now()", Some(thread::yield_now)),
        (
            "sleep(50 us)",
            Some(|| thread::sleep(Duration::from_micros(50))),
        ),
    ];
    for (name, pause) in pauses {
        let fortress = Fortress::holding(0_u64);
        let guard = fortress.guard();
        guard.unlock()?;
        let stop = Arc::new(AtomicBool::new(false));
        let cycler = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut phases = 0_u64;
                let Some(pause) = pause else {
                    return phases; // the idle guard: no phase at all
                };
                while !stop.load(Relaxed) {
                    let mut phase = guard.exclusive(&Abort::never()).expect("exclusive");
                    *phase += 1;
                    let busy = Instant::now();
                    while busy.elapsed() < PHASE_WORK {
                        std::hint::spin_loop(); // the phase's work
                    }
                    drop(phase); // unlocks
                    phases += 1;
                    pause();
                }
                phases
            })
        };
        let started = Instant::now();
        let until = started + CYCLING_FOR;
        let tasks = runtime.block_on(async {
            let tasks: Vec<_> = (0..2)
                .map(|_| tokio::spawn(keep_entering(fortress.guest(), until)))
                .collect();
            let mut done = Vec::new();
            for task in tasks {
                done.push(task.await.expect("entering task"));
            }
            done
        });
        let elapsed = started.elapsed().as_secs_f64();
        stop.store(true, Relaxed);
        let phases = cycler.join().expect("cycling thread");
        let per_task: Vec<String> = tasks
            .iter()
            .map(|t| {
                format!(
                    "{:.1} k visits/s, gave up {} times, longest wait that got in {:.1} ms",
                    t.visits as f64 / elapsed / 1e3,
                    t.gave_up,
                    ms(t.worst)
                )
            })
            .collect();
        println!(
            "    {name:<20} guard {:>4.1} k phases/s\n        task 1: {}\n        task 2: {}",
            phases as f64 / elapsed / 1e3,
            per_task[0],
            per_task[1]
        );
    }
    Ok(())
}

/// What one task of (c) saw.
struct Entering {
    visits: u64,
    /// Entries that waited `PATIENCE` and gave up.
    gave_up: u64,
    /// The longest wait of an entry that got in.
    worst: Duration,
}

/// Enters over and over until `until`, each entry giving up after `PATIENCE`.
async fn keep_entering(guest: Guest<u64>, until: Instant) -> Entering {
    let mut seen = Entering {
        visits: 0,
        gave_up: 0,
        worst: Duration::ZERO,
    };
    while Instant::now() < until {
        let patience = Abort::after(PATIENCE);
        let asked = Instant::now();
        match guest.enter_async(&patience).await {
            Ok(visit) => {
                std::hint::black_box(*visit);
                seen.visits += 1;
                seen.worst = seen.worst.max(asked.elapsed());
            }
            Err(Error::Aborted) => seen.gave_up += 1,
            Err(other) => panic!("enter_async: {other}"),
        }
    }
    seen
}

/// (d) The waits for the end wait for a kill, however empty the fortress.
fn wait_needs_a_kill() -> Result<(), BoxError> {
    println!("(d) waiting for the end of an open, empty fortress:");
    let fortress = Fortress::holding(0_u64);
    let guard = fortress.guard();
    guard.unlock()?;

    let asked = Instant::now();
    let outcome = fortress.wait_with(&Abort::after(Duration::from_millis(50)));
    println!(
        "    wait_with(50 ms deadline), no kill: {:?} after {:.1} ms",
        outcome,
        ms(asked.elapsed())
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let asked = Instant::now();
    let outcome = runtime.block_on(async {
        tokio::time::timeout(Duration::from_millis(50), fortress.wait_async()).await
    });
    println!(
        "    wait_async under a 50 ms timeout, no kill: {} after {:.1} ms",
        if outcome.is_ok() {
            "completed"
        } else {
            "timed out"
        },
        ms(asked.elapsed())
    );

    let asked = Instant::now();
    guard.lockdown(&Abort::never())?;
    println!(
        "    lockdown (the drain) of the same fortress: Ok after {:.3} ms",
        ms(asked.elapsed())
    );

    fortress.kill();
    let asked = Instant::now();
    fortress.wait()?;
    println!(
        "    after kill, wait: Ok after {:.3} ms",
        ms(asked.elapsed())
    );
    Ok(())
}

/// What tokio's public calls say about the calling thread.
struct Probe {
    worker_index: Option<usize>,
    handle: bool,
    task_id: bool,
    budget_left: bool,
}

fn probe() -> Probe {
    Probe {
        worker_index: tokio::runtime::worker_index(),
        handle: tokio::runtime::Handle::try_current().is_ok(),
        task_id: tokio::task::try_id().is_some(),
        budget_left: tokio::task::coop::has_budget_remaining(),
    }
}

/// (e) Which of tokio's public calls tell a worker thread from a blocking one.
fn which_thread() -> Result<(), BoxError> {
    println!("(e) tokio's view of the calling thread (multi-thread runtime, 2 workers):");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    let probes = runtime.block_on(async {
        let worker = tokio::spawn(async { probe() }).await?;
        let blocking = tokio::task::spawn_blocking(probe).await?;
        let in_place = tokio::spawn(async { tokio::task::block_in_place(probe) }).await?;
        Ok::<_, BoxError>([
            ("task on a worker", worker),
            ("spawn_blocking closure", blocking),
            ("block_in_place closure", in_place),
            ("block_on's own future", probe()),
        ])
    })?;
    let current = tokio::runtime::Builder::new_current_thread().build()?;
    let on_current = current.block_on(async { tokio::spawn(async { probe() }).await })?;
    println!(
        "    {:<28} {:<14} {:<13} {:<10} has_budget_remaining",
        "where", "worker_index", "try_current", "try_id"
    );
    let rows = probes.into_iter().chain([
        ("task, current-thread runtime", on_current),
        ("outside any runtime", probe()),
    ]);
    for (place, probe) in rows {
        println!(
            "    {:<28} {:<14} {:<13} {:<10} {}",
            place,
            format!("{:?}", probe.worker_index),
            if probe.handle { "Ok" } else { "Err" },
            if probe.task_id { "Some" } else { "None" },
            probe.budget_left
        );
    }
    Ok(())
}
