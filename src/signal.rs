//! The firing part of an abort token: a flag set once, and the notifiers of the waits
//! that must be woken when it is. The token (`abort.rs`), the shared timer
//! (`deadline.rs`) and a `from_future` driver all fire a signal the same way.

use crate::notify::Notifier;
use crate::sync::{lock, Arc, AtomicBool, Mutex, Ordering::Acquire, Ordering::Release};

pub(crate) struct Signal {
    /// Set once by `fire`, never cleared.
    fired: AtomicBool,
    /// The notifiers of the waits that may be waiting on this signal right now, once
    /// per wait. Registrations of one notifier are interchangeable: firing does the
    /// same for each, so a wait that ends may remove any one of them.
    waiting: Mutex<Vec<Arc<Notifier>>>,
}

impl Signal {
    pub(crate) fn new(fired: bool) -> Signal {
        Signal {
            fired: AtomicBool::new(fired),
            waiting: Mutex::new(Vec::new()),
        }
    }

    #[inline]
    pub(crate) fn has_fired(&self) -> bool {
        // Acquire: pairs with the Release in `fire`.
        self.fired.load(Acquire)
    }

    /// Sets the flag (once; later calls do nothing) and wakes every registered wait.
    pub(crate) fn fire(&self) {
        // Release: pairs with the Acquire in `has_fired`.
        if self.fired.swap(true, Release) {
            return;
        }
        // A wait that registers after this lock sees `fired` (the mutex orders it);
        // one that registered before is woken here. The wake-ups run after the lock is
        // released: a task's waker may run code that registers with this signal.
        let waiting = lock(&self.waiting).clone();
        for notifier in waiting {
            notifier.wake_all();
        }
    }

    /// A wait may sleep on `notifier` from now on; call before it re-checks the flag.
    pub(crate) fn register(&self, notifier: &Arc<Notifier>) {
        lock(&self.waiting).push(Arc::clone(notifier));
    }

    /// The wait registered with `notifier` has ended.
    pub(crate) fn unregister(&self, notifier: &Arc<Notifier>) {
        let mut waiting = lock(&self.waiting);
        if let Some(at) = waiting.iter().position(|n| Arc::ptr_eq(n, notifier)) {
            waiting.swap_remove(at);
        }
    }

    /// Waits registered right now: for the models' leak checks.
    #[cfg(all(test, loom))]
    pub(crate) fn registrations(&self) -> usize {
        lock(&self.waiting).len()
    }
}
