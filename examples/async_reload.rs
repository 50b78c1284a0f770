//! The async side of the fortress, on a two-worker tokio runtime.
//!
//! The fortress holds a configuration: a release name and a "directory" of a few
//! files, each carrying the release's version number (a `String` and a `HashMap`).
//! Reader tasks read it while a reload task keeps replacing it. Every reload builds
//! the next configuration aside, outside any phase (it reads the files one at a time,
//! yielding to the executor between files, as real I/O would), then takes the
//! fortress with `exclusive_async` and a deadline token (`Abort::after`) and assigns
//! the new configuration in one step; dropping the `Exclusive` unlocks. Readers enter
//! with `enter_async`, read every file through the visit (it derefs to the
//! configuration), yielding between files, and check that all carry the release's
//! version; a mismatch is a torn read.
//!
//! A backup task now and then copies the configuration slowly, in one visit that
//! outlasts the reload's deadline. A reload that comes meanwhile cannot get in within
//! its deadline: it backs out (the gate opens again and the readers go on), keeps the
//! configuration it built, and retries at its next turn. A heartbeat task ticks every
//! millisecond throughout and records its longest gap: since no wait blocks a worker
//! thread, the gap stays near the timer's own granularity.
//!
//! Stopping starts from a `tokio_util::sync::CancellationToken`, turned into an abort
//! token with `Abort::from_future`. Every loop races its next step against
//! `stop.aborted()` (a small hand-written `select`, `unless`, since tokio's `macros`
//! feature is not used), and the same token cuts short any wait at the gate. At the
//! end the fortress is killed, `wait_async` waits until the last visit has left, and
//! `try_into_inner` takes the last configuration out.
//!
//!     cargo run --release --example async_reload                 # one step per reload
//!     cargo run --release --example async_reload -- --piecemeal  # one phase per file
//!
//! With one step per reload the summary says `torn reads: 0` (the process fails
//! otherwise). With `--piecemeal` each reload writes the release name and the files in
//! separate exclusive phases, each safe on its own, and readers that come between two
//! of them see a half-reloaded configuration: torn reads appear, without any data race.

use fortress_gate::{Abort, BoxError, Error, Fortress, Guard, Guest, Worker};
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
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

/// The served configuration, held by the fortress: a release name and the files of
/// that release.
#[derive(Debug, Default)]
struct Config {
    /// `release N`.
    release: String,
    /// File name to contents.
    files: HashMap<String, String>,
}

impl Config {
    /// Builds the configuration of release `version` aside, reading the files one at
    /// a time (a yield after each stands for the I/O).
    async fn load(version: u64) -> Config {
        let mut files = HashMap::with_capacity(FILES);
        for i in 0..FILES {
            files.insert(file_name(i), contents(i, version));
            tokio::task::yield_now().await;
        }
        Config {
            release: format!("release {version}"),
            files,
        }
    }

    /// The version the release name claims.
    fn version(&self) -> Option<u64> {
        self.release.strip_prefix("release ")?.parse().ok()
    }
}

