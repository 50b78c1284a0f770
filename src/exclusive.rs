//! `Guard::exclusive`: a lockdown that unlocks when its value goes out of scope.
//!
//! Built only on the public `lockdown` and `unlock`, so it adds no state and no
//! transition of its own.

use crate::abort::Abort;
use crate::error::Error;
use crate::fortress::Guard;
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
    /// # Errors
    /// Those of [`lockdown`](Guard::lockdown), with the same effect on the gate:
    /// * [`Error::Aborted`] if it had to wait and `abort` fired. The gate **stays
    ///   closed**, exactly as after an aborted `lockdown`; no `Exclusive` exists, so
    ///   nothing reopens it until some guard calls [`unlock`](Guard::unlock).
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
        self.lockdown(abort)?;
        Ok(Exclusive { guard: self })
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
    guard: &'a Guard,
}

impl Drop for Exclusive<'_> {
    fn drop(&mut self) {
        // `unlock` fails only with `Shutdown`: a killed fortress changes no more, and
        // there is nothing left to give back.
        let _ = self.guard.unlock();
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
