//! The async side of the fortress, on a two-worker tokio runtime.
//!
//! A configuration "directory" of a few files, each carrying a version number, is
//! served to reader tasks while a reload task keeps replacing it. Every reload locks
//! the fortress down with `lockdown_async`, rewrites the files one at a time (yielding
//! to the executor between files, as real I/O would), then unlocks. Readers read every
//! file inside `visit_async` and check that all carry the same version; a mismatch is a
//! torn read. A heartbeat task ticks every millisecond throughout and records its
//! longest gap: since no wait blocks a worker thread, the gap stays near the timer's
//! own granularity.
//!
//!     cargo run --release --example async_reload            # with the fortress
//!     cargo run --release --example async_reload -- --unsafe  # without it
//!
//! With the fortress the summary says `torn reads: 0` (the process fails otherwise);
//! with `--unsafe` readers and reloads interleave, and torn reads appear. Each file is
//! its own `Mutex<String>`, so a torn read is a mix of versions across files, never a
//! data race.

use fortress_gate::{Abort, BoxError, Error, Fortress, Guard, Guest, Worker};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const FILES: usize = 6;
const BODY_BYTES: usize = 2048;
const READERS: usize = 4;
const RUN_FOR: Duration = Duration::from_secs(3);
const BETWEEN_RELOADS: Duration = Duration::from_millis(5);
const HEARTBEAT: Duration = Duration::from_millis(1);

/// The served data: each file behind its own lock, so that a reload replaces them one
/// by one and only the fortress makes the set consistent.
struct Directory {
    files: Vec<Mutex<String>>,
}

impl Directory {
    fn new(version: u64) -> Directory {
        Directory {
            files: (0..FILES)
                .map(|i| Mutex::new(contents(i, version)))
                .collect(),
        }
    }

    fn file(&self, i: usize) -> MutexGuard<'_, String> {
        // A reader or reloader that panicked leaves whole strings behind.
        self.files[i].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// File `i` at `version`: a header line, then a body that repeats the version.
fn contents(i: usize, version: u64) -> String {
    let mut text = format!("file {i} version {version}\n");
    let digit = char::from(b'0' + (version % 10) as u8);
    text.extend(std::iter::repeat_n(digit, BODY_BYTES));
    text
}

/// The version a file claims, if the file is well formed and its body agrees.
fn version_of(text: &str) -> Option<u64> {
    let (header, body) = text.split_once('\n')?;
    let version: u64 = header.rsplit_once(' ')?.1.parse().ok()?;
    let digit = char::from(b'0' + (version % 10) as u8);
    (body.len() == BODY_BYTES && body.chars().all(|c| c == digit)).then_some(version)
}

#[derive(Default)]
struct Tally {
    reads: AtomicU64,
    torn: AtomicU64,
    reloads: AtomicU64,
    longest_gap_us: AtomicU64,
    longest_lockdown_us: AtomicU64,
}

fn main() -> Result<(), BoxError> {
    let unsafe_mode = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--unsafe") => true,
        Some(other) => return Err(format!("unknown argument {other:?}; try --unsafe").into()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()?;
    let tally = runtime.block_on(run(unsafe_mode))?;

    let torn = tally.torn.load(Relaxed);
    println!(
        "reads: {}, reloads: {}, torn reads: {}, longest heartbeat gap: {:.2} ms",
        tally.reads.load(Relaxed),
        tally.reloads.load(Relaxed),
        torn,
        tally.longest_gap_us.load(Relaxed) as f64 / 1000.0
    );
    if torn > 0 && !unsafe_mode {
        return Err("the fortress let a reader see a half-reloaded directory".into());
    }
    Ok(())
}

async fn run(unsafe_mode: bool) -> Result<Arc<Tally>, BoxError> {
    let fortress = Fortress::new();
    let directory = Arc::new(Directory::new(0));
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    println!(
        "async reload demo: tokio, 2 workers; 1 reload task, {READERS} readers, {FILES} files; {}",
        if unsafe_mode {
            "WITHOUT the fortress (--unsafe)"
        } else {
            "guarded by the fortress"
        }
    );
    fortress.guard().unlock()?;

    let heartbeat = tokio::spawn(heartbeat(tally.clone(), stop.clone()));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let task = reader(
                fortress.guest(),
                directory.clone(),
                tally.clone(),
                stop.clone(),
                unsafe_mode,
            );
            tokio::spawn(task)
        })
        .collect();
    let reloader = tokio::spawn(reloader(
        fortress.guard(),
        directory.clone(),
        tally.clone(),
        stop.clone(),
        unsafe_mode,
    ));

