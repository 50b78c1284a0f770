//! The async side of the fortress, on a two-worker tokio runtime.
//!
//! A configuration "directory" of a few files, each carrying a version number, is
//! served to reader tasks while a reload task keeps replacing it. Every reload takes
//! the fortress with `exclusive_async` and a deadline token (`Abort::after`), rewrites
//! the files one at a time (yielding to the executor between files, as real I/O
//! would), then lets the `Exclusive` go, which unlocks. Readers read every file inside
//! `visit_async` and check that all carry the same version; a mismatch is a torn read.
//!
//! A backup task now and then copies the directory slowly, in one visit that outlasts
//! the reload's deadline. A reload that comes meanwhile cannot get in within its
//! deadline: it backs out (the gate opens again and the readers go on) and retries at
//! its next turn. A heartbeat task ticks every millisecond throughout and records its
//! longest gap: since no wait blocks a worker thread, the gap stays near the timer's
//! own granularity.
//!
//! Stopping starts from a `tokio_util::sync::CancellationToken`, turned into an abort
//! token with `Abort::from_future`. Every loop races its next step against
//! `stop.aborted()` (a small hand-written `select`, `unless`, since tokio's `macros`
//! feature is not used), and the same token cuts short any wait at the gate. At the
//! end the fortress is killed, and `wait_async` waits until the last visit has left.
//!
//!     cargo run --release --example async_reload            # with the fortress
//!     cargo run --release --example async_reload -- --unsafe  # without it
//!
//! With the fortress the summary says `torn reads: 0` (the process fails otherwise);
//! with `--unsafe` readers and reloads interleave, and torn reads appear. Each file is
//! its own `Mutex<String>`, so a torn read is a mix of versions across files, never a
//! data race.

use fortress_gate::{Abort, BoxError, Error, Fortress, Guard, Guest, Worker};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const FILES: usize = 6;
const BODY_BYTES: usize = 2048;
const READERS: usize = 4;
const RUN_FOR: Duration = Duration::from_secs(3);
const BETWEEN_RELOADS: Duration = Duration::from_millis(5);
/// How long a reload waits for the visits inside before it backs out.
const LOCKDOWN_WITHIN: Duration = Duration::from_millis(5);
const BETWEEN_BACKUPS: Duration = Duration::from_millis(250);
/// The backup's pause after each file: its one visit lasts about `FILES` times this.
const BACKUP_PER_FILE: Duration = Duration::from_millis(4);
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
    backed_out: AtomicU64,
    backups: AtomicU64,
    longest_gap_us: AtomicU64,
    longest_lockdown_us: AtomicU64,
}

