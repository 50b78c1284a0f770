//! Scoped lockdowns: `Guard::exclusive` and its owned and async forms, lockdowns that
//! unlock when their value goes out of scope, and that back out when they give up.
//!
//! A scoped lockdown closes the gate as `lockdown` does, and completes by marking the
//! gate as owned by its phase (see `state.rs`); if another phase holds the gate, it
//! waits for that phase to end first. If its close shut an open gate it records a
//! back-out in the state word; if the call then gives up (aborted, or its future
//! dropped), it reopens the gate only if that record is still live, that is if no
//! other guard operation came since.

use crate::abort::Abort;
use crate::error::Error;
use crate::fortress::Guard;
use crate::gate::{Drained, Gate};
use crate::state::Close;
use crate::value::Unique;
use core::fmt;
use core::ops::{Deref, DerefMut};

impl<T> Guard<T> {
    /// Locks the fortress down as [`lockdown`](Guard::lockdown) does, and returns an
    /// [`Exclusive`] that [`unlock`](Guard::unlock)s it when dropped: the guard's
    /// exclusive phase then ends on every path out of the scope, an early `return`,
    /// a `?` or a panic included.
    ///
    /// Dropping the `Exclusive` unlocks whatever the state was before the call: on a
    /// fortress that was already locked, `exclusive` followed by the drop leaves it
    /// open.
    ///
    /// **The phase owns the gate.** While the `Exclusive` lives, no visit is inside or
    /// begins, whatever any guard does: [`unlock`](Guard::unlock) (from any guard, this
    /// one included) returns `Ok` and opens nothing ([`is_locked`](crate::Fortress::is_locked)
    /// stays true); another scoped lockdown waits until the phase ends (abortably),
    /// then closes and drains on its own, so visits may get in between two phases; a
    /// plain [`lockdown`](Guard::lockdown) returns at once; [`kill`](crate::Worker::kill)
    /// answers every waiting and later visit with [`Error::Shutdown`], and
    /// `wait`/[`wait_with`](crate::Fortress::wait_with) also wait for the phase to end.
    /// The drop ends the phase and unlocks in one step (a killed fortress stays
    /// closed). A forgotten `Exclusive` (`mem::forget`) leaves the fortress closed for
    /// good, as a forgotten visit leaves it occupied: `wait` after `kill` then never
    /// returns.
    ///
    /// **A call that gives up backs out**, unlike a plain `lockdown`: if it returns
    /// [`Error::Aborted`] and its own close shut an open gate, it reopens the gate,
    /// unless another guard operation (a lockdown, a scoped lockdown, an unlock, a kill)
    /// came since its close: then the state is that operation's. A back-out never
    /// reopens the gate during another guard's exclusive phase, and under another
    /// guard's *pending* scoped lockdown only if exactly a multiple of 16,777,215
    /// scoped closes shut this fortress's open gate (or phases ended) while it waited.
    /// A gate that was closed already when the call closed it stays closed.
    ///
    /// # Errors
    /// * [`Error::Aborted`] if it had to wait and `abort` fired (the gate backed out as
    ///   above).
    /// * [`Error::Shutdown`] if the fortress is, or while waiting gets, killed.
    ///
    /// ```
    /// use fortress_gate::{Abort, BoxError, Fortress, Guard};
    ///
    /// /// Replaces the protected files; any failure leaves the fortress open again.
    /// fn upgrade(guard: &Guard, abort: &Abort, version: &str) -> Result<u32, BoxError> {
    ///     let _exclusive = guard.exclusive(abort)?;
    ///     // No visit runs from here to the end of the function.
    ///     let version: u32 = version.parse()?;
    ///     Ok(version)
    /// }
    ///
    /// let fortress = Fortress::new();
    /// let guard = fortress.guard();
    /// guard.unlock()?;
    /// assert_eq!(upgrade(&guard, &Abort::never(), "7")?, 7);
    /// assert!(!fortress.is_locked(), "unlocked when the function returned");
    /// assert!(upgrade(&guard, &Abort::never(), "seven").is_err());
    /// assert!(!fortress.is_locked(), "unlocked on the early return too");
    /// # Ok::<(), BoxError>(())
    /// ```
    #[inline]
    pub fn exclusive(&self, abort: &Abort) -> Result<Exclusive<'_, T>, Error> {
        if !self.gate.try_claim() {
            scoped_lockdown(&self.gate, abort)?;
        }
        Ok(Exclusive::new(self))
    }

    /// As [`Guard::exclusive`], but the returned [`OwnedExclusive`] holds a guard of
    /// its own, so it can outlive `self` and move to another thread or task. Backs out
    /// as `exclusive` does.
    ///
    /// # Errors
    /// As [`Guard::exclusive`].
    ///
    /// ```
    /// use fortress_gate::{Abort, Fortress};
    /// use std::thread;
    ///
    /// let fortress = Fortress::new();
    /// fortress.guard().unlock()?;
    /// let exclusive = fortress.guard().exclusive_owned(&Abort::never())?;
    /// thread::spawn(move || drop(exclusive)).join().unwrap(); // unlocks there
    /// assert!(!fortress.is_locked());
    /// # Ok::<(), fortress_gate::Error>(())
    /// ```
    pub fn exclusive_owned(&self, abort: &Abort) -> Result<OwnedExclusive<T>, Error> {
        scoped_lockdown(&self.gate, abort)?;
        Ok(OwnedExclusive::new(self.clone()))
    }
}

