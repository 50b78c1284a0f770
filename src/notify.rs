//! The notifier: where waiters of one group (see `state.rs`) wait, threads and tasks
//! alike, and what abort tokens wake when they fire.
//!
//! * Threads sleep futex-style on a 32-bit notify counter (`atomic-wait` waits only on
//!   `AtomicU32` words). A thread reads [`Notifier::seq`] *before* it re-checks the
//!   state word, then calls [`Notifier::sleep`] with that value. A waker changes the
//!   state word first, then bumps the counter before it wakes. So either the thread's
//!   re-check sees the new state, or the bump lands after its read and the futex wait
//!   returns at once: no wake-up is lost. This module holds every `atomic_wait` call.
//! * Tasks keep their waker in a small set behind a mutex. A task stores its waker
//!   *before* it re-checks the state word; a waker changes the state word first, then
//!   takes the wakers out of the set. So either the re-check sees the new state, or the
//!   waker finds the task's waker in the set.
//!
//! Which of the two a wake-up touches is decided by the waiter flags in the state word:
//! a wake-up with no thread flagged makes no system call, one with no task flagged
//! takes no lock.

// Without the `async` feature no task ever waits, so the task set is never filled.
#![cfg_attr(not(feature = "async"), allow(dead_code))]

use crate::sync::{lock, AtomicU32, Mutex, Ordering::Acquire, Ordering::Release};
use core::task::Waker;

/// Threads and tasks waiting for one condition of one fortress.
pub(crate) struct Notifier {
    /// The futex word of sleeping threads: bumped by every wake-up.
    seq: AtomicU32,
    /// The wakers of pending tasks.
    tasks: Mutex<Tasks>,
    #[cfg(all(test, loom))]
    stand_in: loom_futex::StandIn,
}

impl Notifier {
    pub(crate) fn new() -> Notifier {
        Notifier {
            seq: AtomicU32::new(0),
            tasks: Mutex::new(Tasks::default()),
            #[cfg(all(test, loom))]
            stand_in: loom_futex::StandIn::new(),
        }
    }

    /// Reads the counter before the caller re-checks the state.
    #[inline]
    pub(crate) fn seq(&self) -> u32 {
        // Acquire: pairs with the Release bump in `wake_threads`; a thread that sees
        // the bump also sees the state change made before it, so it does not sleep on
        // it.
        self.seq.load(Acquire)
    }

    /// Sleeps while the counter still reads `seq`. May return spuriously.
    #[cfg(not(all(test, loom)))]
    #[inline]
    pub(crate) fn sleep(&self, seq: u32) {
        atomic_wait::wait(&self.seq, seq);
    }

    #[cfg(all(test, loom))]
    pub(crate) fn sleep(&self, seq: u32) {
        self.stand_in.wait(&self.seq, seq);
    }

    /// Bumps the counter, then wakes every sleeping thread.
    #[cold]
    pub(crate) fn wake_threads(&self) {
        // Release: pairs with the Acquire in `seq`; publishes the state change that
        // the caller made before waking.
        self.seq.fetch_add(1, Release);
        #[cfg(not(all(test, loom)))]
        atomic_wait::wake_all(&self.seq);
        #[cfg(all(test, loom))]
        self.stand_in.wake_all();
    }

    #[cfg(feature = "async")]
    /// Stores a pending task's waker (or refreshes it) under `key`, before the task
    /// re-checks the state.
    pub(crate) fn register_task(&self, key: &mut Option<usize>, waker: &Waker) {
        lock(&self.tasks).register(key, waker);
    }

    #[cfg(feature = "async")]
    /// Forgets a task's waker: the task stopped waiting (it finished or was dropped).
    pub(crate) fn unregister_task(&self, key: usize) {
        lock(&self.tasks).remove(key);
    }

    /// How many tasks have a waker stored (pending or woken): for the models' leak
    /// checks.
    #[cfg(all(test, loom))]
    pub(crate) fn registered_tasks(&self) -> usize {
        lock(&self.tasks)
            .slots
            .iter()
            .filter(|slot| !matches!(slot, Slot::Free))
            .count()
    }

    /// Wakes every pending task. The wakers run after the lock is released.
    #[cold]
    pub(crate) fn wake_tasks(&self) {
        let wakers = lock(&self.tasks).take_all();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Wakes every waiter of either kind: an abort token fired.
    #[cold]
    pub(crate) fn wake_all(&self) {
        self.wake_threads();
        self.wake_tasks();
    }
}

/// The wakers of pending tasks, each under a key that the task's future keeps, so a
/// dropped future removes exactly its own entry.
#[derive(Default)]
struct Tasks {
    slots: Vec<Slot>,
    /// Keys of `Slot::Free` entries, for reuse.
    free: Vec<usize>,
}

enum Slot {
    Free,
    /// A task waiting to be woken.
    Pending(Waker),
    /// A task that was woken and has not polled again yet.
    Woken,
}

impl Tasks {
    #[cfg(feature = "async")]
    fn register(&mut self, key: &mut Option<usize>, waker: &Waker) {
        match *key {
            Some(k) => match &mut self.slots[k] {
                Slot::Pending(old) if old.will_wake(waker) => {}
                slot => *slot = Slot::Pending(waker.clone()),
            },
            None => {
                let slot = Slot::Pending(waker.clone());
                *key = Some(match self.free.pop() {
                    Some(k) => {
                        self.slots[k] = slot;
                        k
                    }
                    None => {
                        self.slots.push(slot);
                        self.slots.len() - 1
                    }
                });
            }
        }
    }

    #[cfg(feature = "async")]
    fn remove(&mut self, key: usize) {
        debug_assert!(!matches!(self.slots[key], Slot::Free), "removed twice");
        self.slots[key] = Slot::Free;
        self.free.push(key);
    }

    fn take_all(&mut self) -> Vec<Waker> {
        let mut wakers = Vec::new();
        for slot in &mut self.slots {
            if let Slot::Pending(_) = slot {
                if let Slot::Pending(waker) = core::mem::replace(slot, Slot::Woken) {
                    wakers.push(waker);
                }
            }
        }
        wakers
    }
}

/// Under loom a futex is a mutex and a condvar that really block, so a lost wake-up
/// shows as a deadlock that loom reports. Every other wait returns spuriously on
/// purpose, since a real futex may, so callers' re-check loops run both ways.
#[cfg(all(test, loom))]
mod loom_futex {
    use crate::sync::{AtomicU32, Ordering::Relaxed};
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
