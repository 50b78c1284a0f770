//! The abort token: a shared flag that cuts waits short, on any number of fortresses.
//!
//! A wait registers with its token only on the slow path, just before it may sleep:
//! the registration is the notifier it waits on. Firing the token sets the flag, then
//! wakes every registered notifier (threads and tasks); the woken waiter sees the flag
//! and returns [`Error::Aborted`](crate::Error::Aborted). A token knows nothing of
//! fortresses: it holds only what it wakes.

use crate::notify::Notifier;
use crate::sync::{lock, Arc, AtomicBool, Mutex, Ordering::Acquire, Ordering::Release};
use core::fmt;

/// A token that aborts blocking fortress operations: the Rust form of Go's
/// `Abort <-chan struct{}`.
///
/// Clones share one token. Firing it with [`Abort::abort`] wakes, promptly, every
/// `visit`, `enter`, `lockdown` and `occupy` that is waiting with it, on every
/// fortress, and makes them return [`Error::Aborted`](crate::Error::Aborted). It only
/// cuts *waits* short: a call that can finish without waiting finishes, even if the
/// token has fired.
///
/// ```
/// use fortress_gate::{Abort, Error, Fortress};
///
/// let fortress = Fortress::new(); // locked
/// let abort = Abort::new();
/// abort.abort();
/// let visit = fortress.guest().visit(|| "never runs", &abort);
/// assert_eq!(visit, Err(Error::Aborted));
/// ```
#[derive(Clone)]
pub struct Abort {
    /// `None` for [`Abort::never`]: nothing to allocate, nothing to fire.
    inner: Option<Arc<Token>>,
}

struct Token {
    /// Set once by `abort`, never cleared.
    fired: AtomicBool,
    /// The notifiers of the waits that may be waiting with this token right now, once
    /// per wait. Registrations of one notifier are interchangeable: firing does the
    /// same for each, so a wait that ends may remove any one of them.
    waiting: Mutex<Vec<Arc<Notifier>>>,
}

impl Abort {
    /// A new token that has not fired.
    ///
    /// ```
    /// let abort = fortress_gate::Abort::new();
    /// assert!(!abort.is_aborted());
    /// ```
    pub fn new() -> Abort {
        Abort {
            inner: Some(Arc::new(Token {
                fired: AtomicBool::new(false),
                waiting: Mutex::new(Vec::new()),
            })),
        }
    }

    /// A token that never fires. It allocates nothing; [`Abort::abort`] on it does
    /// nothing.
    ///
    /// ```
    /// let never = fortress_gate::Abort::never();
    /// never.abort();
    /// assert!(!never.is_aborted());
    /// ```
    pub const fn never() -> Abort {
        Abort { inner: None }
    }

    /// Fires the token (once; later calls do nothing) and wakes every wait that uses it.
    ///
    /// ```
    /// let abort = fortress_gate::Abort::new();
    /// let clone = abort.clone();
    /// clone.abort();
    /// assert!(abort.is_aborted());
    /// ```
    pub fn abort(&self) {
        let Some(token) = &self.inner else { return };
        // Release: pairs with the Acquire in `is_aborted`.
        if token.fired.swap(true, Release) {
            return;
        }
        // A wait that registers after this lock sees `fired` (the mutex orders it);
        // one that registered before is woken here.
        for notifier in lock(&token.waiting).iter() {
            notifier.wake_all();
        }
    }

    /// Whether the token has fired.
    #[inline]
    pub fn is_aborted(&self) -> bool {
        // Acquire: pairs with the Release in `abort`.
        self.inner
            .as_ref()
            .is_some_and(|token| token.fired.load(Acquire))
    }

    /// Registers a wait on `notifier` until the returned value is dropped. Call it
    /// before the wait's first re-check of the token.
    pub(crate) fn register<'a>(&'a self, notifier: &Arc<Notifier>) -> Registration<'a> {
        Registration(self.inner.as_deref().map(|token| {
            lock(&token.waiting).push(Arc::clone(notifier));
            (token, Arc::clone(notifier))
        }))
    }
}

impl Abort {
    /// Waits registered with this token right now: for the models' leak checks.
    #[cfg(all(test, loom))]
    pub(crate) fn registrations(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |token| lock(&token.waiting).len())
    }
}

impl Default for Abort {
    /// A new token, as [`Abort::new`].
    fn default() -> Abort {
        Abort::new()
    }
}

/// Removes a wait's registration when the wait ends, on every path (a dropped future
/// included).
/// `None` for [`Abort::never`].
pub(crate) struct Registration<'a>(Option<(&'a Token, Arc<Notifier>)>);

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Some((token, notifier)) = &self.0 {
            let mut waiting = lock(&token.waiting);
            if let Some(at) = waiting.iter().position(|n| Arc::ptr_eq(n, notifier)) {
                waiting.swap_remove(at);
            }
        }
    }
}

impl fmt::Debug for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("Abort::never()"),
            Some(_) => f
                .debug_struct("Abort")
                .field("aborted", &self.is_aborted())
                .finish(),
        }
    }
}
