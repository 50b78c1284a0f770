//! The abort token: a shared flag that cuts waits short, on any number of fortresses.
//!
//! A wait registers with its token only on the slow path, just before it may sleep:
//! the registration names the fortress and the futex it sleeps on. Firing the token
//! sets the flag, then bumps and wakes every registered futex; the woken sleeper sees
//! the flag and returns [`Error::Aborted`](crate::Error::Aborted).

use crate::gate::Gate;
use crate::state::Waiters;
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
    /// The waits that may be asleep with this token right now.
    sleepers: Mutex<Vec<Sleeper>>,
}

/// One registered wait: which fortress, which of its futexes.
struct Sleeper {
    gate: Arc<Gate>,
    waiters: Waiters,
}

impl Sleeper {
    /// Registrations for the same futex are interchangeable: firing does the same for
    /// each, so a wait that ends may remove any one of them.
    fn is(&self, gate: &Arc<Gate>, waiters: Waiters) -> bool {
        Arc::ptr_eq(&self.gate, gate) && self.waiters == waiters
    }
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
                sleepers: Mutex::new(Vec::new()),
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
        for sleeper in lock(&token.sleepers).iter() {
            sleeper.gate.futex(sleeper.waiters).wake_all();
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

    /// Registers a wait that may sleep on `gate`'s `waiters` futex until the returned
    /// value is dropped. Call it before the wait's first re-check of the token.
    pub(crate) fn register<'a>(
        &'a self,
        gate: &'a Arc<Gate>,
        waiters: Waiters,
    ) -> Registration<'a> {
        if let Some(token) = &self.inner {
            lock(&token.sleepers).push(Sleeper {
                gate: Arc::clone(gate),
                waiters,
            });
        }
        Registration {
            token: self.inner.as_deref(),
            gate,
            waiters,
        }
    }
}

impl Default for Abort {
    /// A new token, as [`Abort::new`].
    fn default() -> Abort {
        Abort::new()
    }
}

/// Removes a wait's registration when the wait ends, on every path.
pub(crate) struct Registration<'a> {
    token: Option<&'a Token>,
    gate: &'a Arc<Gate>,
    waiters: Waiters,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.token {
            let mut sleepers = lock(&token.sleepers);
            if let Some(at) = sleepers.iter().position(|s| s.is(self.gate, self.waiters)) {
                sleepers.swap_remove(at);
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
