//! The abort token: a shared flag that cuts waits short, on any number of fortresses.
//!
//! A token is its own [`Signal`], an optional deadline, and an optional parent token.
//! A child's signal is linked into its parent's, so firing a token fires its whole
//! subtree at once, and a child's deadline is the earliest of its own and its
//! ancestors'. So `is_aborted` reads one flag (and the clock, if there is a deadline)
//! however long the chain: it never walks it. Firing a token fires only its own
//! subtree, so a child never fires its parent.
//!
//! A wait registers with its token's signal only on the slow path, just before it may
//! sleep: the registration is the notifier it waits on, and a token with a deadline
//! then enters the shared timer (`timer.rs`). Whatever fires a signal (`abort`, the
//! timer, a `from_future` source) wakes the registered notifiers; the woken waiter
//! sees the token fired and returns [`Error::Aborted`](crate::Error::Aborted). A token
//! knows nothing of fortresses: it holds only what it wakes.

mod signal;
pub(crate) mod source;
pub(crate) mod timer;

use crate::notify::Notifier;
use crate::sync::{lock, now, Arc, Instant, Mutex};
use core::fmt;
use core::future::Future;
use signal::{Link, Signal};
use source::Source;
use std::time::Duration;
use timer::Key;

/// A token that aborts blocking fortress operations: the Rust form of Go's
/// `Abort <-chan struct{}`, with deadlines and children as Go's `context` has them.
///
/// Clones share one token. Firing it with [`Abort::abort`] wakes, promptly, every
/// `visit`, `enter`, `lockdown`, `exclusive`, `wait_with` and `occupy` that is waiting
/// with it (threads, and async tasks in the async forms), on every fortress, and makes
/// them return [`Error::Aborted`](crate::Error::Aborted). It only cuts *waits* short: a call that
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
    inner: Option<std::sync::Arc<Token>>,
}

struct Token {
    /// What `abort` fires; linked below the parent's signal.
    signal: Arc<Signal>,
    /// The earliest deadline that applies: the token's own or an ancestor's. Fires the
    /// token when it passes (through the timer, once a wait registers).
    deadline: Option<Instant>,
    /// The token's entry in the shared timer, once a wait has put it there.
    timer: Mutex<Option<Key>>,
    /// The parent, and this token's link below the parent's signal. The parent is kept
    /// alive because what fires it (its source future, its deadline) must go on firing
    /// this token.
    parent: Option<(std::sync::Arc<Token>, Link)>,
    /// The future of [`Abort::from_future`], dropped with the token.
    source: Option<std::sync::Arc<Source>>,
}

impl Token {
    fn new(own_deadline: Option<Instant>, parent: Option<&std::sync::Arc<Token>>) -> Token {
        let deadline = match (own_deadline, parent.and_then(|p| p.deadline)) {
            (Some(own), Some(inherited)) => Some(own.min(inherited)),
            (own, inherited) => own.or(inherited),
        };
        let passed = deadline.is_some_and(|d| d <= now());
        let signal = Arc::new(Signal::new(passed));
        let parent = parent.map(|parent| {
            let link = parent.signal.adopt(&signal);
            if link.is_none() {
                signal.fire(); // the parent had fired: so has its new child
            }
            (std::sync::Arc::clone(parent), link)
        });
        Token {
            signal,
            deadline,
            timer: Mutex::new(None),
            parent,
            source: None,
        }
    }

    /// Whether this token has fired, by any source: one flag, and the clock if the
    /// token has a deadline.
    #[inline]
    fn has_fired(&self) -> bool {
        self.signal.has_fired() || self.deadline.is_some_and(|d| d <= now())
    }

    /// A wait depends on this token from now on: make sure the deadline will fire.
    fn arm(&self) {
        if let Some(deadline) = self.deadline {
            let mut timer = lock(&self.timer);
            if timer.is_none() {
                *timer = Some(timer::arm(deadline, &self.signal));
            }
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if let Some(key) = lock(&self.timer).take() {
            timer::disarm(key);
        }
        if let Some(source) = &self.source {
            source.cancel();
        }
        // Unlink from the parent, and drop the chain of parents iteratively: a token
        // that is the last owner of its parent drops it here, not by recursion, so a
        // chain of any length is dropped in constant stack.
        let mut next = self.parent.take();
        while let Some((parent, link)) = next {
            if let Some(key) = link {
                parent.signal.disown(key);
            }
            next = std::sync::Arc::into_inner(parent).and_then(|mut parent| parent.parent.take());
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
            inner: Some(std::sync::Arc::new(token)),
        }
    }

    /// [`Abort::never`] as a `'static` reference: usable inline where a future that
    /// borrows its token is stored before it is awaited (as `select!` does), which a
    /// temporary `&Abort::never()` would not outlive.
    ///
    /// ```
    /// use fortress_gate::{Abort, Fortress};
    ///
    /// let fortress = Fortress::new();
    /// let guest = fortress.guest();
    /// let entry = guest.enter_async(Abort::NEVER); // stored, awaited later
    /// # drop(entry);
    /// assert!(!Abort::NEVER.is_aborted());
    /// ```
    pub const NEVER: &'static Abort = &Abort::never();

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
        // A deadline past the end of `Instant` is no deadline.
        Abort::from_token(Token::new(now().checked_add(timeout), None))
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
        Abort::from_token(Token::new(None, self.inner.as_ref()))
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
        Abort::from_token(Token::new(Some(deadline), self.inner.as_ref()))
    }

