//! The shared timer: fires the signals of tokens whose deadline has passed.
//!
//! One timer serves the whole process: a thread that starts with the first deadline
//! a wait ever depends on, and sleeps on a condition variable until the earliest
//! entry is due. A token enters the timer only when a wait first registers with it
//! (a deadline on a call that never waits costs nothing), and leaves it when the
//! token is dropped, so tokens dropped before their deadline leave nothing behind.
//!
//! Firing a signal wakes task wakers, which are user code: each runs isolated (see
//! `user.rs`), after the timer's lock is released, so a waker that panics or re-enters
//! the timer hurts no other deadline, and the thread never dies.
//!
//! In a model build (loom or shuttle) there is no thread: a model moves the clock
//! (`sync::clock::advance`) and calls [`fire_due`] itself.

use super::signal::Signal;
use crate::sync::{lock, now, Arc, Instant, Mutex};
use std::collections::BTreeMap;

/// Pending deadlines, earliest first; the `u64` tells apart entries due at one instant.
#[derive(Default)]
struct Entries {
    due: BTreeMap<(Instant, u64), Arc<Signal>>,
    next_key: u64,
}

pub(crate) struct Timer {
    entries: Mutex<Entries>,
    #[cfg(not(all(test, any(loom, shuttle))))]
    changed: std::sync::Condvar,
}

/// Where a token's entry sits, to remove it again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Key(Instant, u64);

#[cfg(not(all(test, any(loom, shuttle))))]
fn timer() -> &'static Timer {
    static TIMER: std::sync::OnceLock<&'static Timer> = std::sync::OnceLock::new();
    TIMER.get_or_init(|| {
        let timer = Timer {
            entries: Mutex::new(Entries::default()),
            changed: std::sync::Condvar::new(),
        };
        crate::user::spawn_daemon("fortress-gate-timer", timer, Timer::run)
    })
}

#[cfg(all(test, any(loom, shuttle)))]
fn timer() -> &'static Timer {
    crate::sync::model_static! {
        static ref TIMER: Timer = Timer { entries: Mutex::new(Entries::default()) };
    }
    &TIMER
}

/// Fires `signal` once `deadline` has passed (at once if it has already).
pub(crate) fn arm(deadline: Instant, signal: &Arc<Signal>) -> Key {
    let timer = timer();
    let mut entries = lock(&timer.entries);
    let key = Key(deadline, entries.next_key);
    entries.next_key += 1;
    let earliest = entries
        .due
        .keys()
        .next()
        .is_none_or(|first| (deadline, key.1) < *first);
    entries.due.insert((key.0, key.1), Arc::clone(signal));
    drop(entries);
    if earliest {
        timer.wake();
    }
    key
}

/// Forgets an entry (its token is gone). Nothing happens if it already fired.
pub(crate) fn disarm(key: Key) {
    lock(&timer().entries).due.remove(&(key.0, key.1));
}

/// Fires every entry that is due now (the models' stand-in for the timer thread).
#[cfg(all(test, any(loom, shuttle)))]
pub(crate) fn fire_due() {
    timer().fire_due(now())
}

/// Entries waiting in the timer: for the leak checks.
#[cfg(feature = "internals")]
pub(crate) fn pending() -> usize {
    lock(&timer().entries).due.len()
}

impl Timer {
    fn fire_due(&self, now: Instant) {
        let mut entries = lock(&self.entries);
        let later = entries.due.split_off(&(now, u64::MAX));
        let due = core::mem::replace(&mut entries.due, later);
        drop(entries);
        for signal in due.into_values() {
            signal.fire();
        }
    }

    #[cfg(not(all(test, any(loom, shuttle))))]
    fn wake(&self) {
        self.changed.notify_one();
    }

    #[cfg(all(test, any(loom, shuttle)))]
    fn wake(&self) {}

    /// The timer thread: fire what is due, then sleep until the next entry is due or
    /// an earlier one arrives.
    #[cfg(not(all(test, any(loom, shuttle))))]
    fn run(&self) {
        loop {
            self.fire_due(now());
            let entries = self
                .entries
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Look under the lock: an entry armed after this point notifies after this
            // thread waits, so no earlier deadline is missed.
            match entries.due.keys().next().map(|&(at, _)| at) {
                Some(at) => {
                    let wait = at.saturating_duration_since(now());
                    if !wait.is_zero() {
                        drop(self.changed.wait_timeout(entries, wait));
                    }
                }
                None => drop(self.changed.wait(entries)),
            }
        }
    }
}