fn file_name(i: usize) -> String {
    format!("file-{i}.conf")
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
    let piecemeal = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--piecemeal") => true,
        Some(other) => return Err(format!("unknown argument {other:?}; try --piecemeal").into()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()?;
    let tally = runtime.block_on(run(piecemeal))?;

    let torn = tally.torn.load(Relaxed);
    println!(
        "reads: {}, reloads: {}, torn reads: {}, longest heartbeat gap: {:.2} ms",
        tally.reads.load(Relaxed),
        tally.reloads.load(Relaxed),
        torn,
        tally.longest_gap_us.load(Relaxed) as f64 / 1000.0
    );
    if torn > 0 && !piecemeal {
        return Err("a reader saw a half-reloaded configuration".into());
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

async fn run(piecemeal: bool) -> Result<Arc<Tally>, BoxError> {
    let fortress = Fortress::holding(Config::load(0).await);
    let tally = Arc::new(Tally::default());
    // Everything stops when `shutdown` is cancelled; the tasks see it through `stop`.
    let shutdown = CancellationToken::new();
    let stop = Abort::from_future(shutdown.clone().cancelled_owned());
    println!(
        "async reload demo: tokio, 2 workers; 1 reload task, {READERS} readers, 1 backup, \
         {FILES} files; {}",
        if piecemeal {
            "each reload in one phase per file (--piecemeal)"
        } else {
            "each reload assigned in one step"
        }
    );
    fortress.guard().unlock()?;

    let heartbeat = tokio::spawn(heartbeat(tally.clone(), stop.clone()));
    let readers: Vec<_> = (0..READERS)
        .map(|_| tokio::spawn(reader(fortress.guest(), tally.clone(), stop.clone())))
        .collect();
    let backup = tokio::spawn(backup(fortress.guest(), tally.clone(), stop.clone()));
    let reloader = tokio::spawn(reloader(
        fortress.guard(),
        tally.clone(),
        stop.clone(),
        piecemeal,
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
    if !piecemeal {
        println!(
            "longest exclusive_async wait: {:.2} ms; reloads backed out after {} ms: {} \
             (during {} slow backups)",
            tally.longest_lockdown_us.load(Relaxed) as f64 / 1000.0,
            LOCKDOWN_WITHIN.as_millis(),
            tally.backed_out.load(Relaxed),
            tally.backups.load(Relaxed)
        );
    }
    // The tasks dropped their guards and guests: this handle is the last, and the
    // configuration can be taken out.
    let last = fortress
        .try_into_inner()
        .map_err(|_| "a handle of the fortress is still alive")?;
    println!(
        "last configuration: {}, {} files",
        last.release,
        last.files.len()
    );
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
async fn reader(guest: Guest<Config>, tally: Arc<Tally>, stop: Abort) {
    let mut stopped = pin!(stop.aborted());
    loop {
        let read = async {
            // `stop` cuts short a wait at a closed gate; the race below also ends a
            // visit in progress (dropping this future drops the visit).
            let config = guest.enter_async(&stop).await?;
            Ok::<bool, Error>(read_all(&config, None).await)
        };
        match unless(stopped.as_mut(), read).await {
            Some(Ok(consistent)) => tally.count_read(consistent),
            None | Some(Err(Error::Aborted | Error::Shutdown)) => return,
            Some(Err(other)) => panic!("enter_async: {other}"),
        }
    }
}

/// Now and then copies the configuration slowly, in one visit that outlasts a
/// reload's deadline.
async fn backup(guest: Guest<Config>, tally: Arc<Tally>, stop: Abort) {
    let mut stopped = pin!(stop.aborted());
    while unless(stopped.as_mut(), tokio::time::sleep(BETWEEN_BACKUPS))
        .await
        .is_some()
    {
        let consistent = match guest.enter_async(&stop).await {
            Ok(config) => read_all(&config, Some(BACKUP_PER_FILE)).await,
            Err(Error::Aborted | Error::Shutdown) => return,
            Err(other) => panic!("enter_async: {other}"),
        }; // the visit ends here
        tally.backups.fetch_add(1, Relaxed);
        tally.count_read(consistent);
    }
}

/// Reads every file, pausing after each (a yield, or `pause`); `true` if all carry the
/// release's version.
async fn read_all(config: &Config, pause: Option<Duration>) -> bool {
    let release = config.version();
    let mut consistent = release.is_some();
    for i in 0..FILES {
        let version = config.files.get(&file_name(i)).and_then(|f| version_of(f));
        consistent &= version.is_some() && version == release;
        match pause {
            Some(pause) => tokio::time::sleep(pause).await,
            None => tokio::task::yield_now().await,
        }
    }
    consistent
}

/// Replaces the configuration with the next release, over and over. The next release
/// is built aside; then an exclusive phase, which gives up (backing out) if it cannot
/// get in within `LOCKDOWN_WITHIN`, assigns it in one step. A reload that backed out
/// keeps what it built for its next turn.
async fn reloader(guard: Guard<Config>, tally: Arc<Tally>, stop: Abort, piecemeal: bool) {
    let mut stopped = pin!(stop.aborted());
    let mut version = 0;
    let mut pending: Option<Config> = None;
    while unless(stopped.as_mut(), tokio::time::sleep(BETWEEN_RELOADS))
        .await
        .is_some()
    {
        if piecemeal {
            version += 1;
            if reload_piecemeal(&guard, version, &stop).await.is_err() {
                return; // stopped or killed
            }
            tally.reloads.fetch_add(1, Relaxed);
            continue;
        }
        let next = match pending.take() {
            Some(next) => next,
            None => {
                version += 1;
                Config::load(version).await // no phase yet: the readers go on
            }
        };
        // A fresh deadline for each attempt.
        let within = Abort::after(LOCKDOWN_WITHIN);
        let asked = Instant::now();
        match guard.exclusive_async(&within).await {
            Ok(mut config) => {
                let waited = asked.elapsed().as_micros() as u64;
                tally.longest_lockdown_us.fetch_max(waited, Relaxed);
                *config = next; // the whole release at once; the old one is dropped
            } // `config` is dropped here: the gate opens again
            Err(Error::Aborted) => {
                // Backed out: the gate is open again. Try at the next turn.
                tally.backed_out.fetch_add(1, Relaxed);
                pending = Some(next);
                continue;
            }
            Err(Error::Shutdown) => return,
            Err(other) => panic!("exclusive_async: {other}"),
        }
        tally.reloads.fetch_add(1, Relaxed);
    }
}

/// The wrong way, for `--piecemeal`: the release name and then each file in an
/// exclusive phase of its own. Every phase is safe, but a reader that comes between
/// two of them sees a configuration that is half old, half new.
async fn reload_piecemeal(guard: &Guard<Config>, version: u64, stop: &Abort) -> Result<(), Error> {
    guard.exclusive_async(stop).await?.release = format!("release {version}");
    for i in 0..FILES {
        let mut config = guard.exclusive_async(stop).await?;
        config.files.insert(file_name(i), contents(i, version));
        drop(config); // unlocks
                      // Writing a file takes a while; other tasks run meanwhile.
        tokio::task::yield_now().await;
    }
    Ok(())
}
