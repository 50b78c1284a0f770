//! The one place that names the synchronisation primitives: std's (with `atomic-wait`
//! futexes and a short spin) in a normal build, loom's under `--cfg loom`.
//!
//! The rest of the crate is the same code under both cfgs.

#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicU32, AtomicU64},
    Arc, Mutex,
};

#[cfg(all(test, loom))]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicU32, AtomicU64},
    Arc, Mutex,
};

pub(crate) use core::sync::atomic::Ordering;
use Ordering::{Acquire, Release};

/// Locks a mutex, ignoring poisoning: every critical section in this crate leaves its
/// data consistent even if it unwinds.
#[inline]
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> impl core::ops::DerefMut<Target = T> + '_ {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A notify counter that sleepers wait on.
///
/// A sleeper reads [`Futex::seq`] *before* it re-checks the state word, then calls
/// [`Futex::wait`] with that value. A waker changes the state word first, then calls
/// [`Futex::wake_all`], which bumps the counter before it wakes. So either the sleeper's
/// re-check sees the new state, or the bump lands after its read and the wait returns
/// at once: no wake-up is lost.
pub(crate) struct Futex {
    seq: AtomicU32,
    #[cfg(all(test, loom))]
    stand_in: loom_futex::StandIn,
}

impl Futex {
    pub(crate) fn new() -> Futex {
        Futex {
            seq: AtomicU32::new(0),
            #[cfg(all(test, loom))]
            stand_in: loom_futex::StandIn::new(),
        }
    }

    /// Reads the counter before the caller re-checks the state.
    #[inline]
    pub(crate) fn seq(&self) -> u32 {
        // Acquire: pairs with the Release bump in `wake_all`; a sleeper that sees the
        // bump also sees the state change made before it, so it does not sleep on it.
        self.seq.load(Acquire)
    }

    /// Sleeps while the counter still reads `seq`. May return spuriously.
    #[cfg(not(all(test, loom)))]
    #[inline]
    pub(crate) fn wait(&self, seq: u32) {
        atomic_wait::wait(&self.seq, seq);
    }

    /// Bumps the counter, then wakes every sleeper.
    #[cfg(not(all(test, loom)))]
    #[cold]
    pub(crate) fn wake_all(&self) {
        // Release: pairs with the Acquire in `seq`; publishes the state change that
        // the caller made before waking.
        self.seq.fetch_add(1, Release);
        atomic_wait::wake_all(&self.seq);
    }

    #[cfg(all(test, loom))]
    pub(crate) fn wait(&self, seq: u32) {
        self.stand_in.wait(&self.seq, seq);
    }

    #[cfg(all(test, loom))]
    pub(crate) fn wake_all(&self) {
        // Release: as in the std version.
        self.seq.fetch_add(1, Release);
        self.stand_in.wake_all();
    }
}

/// Under loom a futex is a mutex and a condvar that really block, so a lost wake-up
/// shows as a deadlock that loom reports. Every other wait returns spuriously on
/// purpose, since a real futex may, so callers' re-check loops run both ways.
#[cfg(all(test, loom))]
mod loom_futex {
    use super::{AtomicU32, Ordering::Relaxed};
    use loom::sync::{Condvar, Mutex};

    pub(crate) struct StandIn {
        lock: Mutex<()>,
        cond: Condvar,
        // Not a loom atomic: it only picks which waits return early, deterministically
        // within one execution, and adds no branches for loom to explore.
        waits: std::sync::atomic::AtomicU32,
    }

    impl StandIn {
        pub(crate) fn new() -> StandIn {
            StandIn {
                lock: Mutex::new(()),
                cond: Condvar::new(),
                waits: std::sync::atomic::AtomicU32::new(0),
            }
        }

        pub(crate) fn wait(&self, word: &AtomicU32, seq: u32) {
            let guard = self.lock.lock().unwrap();
            // Relaxed: the waker bumps the word before it takes this mutex, so the
            // mutex orders the bump before this load whenever it matters.
            if word.load(Relaxed) != seq {
                return;
            }
            if self.waits.fetch_add(1, Relaxed) % 2 == 1 {
                return; // a spurious wake-up
            }
            drop(self.cond.wait(guard).unwrap());
        }

        pub(crate) fn wake_all(&self) {
            let _guard = self.lock.lock().unwrap();
            self.cond.notify_all();
        }
    }
}

/// A short, bounded spin before sleeping: a visit or a lockdown that ends within a few
/// microseconds is caught without a system call. Under loom it never spins.
pub(crate) struct Spin {
    #[cfg(not(all(test, loom)))]
    backoff: crossbeam_utils::Backoff,
    #[cfg(not(all(test, loom)))]
    rounds: u32,
}

impl Spin {
    pub(crate) fn new() -> Spin {
        Spin {
            #[cfg(not(all(test, loom)))]
            backoff: crossbeam_utils::Backoff::new(),
            #[cfg(not(all(test, loom)))]
            rounds: 0,
        }
    }

    /// Spins a little longer each time; `false` once the budget is spent.
    #[cfg(not(all(test, loom)))]
    #[inline]
    pub(crate) fn spin(&mut self) -> bool {
        // `Backoff::spin` doubles its busy-wait up to 64 pause instructions, so seven
        // rounds (127 pauses) bound the spin at a few microseconds; it never yields.
        const ROUNDS: u32 = 7;
        if self.rounds == ROUNDS {
            return false;
        }
        self.rounds += 1;
        self.backoff.spin();
        true
    }

    #[cfg(all(test, loom))]
    #[inline]
    pub(crate) fn spin(&mut self) -> bool {
        false
    }
}
