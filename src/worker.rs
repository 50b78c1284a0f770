//! The worker contract of juju's dependency engine, as Rust.

use crate::error::BoxError;
use core::any::Any;

/// A long-running component that can be asked to stop and then waited for: Go's
/// `worker.Worker`. [`Fortress`](crate::Fortress) and
/// [`Occupied`](crate::Occupied) implement it.
///
/// `Any` is a supertrait so that a `&dyn Worker` can be downcast (as
/// [`Manifold::output`](crate::Manifold::output) does).
///
/// ```
/// use fortress_gate::{Fortress, Worker};
///
/// let fortress = Fortress::new();
/// fortress.kill();
/// assert!(fortress.wait().is_ok());
/// ```
pub trait Worker: Any + Send + Sync {
    /// Asks the worker to stop. Returns at once; calling it again does nothing.
    fn kill(&self);

    /// Blocks until the worker has stopped, and tells why it stopped: `Ok(())` for a
    /// clean stop after [`Worker::kill`].
    fn wait(&self) -> Result<(), BoxError>;
}
