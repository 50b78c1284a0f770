//! The abort token: a shared flag that cuts waits short, on any number of fortresses.
//!
//! A token is a chain: its own [`Signal`], an optional deadline, and an optional
//! parent token. It has fired when any signal in the chain has fired or any deadline
//! in it has passed. Firing a token fires only its own signal, so a child never fires
//! its parent.
//!
//! A wait registers with every token of the chain only on the slow path, just before
//! it may sleep: the registration is the notifier it waits on, and a token with a
//! deadline then enters the shared timer (`deadline.rs`). Whatever fires a signal
//! (`abort`, the timer, a `from_future` driver) wakes the registered notifiers; the
//! woken waiter sees the token fired and returns
//! [`Error::Aborted`](crate::Error::Aborted). A token knows nothing of fortresses: it
//! holds only what it wakes.

use crate::abort_future::Driver;
use crate::deadline::{self, Key};
use crate::notify::Notifier;
use crate::signal::Signal;
use crate::sync::{lock, now, Arc, Instant, Mutex};
use core::fmt;
use core::future::Future;
use std::time::Duration;

/// A token that aborts blocking fortress operations: the Rust form of Go's
/// `Abort <-chan struct{}`, with deadlines and children as Go's `context` has them.
///
/// Clones share one token. Firing it with [`Abort::abort`] wakes, promptly, every
/// `visit`, `enter`, `lockdown` and `occupy` that is waiting with it (threads and async
/// tasks), on every fortress, and makes them return
/// [`Error::Aborted`](crate::Error::Aborted). It only cuts *waits* short: a call that
/// can finish without waiting finishes, even if the token has fired.
///
/// A token can also fire by itself at a deadline ([`Abort::after`], [`Abort::at`],
/// [`Abort::with_deadline`]), when a parent fires ([`Abort::child`]), or when a future
/// completes ([`Abort::from_future`]).
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
    /// What `abort` fires.
    signal: Arc<Signal>,
    /// Fires the token when it passes (through the timer, once a wait registers).
    deadline: Option<Instant>,
    /// The token's entry in the shared timer, once a wait has put it there.
    timer: Mutex<Option<Key>>,
    /// A token whose firing fires this one too.
    parent: Option<Arc<Token>>,
    /// The future of [`Abort::from_future`], dropped with the token.
    driver: Option<std::sync::Arc<Driver>>,
}

impl Token {
    fn new(deadline: Option<Instant>, parent: Option<Arc<Token>>) -> Token {
        let passed = deadline.is_some_and(|d| d <= now());
        Token {
            signal: Arc::new(Signal::new(passed)),
            deadline,
            timer: Mutex::new(None),
            parent,
            driver: None,
        }
    }

    /// This token and its ancestors.
    fn chain(&self) -> impl Iterator<Item = &Token> {
        core::iter::successors(Some(self), |token| token.parent.as_deref())
    }

    /// Whether this token itself (not its parent) has fired.
    fn has_fired(&self) -> bool {
        self.signal.has_fired() || self.deadline.is_some_and(|d| d <= now())
    }

