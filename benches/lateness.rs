//! How late a deadline wakes a sleeping wait: 100 times, a guard calls
//! `lockdown(&Abort::after(20 ms))` with a visit held inside, so it sleeps until the
//! shared timer fires the token; the lateness is the time from the token's deadline to
//! the return of `lockdown`. For scale, the same is measured for `std::thread::sleep`
//! and for `Condvar::wait_timeout`, the OS's own timed sleeps.
//!
//! `cargo run -p fortress-gate-benches --release --bin deadline_lateness`

use fortress_gate::{Abort, Error, Fortress};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

const RUNS: usize = 100;
const TIMEOUT: Duration = Duration::from_millis(20);

fn main() {
    let fortress = Fortress::new();
    let guard = fortress.guard();
    guard.unlock().expect("a new fortress unlocks");
    let visit = fortress
        .guest()
        .enter_owned(&Abort::never())
        .expect("an open fortress admits a visit");

    let mut lockdown = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let abort = Abort::after(TIMEOUT);
        let deadline = abort.deadline().expect("Abort::after sets a deadline");
        let result = guard.lockdown(&abort);
        let returned = Instant::now();
        assert_eq!(
            result,
            Err(Error::Aborted),
            "the visit inside is still running"
        );
        assert!(
            returned >= deadline,
            "lockdown returned before its deadline"
        );
        lockdown.push(returned - deadline);
        // The aborted lockdown left the gate closed: reopen it for the next run.
        guard.unlock().expect("the fortress is not killed");
    }
    drop(visit);

    let mut sleep = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let deadline = Instant::now() + TIMEOUT;
        std::thread::sleep(TIMEOUT);
        sleep.push(Instant::now().saturating_duration_since(deadline));
    }

    let mut condvar = Vec::with_capacity(RUNS);
    let (lock, cond) = (Mutex::new(()), Condvar::new());
    for _ in 0..RUNS {
        let deadline = Instant::now() + TIMEOUT;
        let mut guard = lock.lock().unwrap();
        // Nobody notifies: loop over spurious wake-ups until the timeout is reached.
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            guard = cond.wait_timeout(guard, left).unwrap().0;
        }
        drop(guard);
        condvar.push(Instant::now() - deadline);
    }

    println!("lateness after a {TIMEOUT:?} deadline, {RUNS} runs each:");
    println!(
        "{:<44} {:>10} {:>10} {:>10} {:>10}",
        "", "min", "median", "p90", "worst"
    );
    report("lockdown(&Abort::after(20 ms)), visit inside", lockdown);
    report("std::thread::sleep(20 ms)", sleep);
    report("Condvar::wait_timeout(20 ms)", condvar);
}

fn report(what: &str, mut late: Vec<Duration>) {
    late.sort();
    let at = |q: f64| late[((late.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what:<44} {:>10} {:>10} {:>10} {:>10}",
        micros(late[0]),
        micros(at(0.5)),
        micros(at(0.9)),
        micros(late[late.len() - 1]),
    );
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}
