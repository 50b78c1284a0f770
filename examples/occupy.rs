//! `occupy`: a worker that holds the fortress open for its whole life.
//!
//! A metrics collector is a long-running worker that reads the charm directory from
//! time to time. Started with `occupy`, it holds one visit open from start to finish,
//! so the deployer's lockdown waits until the collector has stopped, and no new
//! collector can start while the deployer works.
//!
//!     cargo run --example occupy

use fortress_gate::{occupy, Abort, BoxError, Fortress, Worker};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A worker with a thread of its own that "collects" until killed.
struct Collector {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    thread: std::sync::Mutex<Option<thread::JoinHandle<()>>>,
}

impl Collector {
    fn start() -> Result<Collector, std::io::Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let (s, r) = (stop.clone(), rounds.clone());
        let thread = thread::Builder::new()
            .name("collector".into())
            .spawn(move || {
                while !s.load(Relaxed) {
                    r.fetch_add(1, Relaxed); // read the charm, send metrics...
                    thread::sleep(Duration::from_millis(5));
                }
            })?;
        Ok(Collector {
            stop,
            rounds,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }
}

impl Worker for Collector {
    fn kill(&self) {
        self.stop.store(true, Relaxed);
    }

    fn wait(&self) -> Result<(), BoxError> {
        if let Some(thread) = self.thread.lock().unwrap().take() {
            thread.join().map_err(|_| "collector thread panicked")?;
        }
        Ok(())
    }
}

fn main() -> Result<(), BoxError> {
    let fortress = Fortress::new();
    let (guard, guest) = (fortress.guard(), fortress.guest());
    guard.unlock()?;

    let collector = occupy(&guest, Collector::start, &Abort::never())?;
    println!("collector started; guests inside: {}", fortress.guests());

    // The deployer wants to upgrade: its lockdown closes the gate at once, then
    // waits for the collector to finish.
    let deployer = thread::spawn(move || {
        let asked = Instant::now();
        guard
            .lockdown(&Abort::never())
            .map(|()| (guard, asked.elapsed()))
    });
    thread::sleep(Duration::from_millis(100));
    println!(
        "deployer waiting: locked = {}, collector rounds so far = {}",
        fortress.is_locked(),
        collector.rounds.load(Relaxed)
    );
    let refused = occupy(&guest, Collector::start, &{
        let a = Abort::new();
        a.abort();
        a
    });
    println!(
        "a second collector while the lockdown is pending: {}",
        match refused {
            Ok(_) => "started (unexpected)".to_string(),
            Err(e) => format!("refused ({})", std::error::Error::source(&e).unwrap()),
        }
    );

    // Whoever owns the collector stops it; its visit ends when `wait` returns.
    collector.kill();
    collector.wait()?;
    let (guard, waited) = deployer.join().expect("deployer panicked")?;
    println!(
        "collector stopped after {} rounds; lockdown returned after {:.0} ms with {} guests inside",
        collector.rounds.load(Relaxed),
        waited.as_secs_f64() * 1000.0,
        fortress.guests()
    );
    guard.unlock()?;
    fortress.kill();
    fortress.wait()?;
    Ok(())
}