    /// The earliest deadline that applies to this token (its own or an ancestor's).
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.as_ref().and_then(|token| token.deadline)
    }

    /// A token that fires when `fut` completes (or when fired with [`Abort::abort`]).
    ///
    /// No runtime is needed. `fut` is polled on one thread of the crate's, the *source
    /// thread* (`fortress-gate-sources`), started by the first call of `from_future`
    /// and living as long as the process; it sleeps while no source is ready, and no
    /// deadline depends on it. `fut` is never polled on the thread that calls
    /// `from_future` nor on the one that wakes it, so its waker may be called anywhere,
    /// even while holding a lock that its own poll takes. The token fires shortly
    /// (typically well under a millisecond) after `fut` completes, not necessarily
    /// before its waker's `wake` returns. A `fut` that panics counts as completed: the
    /// panic is reported by the panic hook, goes no further, and the token fires.
    ///
    /// `fut` should be a cheap "has it happened" future, such as
    /// `tokio_util::sync::CancellationToken::cancelled_owned()` or a channel's
    /// receiver: sources share the thread. It is dropped when it completes or when the
    /// last clone of the token (and of its children) is dropped. It must not own a
    /// clone of the token it feeds (that cycle would never be dropped).
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
    ///         let mut s = self.0.lock().unwrap();
    ///         s.0 = true;
    ///         // Waking under our own lock is fine: the poll runs on another thread.
    ///         if let Some(waker) = s.1.take() { waker.wake() }
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
    /// while !abort.is_aborted() {
    ///     std::thread::sleep(std::time::Duration::from_millis(1)); // fires promptly
    /// }
    /// ```
    pub fn from_future(fut: impl Future<Output = ()> + Send + 'static) -> Abort {
        let mut token = Token::new(None, None);
        token.source = Some(Source::start(Box::pin(fut), Arc::clone(&token.signal)));
        Abort::from_token(token)
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

    /// A future that completes once the token has fired, by any source: by hand,
    /// through a parent, at its deadline (a poll after the deadline completes even if
    /// the timer has not fired yet) or when its source future completed. It owns a
    /// clone of the token (`'static`), needs no runtime, and dropping it leaves nothing
    /// registered. For [`Abort::never`] it never completes.
    ///
    /// The Rust form of Go's `<-abort`: a loop over an open fortress can `select!` on
    /// it to stop.
    ///
    /// ```
    /// use fortress_gate::Abort;
    /// use std::future::Future;
    /// use std::pin::pin;
    /// use std::task::{Context, Poll, Waker};
    ///
    /// let abort = Abort::new();
    /// let mut aborted = pin!(abort.aborted());
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert!(aborted.as_mut().poll(&mut cx).is_pending());
    /// abort.abort();
    /// assert!(aborted.as_mut().poll(&mut cx).is_ready());
    /// ```
    pub fn aborted(&self) -> impl Future<Output = ()> + Send + 'static {
        Aborted {
            token: self.inner.clone(),
            key: None,
        }
    }

    /// Whether the token has fired: by [`Abort::abort`], through a parent, at its
    /// deadline or when its future completed.
    #[inline]
    pub fn is_aborted(&self) -> bool {
        self.inner.as_ref().is_some_and(|token| token.has_fired())
    }

    /// Registers a wait on `notifier` with this token until the returned value is
    /// dropped (the token's ancestors fire it through its signal). Call it before the
    /// wait's first re-check of the token.
    pub(crate) fn register<'a>(&'a self, notifier: &Arc<Notifier>) -> Registration<'a> {
        Registration(self.inner.as_deref().and_then(|token| {
            token.arm();
            let key = token.signal.register(notifier)?;
            Some((token, key))
        }))
    }

    /// Waits registered with this token right now, and children linked below it: for
    /// the leak checks.
    #[cfg_attr(not(any(test, feature = "internals")), allow(dead_code))]
    pub(crate) fn links(&self) -> (usize, usize) {
        self.inner
            .as_ref()
            .map_or((0, 0), |token| token.signal.links())
    }
}

impl Default for Abort {
    /// A new token, as [`Abort::new`].
    fn default() -> Abort {
        Abort::new()
    }
}

/// The future of [`Abort::aborted`].
struct Aborted {
    token: Option<std::sync::Arc<Token>>,
    /// The task's entry among the token's waits, once it has waited.
    key: Link,
}

impl Future for Aborted {
    type Output = ();

    fn poll(
        self: core::pin::Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<()> {
        use core::task::Poll;
        let this = self.get_mut();
        let Some(token) = &this.token else {
            return Poll::Pending; // `Abort::never()`
        };
        if !token.has_fired() {
            token.arm();
            // Stored before the re-check: a fire after it finds the waker.
            if token.signal.register_task(&mut this.key, cx.waker()) && !token.has_fired() {
                return Poll::Pending;
            }
        }
        this.unregister();
        Poll::Ready(())
    }
}

impl Aborted {
    fn unregister(&mut self) {
        if let (Some(token), Some(key)) = (&self.token, self.key.take()) {
            token.signal.unregister(key);
        }
    }
}

impl Drop for Aborted {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// Removes a wait's registration when the wait ends, on every path (a dropped future
/// included). `None` for [`Abort::never`].
pub(crate) struct Registration<'a>(Option<(&'a Token, usize)>);

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Some((token, key)) = self.0 {
            token.signal.unregister(key);
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
