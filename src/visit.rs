//! A visit in progress: it lasts while the value lives and ends, exactly once, when it
//! is dropped, on every path (unwinding included).

use crate::gate::Gate;
use crate::shards::Ticket;
use crate::sync::Arc;
use core::fmt;

/// A visit that borrows its [`Guest`](crate::Guest), from [`Guest::enter`] or
/// [`Guest::try_enter`].
///
/// The visit ends when this value is dropped. It is `Send`: a visit may end on another
/// (scoped) thread. Forgetting it (`mem::forget`) leaves the visit open for good, and
/// every later lockdown waits for it, as a forgotten lock guard would.
///
/// [`Guest::enter`]: crate::Guest::enter
/// [`Guest::try_enter`]: crate::Guest::try_enter
///
/// ```
/// use fortress_gate::{Abort, Fortress};
///
/// let fortress = Fortress::new();
/// fortress.guard().unlock()?;
/// let guest = fortress.guest();
/// let visit = guest.enter(&Abort::never())?;
/// assert_eq!(fortress.guests(), 1);
/// std::thread::scope(|s| {
///     s.spawn(move || drop(visit)); // ends on another thread
/// });
/// assert_eq!(fortress.guests(), 0);
/// # Ok::<(), fortress_gate::Error>(())
/// ```
#[must_use = "the visit ends as soon as this value is dropped"]
pub struct Visit<'a> {
    gate: &'a Gate,
    /// The slot it entered through (sharded fortresses; 0 otherwise).
    ticket: Ticket,
}

/// A visit that owns a handle to its fortress, from [`Guest::enter_owned`]: it can
/// outlive the `Guest` it came from, for instance in a spawned thread. It costs one
/// reference-count increment and decrement more than a [`Visit`].
///
/// [`Guest::enter_owned`]: crate::Guest::enter_owned
///
/// ```
/// use fortress_gate::{Abort, Fortress};
///
/// let fortress = Fortress::new();
/// fortress.guard().unlock()?;
/// let visit = fortress.guest().enter_owned(&Abort::never())?;
/// let worker = std::thread::spawn(move || {
///     let _visit = visit; // the visit lasts as long as this thread's work
/// });
/// worker.join().unwrap();
/// assert_eq!(fortress.guests(), 0);
/// # Ok::<(), fortress_gate::Error>(())
/// ```
#[must_use = "the visit ends as soon as this value is dropped"]
pub struct OwnedVisit {
    gate: Arc<Gate>,
    ticket: Ticket,
}

impl<'a> Visit<'a> {
    /// Wraps a visit that `gate` has just admitted.
    pub(crate) fn new(gate: &'a Gate, ticket: Ticket) -> Visit<'a> {
        Visit { gate, ticket }
    }

    /// Whether a lockdown has closed the gate since: a long visit can finish early
    /// and let the guard in. One relaxed load of the state word.
    ///
    /// ```
    /// use fortress_gate::{Abort, Fortress};
    ///
    /// let fortress = Fortress::new();
    /// let guard = fortress.guard();
    /// guard.unlock()?;
    /// let guest = fortress.guest();
    /// let visit = guest.enter(&Abort::never())?;
    /// assert!(!visit.lockdown_pending());
    /// let abort = Abort::new();
    /// abort.abort(); // the lockdown closes the gate, then gives up waiting
    /// assert!(guard.lockdown(&abort).is_err());
    /// assert!(visit.lockdown_pending());
    /// # Ok::<(), fortress_gate::Error>(())
    /// ```
    #[inline]
    pub fn lockdown_pending(&self) -> bool {
        self.gate.locked()
    }
}

impl OwnedVisit {
    /// Wraps a visit that `gate` has just admitted.
    pub(crate) fn new(gate: Arc<Gate>, ticket: Ticket) -> OwnedVisit {
        OwnedVisit { gate, ticket }
    }

    /// As [`Visit::lockdown_pending`].
    #[inline]
    pub fn lockdown_pending(&self) -> bool {
        self.gate.locked()
    }
}

impl Drop for Visit<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.gate.leave(self.ticket);
    }
}

impl Drop for OwnedVisit {
    #[inline]
    fn drop(&mut self) {
        self.gate.leave(self.ticket);
    }
}

impl fmt::Debug for Visit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Visit").field(&self.gate.snapshot()).finish()
    }
}

impl fmt::Debug for OwnedVisit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OwnedVisit")
            .field(&self.gate.snapshot())
            .finish()
    }
}
