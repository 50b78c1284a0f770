//! Helpers shared by the integration tests. Timeouts here only turn a hang into a
//! failure; nothing measures speed.
#![allow(dead_code)]

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

/// Which sleepers the fortress's `Debug` output says may be asleep.
#[derive(Clone, Copy, Debug)]
pub enum Sleepers {
    Gate,
    Drain,
    Done,
}

/// Polls until `fortress` reports sleepers of this kind (they have announced
/// themselves in the state word and sleep or are about to), so a test exercises the
/// sleeping path rather than the spin.
pub fn until_asleep(fortress: &Fortress, kind: Sleepers) {
    let field = match kind {
        Sleepers::Gate => "gate_waiters: true",
        Sleepers::Drain => "drain_waiters: true",
        Sleepers::Done => "done_waiters: true",
    };
    let start = Instant::now();
    while !format!("{fortress:?}").contains(field) {
        assert!(
            start.elapsed() < HANG,
            "no {kind:?} sleeper appeared: {fortress:?}"
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