    /// A wait depends on this token from now on: make sure the deadline will fire.
    fn arm(&self) {
        if let Some(deadline) = self.deadline {
            let mut timer = lock(&self.timer);
            if timer.is_none() {
                *timer = Some(deadline::arm(deadline, &self.signal));
            }
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if let Some(key) = lock(&self.timer).take() {
            deadline::disarm(key);
        }
        if let Some(driver) = &self.driver {
            driver.cancel();
        }
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
        Abort::from_token(Token::new(None, None))
    }

    fn from_token(token: Token) -> Abort {
        Abort {
            inner: Some(Arc::new(token)),
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

    /// A token that fires by itself once `timeout` has passed (and can be fired
    /// earlier with [`Abort::abort`]). `Abort::after(Duration::ZERO)` is born fired.
    ///
    /// ```
    /// use fortress_gate::{Abort, Error, Fortress};
    /// use std::time::Duration;
    ///
    /// let fortress = Fortress::new(); // locked: a visit would wait
    /// let give_up = Abort::after(Duration::from_millis(20));
    /// assert_eq!(fortress.guest().visit(|| (), &give_up), Err(Error::Aborted));
    /// ```
    pub fn after(timeout: Duration) -> Abort {
        Abort::at(now() + timeout)
    }

    /// A token that fires by itself at `deadline` (born fired if it has passed).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let abort = fortress_gate::Abort::at(Instant::now() + Duration::from_secs(3600));
    /// assert!(!abort.is_aborted());
    /// assert!(abort.deadline().is_some());
    /// ```
    pub fn at(deadline: Instant) -> Abort {
        Abort::from_token(Token::new(Some(deadline), None))
    }

    /// A child token: it fires when this token fires, or when it is fired itself.
    /// Firing a child never fires its parent. A child of [`Abort::never`] is a plain
    /// new token.
    ///
    /// ```
    /// let parent = fortress_gate::Abort::new();
    /// let child = parent.child();
    /// child.abort();
    /// assert!(child.is_aborted() && !parent.is_aborted());
    /// let child = parent.child();
    /// parent.abort();
    /// assert!(child.is_aborted());
    /// ```
    pub fn child(&self) -> Abort {
        Abort::from_token(Token::new(None, self.inner.clone()))
    }

    /// A child (see [`Abort::child`]) that also fires at `deadline`.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let soon = Instant::now() + Duration::from_secs(1);
    /// let parent = fortress_gate::Abort::after(Duration::from_secs(3600));
    /// let child = parent.with_deadline(soon);
    /// assert_eq!(child.deadline(), Some(soon), "the earliest deadline applies");
    /// ```
    pub fn with_deadline(&self, deadline: Instant) -> Abort {
        Abort::from_token(Token::new(Some(deadline), self.inner.clone()))
    }

    /// The earliest deadline that applies to this token (its own or an ancestor's).
    pub fn deadline(&self) -> Option<Instant> {
        self.chain().filter_map(|token| token.deadline).min()
    }

    /// A token that fires when `fut` completes (or when fired with [`Abort::abort`]).
    ///
    /// No runtime is needed: `fut` is polled once now, and then again by whichever
    /// thread wakes it (so it should be a cheap "has it happened" future, such as
    /// `tokio_util::sync::CancellationToken::cancelled_owned()` or a channel's
    /// receiver). It is dropped when it completes or when the last clone of the token
    /// is dropped. It must not own a clone of the token it feeds (that cycle would
    /// never be dropped).
    ///
    /// ```
    /// use fortress_gate::Abort;
    /// use std::future::Future;
    /// use std::pin::Pin;
    /// use std::sync::{Arc, Mutex};
    /// use std::task::{Context, Poll, Waker};
    ///
    /// /// A one-shot: ready once `fire` has been called.
    /// #[derive(Clone, Default)]
    /// struct Shot(Arc<Mutex<(bool, Option<Waker>)>>);
    /// impl Shot {
    ///     fn fire(&self) {
    ///         let waker = { let mut s = self.0.lock().unwrap(); s.0 = true; s.1.take() };
    ///         waker.map(Waker::wake);
    ///     }
    /// }
    /// impl Future for Shot {
    ///     type Output = ();
    ///     fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
    ///         let mut s = self.0.lock().unwrap();
    ///         if s.0 { return Poll::Ready(()) }
    ///         s.1 = Some(cx.waker().clone());
    ///         Poll::Pending
    ///     }
    /// }
    ///
    /// let shot = Shot::default();
    /// let abort = Abort::from_future(shot.clone());
    /// assert!(!abort.is_aborted());
    /// shot.fire();
    /// assert!(abort.is_aborted());
    /// ```
    pub fn from_future(fut: impl Future<Output = ()> + Send + 'static) -> Abort {
        let mut token = Token::new(None, None);
        let driver = Driver::new(Box::pin(fut), Arc::clone(&token.signal));
        token.driver = Some(std::sync::Arc::clone(&driver));
        let abort = Abort::from_token(token);
        driver.drive();
        abort
    }

    /// Fires the token (once; later calls do nothing) and wakes every wait that uses
    /// it, and every wait that uses one of its children.
    ///
    /// ```
    /// let abort = fortress_gate::Abort::new();
    /// let clone = abort.clone();
    /// clone.abort();
    /// assert!(abort.is_aborted());
    /// ```
    pub fn abort(&self) {
        if let Some(token) = &self.inner {
            token.signal.fire();
        }
    }

    /// Whether the token has fired: by [`Abort::abort`], through a parent, at its
    /// deadline or when its future completed.
    #[inline]
    pub fn is_aborted(&self) -> bool {
        self.chain().any(Token::has_fired)
    }

    fn chain(&self) -> impl Iterator<Item = &Token> {
        self.inner.as_deref().into_iter().flat_map(Token::chain)
    }

    /// Registers a wait on `notifier` with every token of the chain until the returned
    /// value is dropped. Call it before the wait's first re-check of the token.
    pub(crate) fn register<'a>(&'a self, notifier: &Arc<Notifier>) -> Registration<'a> {
        Registration(self.inner.as_deref().map(|token| {
            for link in token.chain() {
                link.signal.register(notifier);
                link.arm();
            }
            (token, Arc::clone(notifier))
        }))
    }

    /// Waits registered with this token right now: for the models' leak checks.
    #[cfg(all(test, loom))]
    pub(crate) fn registrations(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |token| token.signal.registrations())
    }
}

impl Default for Abort {
    /// A new token, as [`Abort::new`].
    fn default() -> Abort {
        Abort::new()
    }
}

/// Removes a wait's registration when the wait ends, on every path (a dropped future
/// included). `None` for [`Abort::never`].
pub(crate) struct Registration<'a>(Option<(&'a Token, Arc<Notifier>)>);

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Some((token, notifier)) = &self.0 {
            for link in token.chain() {
                link.signal.unregister(notifier);
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
                .field("deadline", &self.deadline())
                .finish(),
        }
    }
}
