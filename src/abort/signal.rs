//! The firing part of an abort token: a flag set once, the notifiers of the waits that
//! must be woken when it is, and the signals of the token's children, which fire with
//! it. The token (`mod.rs`), the shared timer (`timer.rs`) and a `from_future` source
//! (`source.rs`) all fire a signal the same way.
//!
//! A child's signal is linked into its parent's, so firing a token fires its whole
//! subtree: iteratively, with an explicit list, however deep the tree. Every link is a
//! [`Slab`] entry, so a wait or a child that goes away removes exactly its own entry in
//! O(1).

use crate::notify::Notifier;
use crate::slab::Slab;
use crate::sync::{lock, Arc, AtomicBool, Mutex, Ordering::Acquire, Ordering::Release};
use crate::user::{drop_isolated, wake_each};
use core::task::Waker;

pub(crate) struct Signal {
    /// Set once by `fire`, never cleared.
    fired: AtomicBool,
    links: Mutex<Links>,
}

#[derive(Default)]
struct Links {
    /// Set by `fire` once it has taken the links: nothing is linked after that.
    closed: bool,
    /// The waits that may be waiting on this signal right now.
    waits: Slab<Wakeup>,
    /// The signals of the children, which fire when this one does.
    children: Slab<Arc<Signal>>,
}

/// What firing wakes for one wait.
enum Wakeup {
    /// A fortress wait: threads and tasks sleeping on a notifier.
    Notifier(Arc<Notifier>),
    /// An `Abort::aborted` future's task.
    Task(Waker),
}

/// A link that could be made, under its key; `None` if the signal had already fired.
pub(crate) type Link = Option<usize>;

impl Signal {
    pub(crate) fn new(fired: bool) -> Signal {
        Signal {
            fired: AtomicBool::new(fired),
            links: Mutex::new(Links::default()),
        }
    }

    #[inline]
    pub(crate) fn has_fired(&self) -> bool {
        // Acquire: pairs with the Release in `fire`.
        self.fired.load(Acquire)
    }

    /// Fires this signal and every signal linked below it (once; later calls do
    /// nothing), then wakes every registered wait. The wake-ups run after every lock is
    /// released, each isolated (see `user.rs`).
    pub(crate) fn fire(&self) {
        let mut wake = Vec::new();
        let mut below = Vec::new();
        self.close(&mut wake, &mut below);
        while let Some(child) = below.pop() {
            child.close(&mut wake, &mut below);
        }
        let mut tasks = Vec::new();
        for wakeup in wake {
            match wakeup {
                Wakeup::Notifier(notifier) => notifier.wake_all(),
                Wakeup::Task(waker) => tasks.push(waker),
            }
        }
        wake_each(tasks);
    }

    /// Sets the flag and takes the links: the notifiers into `wake`, the children into
    /// `below`. Nothing if it had fired already.
    fn close(&self, wake: &mut Vec<Wakeup>, below: &mut Vec<Arc<Signal>>) {
        // Release: pairs with the Acquire in `has_fired`.
        if self.fired.swap(true, Release) {
            return;
        }
        // A wait or child that links after this lock sees `closed` (the mutex orders
        // it) and so the flag; one that linked before is taken here.
        let mut links = lock(&self.links);
        links.closed = true;
        wake.extend(links.waits.drain());
        below.extend(links.children.drain());
    }

    /// A wait may sleep on `notifier` from now on; call before it re-checks the flag.
    pub(crate) fn register(&self, notifier: &Arc<Notifier>) -> Link {
        let mut links = lock(&self.links);
        (!links.closed).then(|| links.waits.insert(Wakeup::Notifier(Arc::clone(notifier))))
    }

    /// A task waits for this signal (`Abort::aborted`): stores its waker under `key`
    /// (a new key if `None`), before the task re-checks the flag. The waker is cloned
    /// before the lock and the one it replaces dropped after it. `false` if the signal
    /// has fired (nothing is stored then).
    pub(crate) fn register_task(&self, key: &mut Link, waker: &Waker) -> bool {
        let waker = waker.clone();
        let mut links = lock(&self.links);
        if links.closed {
            return false;
        }
        let replaced = match key.and_then(|k| links.waits.get_mut(k)) {
            Some(slot) => Some(core::mem::replace(slot, Wakeup::Task(waker))),
            None => {
                *key = Some(links.waits.insert(Wakeup::Task(waker)));
                None
            }
        };
        drop(links);
        drop_isolated(replaced);
        true
    }

    /// The wait registered under `key` has ended.
    pub(crate) fn unregister(&self, key: usize) {
        let removed = lock(&self.links).waits.remove(key);
        drop_isolated(removed); // a task's waker is user code
    }

    /// Links `child` below this signal, so it fires when this one does. `None` if this
    /// one has fired: the caller fires the child itself.
    pub(crate) fn adopt(&self, child: &Arc<Signal>) -> Link {
        let mut links = lock(&self.links);
        (!links.closed).then(|| links.children.insert(Arc::clone(child)))
    }

    /// Unlinks the child under `key` (it is being dropped).
    pub(crate) fn disown(&self, key: usize) {
        let removed = lock(&self.links).children.remove(key);
        drop(removed);
    }

    /// Waits and children linked right now: for the leak checks.
    #[cfg_attr(not(any(test, feature = "internals")), allow(dead_code))]
    pub(crate) fn links(&self) -> (usize, usize) {
        let links = lock(&self.links);
        (links.waits.len(), links.children.len())
    }
}