    let started = Instant::now();
    while started.elapsed() < RUN_FOR {
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!(
            "  {:>4.1}s  reads {:>8}  reloads {:>4}  torn reads {:>5}  longest heartbeat gap {:.2} ms",
            started.elapsed().as_secs_f64(),
            tally.reads.load(Relaxed),
            tally.reloads.load(Relaxed),
            tally.torn.load(Relaxed),
            tally.longest_gap_us.load(Relaxed) as f64 / 1000.0
        );
    }
    stop.store(true, Relaxed);
    reloader.await?;
    // Killing the fortress sends any reader still waiting at the gate home.
    fortress.kill();
    for reader in readers {
        reader.await?;
    }
    heartbeat.await?;
    fortress.wait_async().await;
    if !unsafe_mode {
        println!(
            "longest lockdown_async wait: {:.2} ms",
            tally.longest_lockdown_us.load(Relaxed) as f64 / 1000.0
        );
    }
    Ok(tally)
}

/// Ticks every millisecond and records the longest time between two ticks.
async fn heartbeat(tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut last = Instant::now();
    while !stop.load(Relaxed) {
        tokio::time::sleep(HEARTBEAT).await;
        let now = Instant::now();
        let gap = (now - last).as_micros() as u64;
        tally.longest_gap_us.fetch_max(gap, Relaxed);
        last = now;
    }
}

/// Serves reads until told to stop (or until the fortress is killed).
async fn reader(
    guest: Guest,
    directory: Arc<Directory>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    unsafe_mode: bool,
) {
    let never = Abort::never();
    while !stop.load(Relaxed) {
        let consistent = if unsafe_mode {
            read_all(&directory).await
        } else {
            match guest.visit_async(read_all(&directory), &never).await {
                Ok(consistent) => consistent,
                Err(Error::Shutdown) => return,
                Err(other) => panic!("visit_async: {other}"),
            }
        };
        tally.reads.fetch_add(1, Relaxed);
        if !consistent {
            tally.torn.fetch_add(1, Relaxed);
        }
    }
}

/// Reads every file, yielding between files; `true` if all carry one version.
async fn read_all(directory: &Directory) -> bool {
    let mut seen = None;
    let mut consistent = true;
    for i in 0..FILES {
        let version = version_of(&directory.file(i));
        match (seen, version) {
            (_, None) => consistent = false,
            (None, Some(v)) => seen = Some(v),
            (Some(first), Some(v)) => consistent &= first == v,
        }
        tokio::task::yield_now().await;
    }
    consistent
}

/// Replaces the directory with the next version, over and over, under a lockdown.
async fn reloader(
    guard: Guard,
    directory: Arc<Directory>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    unsafe_mode: bool,
) {
    let never = Abort::never();
    let mut version = 0;
    while !stop.load(Relaxed) {
        tokio::time::sleep(BETWEEN_RELOADS).await;
        version += 1;
        if !unsafe_mode {
            let asked = Instant::now();
            match guard.lockdown_async(&never).await {
                Ok(()) => {}
                Err(Error::Shutdown) => return,
                Err(other) => panic!("lockdown_async: {other}"),
            }
            let waited = asked.elapsed().as_micros() as u64;
            tally.longest_lockdown_us.fetch_max(waited, Relaxed);
        }
        for i in 0..FILES {
            *directory.file(i) = contents(i, version);
            // Writing a file takes a while; other tasks run meanwhile.
            tokio::task::yield_now().await;
        }
        if !unsafe_mode && guard.unlock().is_err() {
            return;
        }
        tally.reloads.fetch_add(1, Relaxed);
    }
}
