//! A visit in progress: it lasts while the value lives and ends, exactly once, when it
//! is dropped, on every path (unwinding included).

use crate::fortress::Inner;
use crate::shards::Ticket;
use crate::sync::Arc;
use crate::value::Shared;
use core::fmt;
use core::ops::Deref;

/// A visit that borrows its [`Guest`](crate::Guest), from [`Guest::enter`] or
/// [`Guest::try_enter`]: it derefs to the value the fortress holds.
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
pub struct Visit<'a, T = ()> {
    gate: &'a Inner<T>,
    /// The slot it entered through (sharded fortresses; 0 otherwise).
    ticket: Ticket,
    leave: Shared<T>,
}

/// A visit that owns a handle to its fortress, from [`Guest::enter_owned`]: it can
/// outlive the `Guest` it came from, for instance in a spawned thread. It costs one
/// reference-count increment and decrement more than a [`Visit`]. It derefs to the
/// value the fortress holds.
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
pub struct OwnedVisit<T = ()> {
    gate: Arc<Inner<T>>,
    ticket: Ticket,
    leave: Shared<T>,
}

impl<'a, T> Visit<'a, T> {
    /// Wraps a visit that `gate` has just admitted.
    #[inline(always)]
    pub(crate) fn new(gate: &'a Inner<T>, ticket: Ticket) -> Visit<'a, T> {
        let leave = gate.value.share();
        Visit {
            gate,
            ticket,
            leave,
        }
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

impl<T> OwnedVisit<T> {
    /// Wraps a visit that `gate` has just admitted.
    pub(crate) fn new(gate: Arc<Inner<T>>, ticket: Ticket) -> OwnedVisit<T> {
        let leave = gate.value.share();
        OwnedVisit {
            gate,
            ticket,
            leave,
        }
    }

    /// As [`Visit::lockdown_pending`].
    #[inline]
    pub fn lockdown_pending(&self) -> bool {
        self.gate.locked()
    }
}

impl<T> Deref for Visit<'_, T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        self.gate.value.get(&self.leave)
    }
}

impl<T> Deref for OwnedVisit<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        self.gate.value.get(&self.leave)
    }
}

impl<T> Drop for Visit<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.leave.release();
        self.gate.leave(self.ticket);
    }
}

impl<T> Drop for OwnedVisit<T> {
    #[inline]
    fn drop(&mut self) {
        self.leave.release();
        self.gate.leave(self.ticket);
    }
}

// As std's guards: the value, when it can be shown.
impl<T: fmt::Debug> fmt::Debug for Visit<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: fmt::Debug> fmt::Debug for OwnedVisit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
