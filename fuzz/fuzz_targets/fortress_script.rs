//! Runs an arbitrary script of operations on a real fortress from up to three threads
//! and checks the SPEC's invariants after each step. It never hangs: every blocking
//! call carries an abort token that a watchdog fires when the threads stop making
//! progress, and if they are still stuck (in `wait`), the watchdog kills the fortress.
#![no_main]

use arbitrary::Arbitrary;
use fortress_gate::internals::snapshot;
use fortress_gate::{Abort, Error, Fortress, OwnedVisit, Worker};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    /// `enter`, keeping the visit until a later `Leave`.
    Enter { prefired: bool },
    Leave,
    TryEnter,
    /// A whole `visit` with a closure.
    Visit { prefired: bool },
    Unlock,
    Lockdown { prefired: bool },
    Kill,
    /// `wait`, only by a thread that holds no visit (else it waits on itself).
    Wait,
}

#[derive(Arbitrary, Debug)]
struct Script {
    threads: Vec<Vec<Op>>,
}

struct World {
    fortress: Fortress,
    watchdog: Abort,
    prefired: Abort,
    killed: AtomicBool,
    progress: AtomicU64,
    running: AtomicUsize,
}

fn run(world: &World, ops: &[Op]) {
    let fortress = &world.fortress;
    let (guard, guest) = (fortress.guard(), fortress.guest());
    let mut mine: Vec<OwnedVisit> = Vec::new();
    for &op in ops {
        let killed = world.killed.load(SeqCst); // was `kill` done before this op?
        let abort = |prefired: bool| if prefired { &world.prefired } else { &world.watchdog };
        match op {
            Op::Enter { prefired } => match guest.enter_owned(abort(prefired)) {
                Ok(v) => {
                    assert!(!killed, "entered a killed fortress");
                    mine.push(v);
                }
                Err(Error::Shutdown) => {}
                Err(e) => {
                    assert!(!killed, "{e} after kill");
                    assert_eq!(e, Error::Aborted);
                }
            },
            Op::Leave => drop(mine.pop()),
            Op::TryEnter => {
                if let Some(v) = guest.try_enter() {
                    assert!(!killed, "try_enter admitted into a killed fortress");
                    drop(v);
                }
            }
            Op::Visit { prefired } => {
                let ran = guest.visit(|| snapshot(fortress).guests(), abort(prefired));
                match ran {
                    Ok(inside) => {
                        assert!(!killed);
                        assert!(inside as usize > mine.len(), "the visit was not counted");
                    }
                    Err(e) => assert!(e == Error::Shutdown || !killed),
                }
            }
            Op::Unlock => {
                let r = guard.unlock();
                assert!(r.is_ok() || r == Err(Error::Shutdown));
                assert!(!(killed && r.is_ok()), "unlock succeeded after kill");
            }
            Op::Lockdown { prefired } => {
                let r = guard.lockdown(abort(prefired));
                if killed {
                    assert_eq!(r, Err(Error::Shutdown));
                }
                if !mine.is_empty() {
                    assert_ne!(r, Ok(()), "lockdown returned Ok with this thread's visit inside");
                }
            }
            Op::Kill => {
                fortress.kill();
                world.killed.store(true, SeqCst);
                assert!(snapshot(fortress).shut_down());
            }
            Op::Wait if mine.is_empty() => {
                fortress.wait().unwrap();
                assert!(snapshot(fortress).shut_down(), "wait returned before kill");
            }
            Op::Wait => {}
        }
        assert!(snapshot(fortress).guests() >= mine.len() as u64, "visits went missing");
        world.progress.fetch_add(1, SeqCst);
    }
    drop(mine);
    world.running.fetch_sub(1, SeqCst);
}

fuzz_target!(|script: Script| {
    let threads: Vec<&[Op]> = script.threads.iter().take(3).map(|t| &t[..t.len().min(64)]).collect();
    let prefired = Abort::new();
    prefired.abort();
    let world = World {
        fortress: Fortress::new(),
        watchdog: Abort::new(),
        prefired,
        killed: AtomicBool::new(false),
        progress: AtomicU64::new(0),
        running: AtomicUsize::new(threads.len()),
    };
    std::thread::scope(|s| {
        for ops in &threads {
            let world = &world;
            s.spawn(move || run(world, ops));
        }
        // The watchdog: on a stall, first fire the token, then kill.
        let mut last = u64::MAX;
        let mut stalls = 0;
        while world.running.load(SeqCst) > 0 {
            std::thread::sleep(Duration::from_micros(200));
            let now = world.progress.load(SeqCst);
            if now != last {
                (last, stalls) = (now, 0);
                continue;
            }
            stalls += 1;
            if stalls == 10 {
                world.watchdog.abort();
            } else if stalls == 20 {
                world.fortress.kill();
                world.killed.store(true, SeqCst);
            }
        }
    });
    let end = snapshot(&world.fortress);
    assert_eq!(end.guests(), 0, "a visit was lost: {end:?}");
    assert_eq!(end.check_invariants(), Ok(()), "{end:?}");
    world.fortress.kill();
    world.fortress.wait().unwrap();
});