impl Tally {
    fn count_read(&self, consistent: bool) {
        self.reads.fetch_add(1, Relaxed);
        if !consistent {
            self.torn.fetch_add(1, Relaxed);
        }
    }
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

/// Runs `work` unless `stop` completes first: `Some` of `work`'s output, or `None`
/// (and `work` is dropped). A two-branch `select!`, by hand.
async fn unless<T>(stop: impl Future<Output = ()>, work: impl Future<Output = T>) -> Option<T> {
    let (mut stop, mut work) = (pin!(stop), pin!(work));
    poll_fn(|cx| {
        if stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        work.as_mut().poll(cx).map(Some)
    })
    .await
}

async fn run(unsafe_mode: bool) -> Result<Arc<Tally>, BoxError> {
    let fortress = Fortress::new();
    let directory = Arc::new(Directory::new(0));
    let tally = Arc::new(Tally::default());
    // Everything stops when `shutdown` is cancelled; the tasks see it through `stop`.
    let shutdown = CancellationToken::new();
    let stop = Abort::from_future(shutdown.clone().cancelled_owned());
    println!(
        "async reload demo: tokio, 2 workers; 1 reload task, {READERS} readers, 1 backup, \
         {FILES} files; {}",
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
    let backup = tokio::spawn(backup(
        fortress.guest(),
        directory.clone(),
        tally.clone(),
        stop.clone(),
        unsafe_mode,
    ));
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
    shutdown.cancel();
    reloader.await?;
    backup.await?;
    for reader in readers {
        reader.await?;
    }
    heartbeat.await?;
    // Every task has stopped. Killing the fortress would also have sent home any
    // caller still waiting at the gate; `wait_async` returns once the last visit left.
    fortress.kill();
    fortress.wait_async().await;
    if !unsafe_mode {
        println!(
            "longest exclusive_async wait: {:.2} ms; reloads backed out after {} ms: {} \
             (during {} slow backups)",
            tally.longest_lockdown_us.load(Relaxed) as f64 / 1000.0,
            LOCKDOWN_WITHIN.as_millis(),
            tally.backed_out.load(Relaxed),
            tally.backups.load(Relaxed)
        );
    }
    Ok(tally)
}

/// Ticks every millisecond and records the longest time between two ticks.
async fn heartbeat(tally: Arc<Tally>, stop: Abort) {
    let mut stopped = pin!(stop.aborted());
    let mut last = Instant::now();
    while unless(stopped.as_mut(), tokio::time::sleep(HEARTBEAT))
        .await
        .is_some()
    {
        let now = Instant::now();
        let gap = (now - last).as_micros() as u64;
        tally.longest_gap_us.fetch_max(gap, Relaxed);
        last = now;
    }
}

/// Serves reads until `stop` fires (or the fortress is killed).
async fn reader(
    guest: Guest,
    directory: Arc<Directory>,
    tally: Arc<Tally>,
    stop: Abort,
    unsafe_mode: bool,
) {
    let mut stopped = pin!(stop.aborted());
    loop {
        let read = async {
            if unsafe_mode {
                Ok(read_all(&directory, None).await)
            } else {
                // `stop` cuts short a wait at a closed gate; the race below also ends
                // a visit in progress (dropping `visit_async` ends the visit).
                guest.visit_async(read_all(&directory, None), &stop).await
            }
        };
        match unless(stopped.as_mut(), read).await {
            Some(Ok(consistent)) => tally.count_read(consistent),
            None | Some(Err(Error::Aborted | Error::Shutdown)) => return,
            Some(Err(other)) => panic!("visit_async: {other}"),
        }
    }
}

/// Now and then copies the directory slowly, in one visit that outlasts a reload's
/// deadline.
async fn backup(
    guest: Guest,
    directory: Arc<Directory>,
    tally: Arc<Tally>,
    stop: Abort,
    unsafe_mode: bool,
) {
    let mut stopped = pin!(stop.aborted());
    let slowly = Some(BACKUP_PER_FILE);
    while unless(stopped.as_mut(), tokio::time::sleep(BETWEEN_BACKUPS))
        .await
        .is_some()
    {
        let consistent = if unsafe_mode {
            read_all(&directory, slowly).await
        } else {
            match guest.visit_async(read_all(&directory, slowly), &stop).await {
                Ok(consistent) => consistent,
                Err(Error::Aborted | Error::Shutdown) => return,
                Err(other) => panic!("visit_async: {other}"),
            }
        };
        tally.backups.fetch_add(1, Relaxed);
        tally.count_read(consistent);
    }
}

/// Reads every file, pausing after each (a yield, or `pause`); `true` if all carry one
/// version.
async fn read_all(directory: &Directory, pause: Option<Duration>) -> bool {
    let mut seen = None;
    let mut consistent = true;
    for i in 0..FILES {
        let version = version_of(&directory.file(i));
        match (seen, version) {
            (_, None) => consistent = false,
            (None, Some(v)) => seen = Some(v),
            (Some(first), Some(v)) => consistent &= first == v,
        }
        match pause {
            Some(pause) => tokio::time::sleep(pause).await,
            None => tokio::task::yield_now().await,
        }
    }
    consistent
}

/// Replaces the directory with the next version, over and over, each time in an
/// exclusive phase that it gives up on (backing out) if it cannot get in within
/// `LOCKDOWN_WITHIN`.
async fn reloader(
    guard: Guard,
    directory: Arc<Directory>,
    tally: Arc<Tally>,
    stop: Abort,
    unsafe_mode: bool,
) {
    let mut stopped = pin!(stop.aborted());
    let mut version = 0;
    while unless(stopped.as_mut(), tokio::time::sleep(BETWEEN_RELOADS))
        .await
        .is_some()
    {
        // A fresh deadline for each attempt.
        let within = Abort::after(LOCKDOWN_WITHIN);
        let exclusive = if unsafe_mode {
            None
        } else {
            let asked = Instant::now();
            match guard.exclusive_async(&within).await {
                Ok(exclusive) => {
                    let waited = asked.elapsed().as_micros() as u64;
                    tally.longest_lockdown_us.fetch_max(waited, Relaxed);
                    Some(exclusive)
                }
                Err(Error::Aborted) => {
                    // Backed out: the gate is open again. Try at the next turn.
                    tally.backed_out.fetch_add(1, Relaxed);
                    continue;
                }
                Err(Error::Shutdown) => return,
                Err(other) => panic!("exclusive_async: {other}"),
            }
        };
        version += 1;
        for i in 0..FILES {
            *directory.file(i) = contents(i, version);
            // Writing a file takes a while; other tasks run meanwhile.
            tokio::task::yield_now().await;
        }
        drop(exclusive); // unlocks
        tally.reloads.fetch_add(1, Relaxed);
    }
}
