//! Helpers shared by the integration tests. Timeouts here only turn a hang into a
//! failure; nothing measures speed.
#![allow(dead_code)]

use fortress_gate::internals::{snapshot, Kind, Waiters};
use fortress_gate::{Abort, Fortress};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Long enough never to fire on a loaded 2-core machine (or under Miri) unless
/// something really hangs.
pub const HANG: Duration = Duration::from_secs(if cfg!(miri) { 600 } else { 30 });

/// Runs `f` on its own thread and fails the test if it has not returned within
/// [`HANG`]. A panic in `f` propagates.
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let out = f();
        let _ = tx.send(());
        out
    });
    match rx.recv_timeout(HANG) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still blocked after {HANG:?}"),
    }
}

/// What a waiter waits for, as the tests name it.
#[derive(Clone, Copy, Debug)]
pub enum Sleepers {
    Gate,
    Drain,
    Done,
}

impl Sleepers {
    fn waiters(self) -> Waiters {
        match self {
            Sleepers::Gate => Waiters::Gate,
            Sleepers::Drain => Waiters::Drain,
            Sleepers::Done => Waiters::Done,
        }
    }
}

/// Polls until `fortress` has threads of this kind flagged in its state word (they
/// have announced themselves and sleep or are about to), so a test exercises the
/// sleeping path rather than the spin.
pub fn until_asleep(fortress: &Fortress, kind: Sleepers) {
    until_flagged(fortress, kind, Kind::Thread)
}

/// Polls until `fortress` has tasks of this kind flagged: they have returned
/// `Pending` (or are about to).
pub fn until_pending(fortress: &Fortress, kind: Sleepers) {
    until_flagged(fortress, kind, Kind::Task)
}

fn until_flagged(fortress: &Fortress, kind: Sleepers, who: Kind) {
    let start = Instant::now();
    while !snapshot(fortress).has(kind.waiters(), who) {
        assert!(
            start.elapsed() < HANG,
            "no {kind:?} {who:?} appeared: {fortress:?}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Polls until `cond` holds, failing after [`HANG`].
pub fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < HANG, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// A token that has already fired.
pub fn fired() -> Abort {
    let abort = Abort::new();
    abort.abort();
    abort
}

/// A new fortress, unlocked.
pub fn unlocked() -> Fortress {
    let fortress = Fortress::new();
    fortress.guard().unlock().unwrap();
    fortress
}
