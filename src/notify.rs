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

use crate::slab::Slab;
use crate::sync::{
    fence, lock, AtomicU32, Mutex,
    Ordering::{Acquire, Relaxed, Release, SeqCst},
};
#[cfg(feature = "async")]
use crate::user::drop_isolated;
use crate::user::wake_each;
use core::task::Waker;

/// Threads and tasks waiting for one condition of one fortress.
pub(crate) struct Notifier {
    /// The futex word of sleeping threads: bumped by every wake-up.
    seq: AtomicU32,
    /// How many threads are in the sleeping loop (`enlist` to `discharge`): the last
    /// one out clears the group's thread flag, so no flag outlives its waiters.
    threads: AtomicU32,
    /// The wakers of pending tasks.
    tasks: Mutex<Slab<TaskSlot>>,
    #[cfg(all(test, any(loom, shuttle)))]
    stand_in: model_futex::StandIn,
}

impl Notifier {
    pub(crate) fn new() -> Notifier {
        Notifier {
            seq: AtomicU32::new(0),
            threads: AtomicU32::new(0),
            tasks: Mutex::new(Slab::default()),
            #[cfg(all(test, any(loom, shuttle)))]
            stand_in: model_futex::StandIn::new(),
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
    #[cfg(not(all(test, any(loom, shuttle))))]
    #[inline]
    pub(crate) fn sleep(&self, seq: u32) {
        atomic_wait::wait(&self.seq, seq);
    }

    #[cfg(all(test, any(loom, shuttle)))]
    pub(crate) fn sleep(&self, seq: u32) {
        self.stand_in.wait(&self.seq, seq);
    }

    /// A thread enters the sleeping loop; call before its first look at the state word.
    #[cold]
    pub(crate) fn enlist(&self) {
        self.threads.fetch_add(1, Relaxed);
        // SeqCst fence: pairs with the fence in `discharge`. This increment and that
        // clear of the flag form a store-buffering pair: either the last thread out
        // sees this thread counted (and wakes it to look again), or this thread's look
        // sees the flag cleared (and sets it again itself). Never both missed.
        fence(SeqCst);
    }

    /// A thread leaves the sleeping loop, in any way. If it was the last, it calls
    /// `clear` (which clears the group's thread flag in the state word and says
    /// whether it was set), then wakes any thread that enlisted meanwhile: that thread
    /// may have seen the flag still set and gone to sleep counting on it.
    #[cold]
    pub(crate) fn discharge(&self, clear: impl FnOnce() -> bool) {
        if self.threads.fetch_sub(1, Relaxed) != 1 || !clear() {
            return;
        }
        // SeqCst fence: pairs with the fence in `enlist` (see there).
        fence(SeqCst);
        if self.threads.load(Relaxed) != 0 {
            self.wake_threads();
        }
    }

    /// Bumps the counter, then wakes every sleeping thread.
    #[cold]
    pub(crate) fn wake_threads(&self) {
        // Release: pairs with the Acquire in `seq`; publishes the state change that
        // the caller made before waking.
        self.seq.fetch_add(1, Release);
        #[cfg(not(all(test, any(loom, shuttle))))]
        atomic_wait::wake_all(&self.seq);
        #[cfg(all(test, any(loom, shuttle)))]
        self.stand_in.wake_all();
    }

    #[cfg(feature = "async")]
    /// Stores a pending task's waker (or refreshes it) under `key`, before the task
    /// re-checks the state. The waker is cloned before the lock is taken and the one it
    /// replaces is dropped after the lock is released: no user code under our lock.
    pub(crate) fn register_task(&self, key: &mut Option<usize>, waker: &Waker) {
        let waker = waker.clone();
        let mut tasks = lock(&self.tasks);
        let replaced = match *key {
            Some(k) => tasks
                .get_mut(k)
                .map(|slot| core::mem::replace(slot, TaskSlot::Pending(waker))),
            None => {
                *key = Some(tasks.insert(TaskSlot::Pending(waker)));
                None
            }
        };
        drop(tasks);
        if let Some(TaskSlot::Pending(old)) = replaced {
            drop_isolated(old);
        }
    }

    #[cfg(feature = "async")]
    /// Forgets a task's waker: the task stopped waiting (it finished or was dropped).
    /// Removes exactly the entry under `key`; if no task is left, calls `last` under the
    /// lock (it clears the group's task flag: crate code, no user code).
    pub(crate) fn unregister_task(&self, key: usize, last: impl FnOnce()) {
        let mut tasks = lock(&self.tasks);
        let removed = tasks.remove(key);
        if tasks.len() == 0 {
            last();
        }
        drop(tasks);
        debug_assert!(removed.is_some(), "a task unregistered twice");
        if let Some(TaskSlot::Pending(waker)) = removed {
            drop_isolated(waker);
        }
    }

    /// How many tasks have a waker stored (pending or woken), and how many keys the
    /// task set has ever needed at once: for the leak checks.
    #[cfg_attr(not(any(test, feature = "internals")), allow(dead_code))]
    pub(crate) fn task_slots(&self) -> (usize, usize) {
        let tasks = lock(&self.tasks);
        (tasks.len(), tasks.capacity())
    }

    /// Wakes every pending task. The wakers are taken out under the lock and run after
    /// it is released, each isolated from the others. The first one is kept apart from
    /// the rest, so that waking a single task allocates nothing (an allocation here
    /// was a third of the time from `unlock` to the waker's call).
    #[cold]
    pub(crate) fn wake_tasks(&self) {
        let (mut first, mut rest) = (None, Vec::new());
        for slot in lock(&self.tasks).iter_mut() {
            if let TaskSlot::Pending(waker) = core::mem::replace(slot, TaskSlot::Woken) {
                match first {
                    None => first = Some(waker),
                    Some(_) => rest.push(waker),
                }
            }
        }
        wake_each(first.into_iter().chain(rest));
    }

    /// Wakes every waiter of either kind: an abort token fired.
    #[cold]
    pub(crate) fn wake_all(&self) {
        self.wake_threads();
        self.wake_tasks();
    }
}

/// An entry of the task set, under a key that the task's future keeps, so a dropped
/// future removes exactly its own entry.
enum TaskSlot {
    /// A task waiting to be woken.
    Pending(Waker),
    /// A task that was woken and has not polled again yet.
    Woken,
}

/// In a model build a futex is a mutex and a condvar that really block, so a lost
/// wake-up shows as a deadlock that the checker reports. Some waits return spuriously
/// on purpose, since a real futex may, so callers' re-check loops run both ways: under
/// loom every other wait, under shuttle a random third of them (drawn from shuttle's
/// random source, so a failing schedule replays with the same choices).
#[cfg(all(test, any(loom, shuttle)))]
mod model_futex {
    use crate::sync::{AtomicU32, Ordering::Relaxed};
    #[cfg(loom)]
    use loom::sync::{Condvar, Mutex};
    #[cfg(not(loom))]
    use shuttle::sync::{Condvar, Mutex};

    pub(crate) struct StandIn {
        lock: Mutex<()>,
        cond: Condvar,
        // Not a loom atomic: it only picks which waits return early, deterministically
        // within one execution, and adds no branches for loom to explore.
        #[cfg(loom)]
        waits: std::sync::atomic::AtomicU32,
    }

    impl StandIn {
        pub(crate) fn new() -> StandIn {
            StandIn {
                lock: Mutex::new(()),
                cond: Condvar::new(),
                #[cfg(loom)]
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
            if self.spurious() {
                return; // a spurious wake-up
            }
            drop(self.cond.wait(guard).unwrap());
        }

        pub(crate) fn wake_all(&self) {
            let _guard = self.lock.lock().unwrap();
            self.cond.notify_all();
        }

        #[cfg(loom)]
        fn spurious(&self) -> bool {
            self.waits.fetch_add(1, Relaxed) % 2 == 1
        }

        #[cfg(not(loom))]
        fn spurious(&self) -> bool {
            use shuttle::rand::RngCore;
            shuttle::rand::thread_rng().next_u32() % 3 == 0
        }
    }
}
