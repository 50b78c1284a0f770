//! The juju story that gave the fortress its name, with real threads and a real
//! directory.
//!
//! A deployer (the guard) keeps upgrading a "charm": a directory of files that all
//! carry one version number. Each upgrade locks the fortress down, deletes the
//! directory, writes the next version file by file, and unlocks. Metrics collectors
//! (the guests) visit all the time and read every file; a visit that sees two versions,
//! or a file missing, is a torn read.
//!
//!     cargo run --release --example charm_upgrade            # with the fortress
//!     cargo run --release --example charm_upgrade -- --unsafe  # without it
//!
//! With the fortress the summary says `torn reads: 0` (the process fails otherwise);
//! with `--unsafe` the collectors read while the deployer writes, and torn reads appear.

use fortress_gate::{Abort, Error, Fortress, Guest, Worker};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const FILES: usize = 8;
const FILE_BYTES: usize = 16 * 1024;
const COLLECTORS: usize = 3;
const RUN_FOR: Duration = Duration::from_secs(3);
const BETWEEN_UPGRADES: Duration = Duration::from_millis(15);

#[derive(Default)]
struct Tally {
    visits: AtomicU64,
    torn: AtomicU64,
    upgrades: AtomicU64,
    longest_lockdown_us: AtomicU64,
}

fn main() -> Result<(), fortress_gate::BoxError> {
    let unsafe_mode = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--unsafe") => true,
        Some(other) => return Err(format!("unknown argument {other:?}; try --unsafe").into()),
    };
    let root = std::env::temp_dir().join(format!("fortress-demo-{}", std::process::id()));
    let charm = root.join("charm");
    write_version(&charm, 0)?;

    let fortress = Fortress::new();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    println!(
        "charm upgrade demo: 1 deployer, {COLLECTORS} collectors, {FILES} files of {} KiB, {}",
        FILE_BYTES / 1024,
        if unsafe_mode {
            "WITHOUT the fortress (--unsafe)"
        } else {
            "guarded by the fortress"
        }
    );
    println!("charm directory: {}", charm.display());
    fortress.guard().unlock()?;

    let collectors: Vec<_> = (0..COLLECTORS)
        .map(|_| {
            let (guest, tally, stop, charm) =
                (fortress.guest(), tally.clone(), stop.clone(), charm.clone());
            thread::spawn(move || collect(&guest, &charm, &tally, &stop, unsafe_mode))
        })
        .collect();

    let deployer = {
        let (guard, tally, stop, charm) =
            (fortress.guard(), tally.clone(), stop.clone(), charm.clone());
        thread::spawn(move || -> std::io::Result<()> {
            let mut version = 0;
            while !stop.load(Relaxed) {
                thread::sleep(BETWEEN_UPGRADES);
                version += 1;
                if unsafe_mode {
                    write_version(&charm, version)?;
                } else {
                    let asked = Instant::now();
                    match guard.lockdown(&Abort::never()) {
                        Ok(()) => {}
                        Err(Error::Shutdown) => break,
                        Err(other) => panic!("lockdown: {other}"),
                    }
                    let waited = asked.elapsed().as_micros() as u64;
                    tally.longest_lockdown_us.fetch_max(waited, Relaxed);
                    write_version(&charm, version)?;
                    if guard.unlock().is_err() {
                        break;
                    }
                }
                tally.upgrades.fetch_add(1, Relaxed);
            }
            Ok(())
        })
    };

    let started = Instant::now();
    while started.elapsed() < RUN_FOR {
        thread::sleep(Duration::from_millis(500));
        println!(
            "  {:>4.1}s  visits {:>7}  upgrades {:>4}  torn reads {}",
            started.elapsed().as_secs_f64(),
            tally.visits.load(Relaxed),
            tally.upgrades.load(Relaxed),
            tally.torn.load(Relaxed)
        );
    }
    stop.store(true, Relaxed);
    deployer.join().expect("deployer panicked")?;
    // Killing the fortress releases any collector still waiting at the gate.
    fortress.kill();
    for collector in collectors {
        collector.join().expect("collector panicked");
    }
    fortress.wait()?;
    fs::remove_dir_all(&root)?;

    let torn = tally.torn.load(Relaxed);
    println!(
        "visits: {}, upgrades: {}, torn reads: {}, longest lockdown wait: {:.2} ms",
        tally.visits.load(Relaxed),
        tally.upgrades.load(Relaxed),
        torn,
        tally.longest_lockdown_us.load(Relaxed) as f64 / 1000.0
    );
    if torn > 0 && !unsafe_mode {
        return Err("the fortress let a collector see a half-upgraded charm".into());
    }
    Ok(())
}

/// A collector: visit, read every file, check that they agree; until told to stop.
fn collect(guest: &Guest, charm: &Path, tally: &Tally, stop: &AtomicBool, unsafe_mode: bool) {
    while !stop.load(Relaxed) {
        let consistent = if unsafe_mode {
            read_charm(charm)
        } else {
            match guest.visit(|| read_charm(charm), &Abort::never()) {
                Ok(consistent) => consistent,
                Err(_) => return, // shut down
            }
        };
        tally.visits.fetch_add(1, Relaxed);
        if !consistent {
            tally.torn.fetch_add(1, Relaxed);
        }
    }
}

/// Reads every file; `true` if all exist and carry one version.
fn read_charm(charm: &Path) -> bool {
    let mut versions = (0..FILES).map(|i| {
        let text = fs::read_to_string(file(charm, i)).ok()?;
        let line = text.lines().next()?;
        let version: u64 = line.strip_prefix("version ")?.parse().ok()?;
        (text.len() == FILE_BYTES).then_some(version)
    });
    let Some(Some(first)) = versions.next() else {
        return false;
    };
    versions.all(|v| v == Some(first))
}

/// Replaces the charm with `version`: delete it, then write the files one by one.
fn write_version(charm: &Path, version: u64) -> std::io::Result<()> {
    if charm.exists() {
        fs::remove_dir_all(charm)?;
    }
    fs::create_dir_all(charm)?;
    for i in 0..FILES {
        let mut text = format!("version {version}\n").into_bytes();
        text.resize(FILE_BYTES, b'.');
        fs::write(file(charm, i), text)?;
    }
    Ok(())
}

fn file(charm: &Path, i: usize) -> PathBuf {
    charm.join(format!("hook-{i}.txt"))
}