/// A lockdown that takes the gate for a phase, and backs out when it gives up: see
/// [`Guard::exclusive`]. While another phase holds the gate it waits for that phase to
/// end, then closes and drains on its own.
#[cold]
fn scoped_lockdown(gate: &Gate, abort: &Abort) -> Result<(), Error> {
    loop {
        let (record, since) = match gate.close_scoped()? {
            Some(Close::Owned) => return Ok(()),
            Some(Close::Drain { record, since }) => (record, since),
            None => {
                gate.wait_phase(abort)?;
                continue;
            }
        };
        let mut since = since;
        // Backs out when the drain gives up: aborted, or unwinding (the `tokio`
        // feature's panic on a worker thread).
        let mut back_out = BackOut { gate, record };
        loop {
            match gate.drain_for_phase(since, abort) {
                Ok(Drained::Owned) => {
                    back_out.disarm();
                    return Ok(());
                }
                Ok(Drained::Since(now)) => since = now,
                // Another phase took the gate (and ended this call's record), or came
                // and went: close again once no phase holds the gate.
                Ok(Drained::CloseAgain) => {
                    back_out.disarm();
                    break gate.wait_phase(abort)?;
                }
                Err(Error::Aborted) => return Err(Error::Aborted),
                Err(e) => {
                    back_out.disarm();
                    return Err(e);
                }
            }
        }
    }
}

/// A scoped close's back-out record while its drain runs: withdrawn when dropped,
/// unless the drain ended otherwise than by giving up.
struct BackOut<'a> {
    gate: &'a Gate,
    record: Option<u32>,
}

impl BackOut<'_> {
    fn disarm(&mut self) {
        self.record = None;
    }
}

impl Drop for BackOut<'_> {
    fn drop(&mut self) {
        if let Some(record) = self.record {
            self.gate.withdraw(record);
        }
    }
}

/// The exclusive phase of a [`Guard`], from [`Guard::exclusive`]: the fortress is
/// locked down with no visit inside, and it is unlocked when this value is dropped. It
/// derefs, mutably, to the value the fortress holds.
///
/// If the fortress has been killed by then, the unlock at drop does nothing (the
/// [`Error::Shutdown`] it answers is ignored) and the fortress keeps its state.
///
/// Nothing is poisoned: an `Exclusive` dropped by `?` or a panic ends the phase, and
/// what was written before stays. For all-or-nothing changes, build the new value
/// aside and assign it in one step (see the [guide](crate::guide)).
///
/// ```
/// use fortress_gate::{Abort, Fortress};
///
/// let fortress = Fortress::holding(1);
/// let guard = fortress.guard();
/// guard.unlock()?;
/// let guest = fortress.guest();
/// {
///     let mut exclusive = guard.exclusive(&Abort::never())?;
///     assert!(fortress.is_locked());
///     assert!(guest.try_enter().is_none(), "no visit while it lives");
///     *exclusive += 1;
/// }
/// assert_eq!(guest.read(|n| *n, &Abort::never())?, 2);
/// # Ok::<(), fortress_gate::Error>(())
/// ```
#[must_use = "the fortress is unlocked as soon as this value is dropped"]
pub struct Exclusive<'a, T = ()> {
    pub(crate) guard: &'a Guard<T>,
    leave: Unique<T>,
}

impl<'a, T> Exclusive<'a, T> {
    /// The phase that `guard`'s scoped lockdown has just claimed.
    #[inline]
    pub(crate) fn new(guard: &'a Guard<T>) -> Exclusive<'a, T> {
        let leave = guard.gate.value.unique();
        Exclusive { guard, leave }
    }
}

impl<T> Deref for Exclusive<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        self.guard.gate.value.get_shared_in_phase(&self.leave)
    }
}

impl<T> DerefMut for Exclusive<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        self.guard.gate.value.get_unique(&mut self.leave)
    }
}

impl<T> Drop for Exclusive<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.leave.release();
        self.guard.gate.end_phase();
    }
}

/// The exclusive phase of a [`Guard`] that owns its guard, from
/// [`Guard::exclusive_owned`] (or its async form): `Send + 'static` when the value is
/// `Send + Sync + 'static`, so it can be held by a spawned thread or task. It derefs,
/// mutably, to the value. When dropped, it unlocks first, then releases its guard.
#[must_use = "the fortress is unlocked as soon as this value is dropped"]
pub struct OwnedExclusive<T = ()> {
    pub(crate) guard: Guard<T>,
    leave: Unique<T>,
}

impl<T> OwnedExclusive<T> {
    /// The phase that `guard`'s scoped lockdown has just claimed.
    pub(crate) fn new(guard: Guard<T>) -> OwnedExclusive<T> {
        let leave = guard.gate.value.unique();
        OwnedExclusive { guard, leave }
    }

    /// The guard this exclusive phase holds.
    pub fn guard(&self) -> &Guard<T> {
        &self.guard
    }
}

impl<T> Deref for OwnedExclusive<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        self.guard.gate.value.get_shared_in_phase(&self.leave)
    }
}

impl<T> DerefMut for OwnedExclusive<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        self.guard.gate.value.get_unique(&mut self.leave)
    }
}

impl<T> Drop for OwnedExclusive<T> {
    fn drop(&mut self) {
        // As `Exclusive`'s drop; the guard is released after this, with the fields.
        self.leave.release();
        self.guard.gate.end_phase();
    }
}

// As std's guards: the value, when it can be shown.
impl<T: fmt::Debug> fmt::Debug for OwnedExclusive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: fmt::Debug> fmt::Debug for Exclusive<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// The README's example, compiled and run with the doc tests so that it cannot drift
/// from the API. Exists only for `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
