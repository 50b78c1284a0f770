//! The manifold: how juju's dependency engine starts a fortress and hands out its
//! guard and guests.

use crate::error::BoxError;
use crate::fortress::{Fortress, Guard, Guest};
use crate::worker::Worker;
use core::any::Any;

/// Starts fortresses and fills `Option<Guard>` / `Option<Guest>` outputs from them:
/// Go's `fortress.Manifold()`. It needs no inputs.
///
/// ```
/// use fortress_gate::{manifold, Guard, Guest};
///
/// let manifold = manifold();
/// let worker = manifold.start()?;
/// let mut guard: Option<Guard> = None;
/// manifold.output(worker.as_ref(), &mut guard)?;
/// let mut guest: Option<Guest> = None;
/// manifold.output(worker.as_ref(), &mut guest)?;
/// guard.unwrap().unlock()?;
/// # Ok::<(), fortress_gate::BoxError>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Manifold {
    _private: (),
}

/// A [`Manifold`] that runs a fortress.
pub fn manifold() -> Manifold {
    Manifold::default()
}

impl Manifold {
    /// A new, locked fortress, as a worker.
    pub fn start(&self) -> Result<Box<dyn Worker>, BoxError> {
        Ok(Box::new(Fortress::new()))
    }

    /// Fills `out`, an `Option<Guard>` or an `Option<Guest>`, from `worker`, which must
    /// be a fortress from [`Manifold::start`]. On error `out` is left untouched.
    ///
    /// ```
    /// use fortress_gate::{manifold, BoxError, Worker};
    ///
    /// struct NotAFortress;
    /// impl Worker for NotAFortress {
    ///     fn kill(&self) {}
    ///     fn wait(&self) -> Result<(), BoxError> { Ok(()) }
    /// }
    ///
    /// let manifold = manifold();
    /// let mut guest: Option<fortress_gate::Guest> = None;
    /// let err = manifold.output(&NotAFortress, &mut guest).unwrap_err();
    /// assert!(err.to_string().starts_with("in should be a fortress"));
    /// let mut wrong: Option<String> = None;
    /// let err = manifold.output(manifold.start()?.as_ref(), &mut wrong).unwrap_err();
    /// assert!(err.to_string().starts_with("out should be"));
    /// assert!(wrong.is_none() && guest.is_none());
    /// # Ok::<(), fortress_gate::BoxError>(())
    /// ```
    pub fn output(&self, worker: &dyn Worker, out: &mut dyn Any) -> Result<(), BoxError> {
        let worker: &dyn Any = worker;
        let Some(fortress) = worker.downcast_ref::<Fortress>() else {
            return Err("in should be a fortress; got another kind of worker".into());
        };
        if let Some(guard) = out.downcast_mut::<Option<Guard>>() {
            *guard = Some(fortress.guard());
        } else if let Some(guest) = out.downcast_mut::<Option<Guest>>() {
            *guest = Some(fortress.guest());
        } else {
            return Err("out should be a &mut Option<Guard> or a &mut Option<Guest>".into());
        }
        Ok(())
    }
}
