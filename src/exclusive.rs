//! Scoped lockdowns: `Guard::exclusive` and its owned and async forms, lockdowns that
//! unlock when their value goes out of scope, and that back out when they give up.
//!
//! A scoped lockdown closes the gate as `lockdown` does, but if its close shut an open
//! gate it records a *scope* in the state word (see `state.rs`). If the call then gives
//! up (aborted, or its future dropped), it reopens the gate only if that scope is still
//! there, that is if no other guard operation came since.

use crate::abort::Abort;
use crate::error::Error;
use crate::fortress::Guard;
use crate::gate::Gate;
use crate::state::Close;
use core::fmt;

impl Guard {
    /// Locks the fortress down as [`lockdown`](Guard::lockdown) does, and returns an
    /// [`Exclusive`] that [`unlock`](Guard::unlock)s it when dropped: the guard's
    /// exclusive phase then ends on every path out of the scope, an early `return`,
    /// a `?` or a panic included.
    ///
    /// Dropping the `Exclusive` unlocks whatever the state was before the call: on a
    /// fortress that was already locked, `exclusive` followed by the drop leaves it
    /// open. Guards are not coordinated with each other: if another [`Guard`] unlocks
    /// while the `Exclusive` lives, visits start again (the last operation decides).
    ///
    /// **A call that gives up backs out**, unlike a plain `lockdown`: if it returns
    /// [`Error::Aborted`] and its own close shut an open gate, it reopens the gate,
    /// unless another guard operation (a lockdown, a scoped lockdown, an unlock, a kill)
    /// came since its close: then the state is that operation's, and a back-out never
    /// reopens the gate under another guard's lockdown. A gate that was closed already
    /// when the call closed it stays closed.
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
    pub fn exclusive(&self, abort: &Abort) -> Result<Exclusive<'_>, Error> {
        scoped_lockdown(&self.gate, abort)?;
        Ok(Exclusive { guard: self })
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
    pub fn exclusive_owned(&self, abort: &Abort) -> Result<OwnedExclusive, Error> {
        scoped_lockdown(&self.gate, abort)?;
        Ok(OwnedExclusive {
            guard: self.clone(),
        })
    }
}

/// A lockdown that takes the gate for a phase, and backs out when it gives up: see
/// [`Guard::exclusive`]. While another phase holds the gate it waits for that phase to
/// end, then closes and drains on its own.
fn scoped_lockdown(gate: &Gate, abort: &Abort) -> Result<(), Error> {
    loop {
        let record = match gate.close_scoped()? {
            Some(Close::Owned) => return Ok(()),
            Some(Close::Drain(record)) => record,
            None => {
                gate.wait_phase(abort)?;
                continue;
            }
        };
        match gate.drain_for_phase(abort) {
            Ok(true) => return Ok(()),
            // Another phase took the gate; its close ended this call's record.
            Ok(false) => gate.wait_phase(abort)?,
            Err(Error::Aborted) => {
                if let Some(record) = record {
                    gate.withdraw(record);
                }
                return Err(Error::Aborted);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The exclusive phase of a [`Guard`], from [`Guard::exclusive`]: the fortress is
/// locked down with no visit inside, and it is unlocked when this value is dropped.
///
/// If the fortress has been killed by then, the unlock at drop does nothing (the
/// [`Error::Shutdown`] it answers is ignored) and the fortress keeps its state.
///
/// ```
/// use fortress_gate::{Abort, Fortress};
///
/// let fortress = Fortress::new();
/// let guard = fortress.guard();
/// guard.unlock()?;
/// let guest = fortress.guest();
/// {
///     let exclusive = guard.exclusive(&Abort::never())?;
///     assert!(fortress.is_locked());
///     assert!(guest.try_enter().is_none(), "no visit while it lives");
///     drop(exclusive);
/// }
/// assert_eq!(guest.visit(|| "open again", &Abort::never())?, "open again");
/// # Ok::<(), fortress_gate::Error>(())
/// ```
#[must_use = "the fortress is unlocked as soon as this value is dropped"]
pub struct Exclusive<'a> {
    pub(crate) guard: &'a Guard,
}

impl Drop for Exclusive<'_> {
    fn drop(&mut self) {
        self.guard.gate.end_phase();
    }
}

/// The exclusive phase of a [`Guard`] that owns its guard, from
/// [`Guard::exclusive_owned`] (or its async form): `Send + 'static`, so it can be held
/// by a spawned thread or task. When dropped, it unlocks first, then releases its
/// guard.
#[must_use = "the fortress is unlocked as soon as this value is dropped"]
pub struct OwnedExclusive {
    pub(crate) guard: Guard,
}

impl OwnedExclusive {
    /// The guard this exclusive phase holds.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }
}

impl Drop for OwnedExclusive {
    fn drop(&mut self) {
        // As `Exclusive`'s drop; the guard is released after this, with the fields.
        self.guard.gate.end_phase();
    }
}

impl fmt::Debug for OwnedExclusive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OwnedExclusive").field(&self.guard).finish()
    }
}

impl fmt::Debug for Exclusive<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Exclusive").field(self.guard).finish()
    }
}

/// The README's example, compiled and run with the doc tests so that it cannot drift
/// from the API. Exists only for `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
