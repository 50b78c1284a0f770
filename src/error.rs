//! The two ways a fortress operation fails, and the check that sees through wrappers.

use core::fmt;

/// Why a fortress operation did not happen.
///
/// ```
/// use fortress_gate::Error;
///
/// assert_eq!(Error::Aborted.to_string(), "fortress operation aborted");
/// assert_eq!(Error::Shutdown.to_string(), "fortress worker shutting down");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The call had to wait and its [`Abort`](crate::Abort) fired first.
    Aborted,
    /// The fortress was killed. Wins over [`Error::Aborted`] when both apply.
    Shutdown,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Aborted => "fortress operation aborted",
            Error::Shutdown => "fortress worker shutting down",
        })
    }
}

impl std::error::Error for Error {}

/// The error type of [`Worker::wait`](crate::Worker::wait) and of the manifold.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Whether `err`, or any error in its [`source`](std::error::Error::source) chain, is a
/// fortress [`Error`]: the Rust form of Go's `IsFortressError(errors.Cause(err))`.
///
/// ```
/// use fortress_gate::{is_fortress_error, BoxError, Error};
///
/// #[derive(Debug)]
/// struct Wrapped(Error);
/// impl std::fmt::Display for Wrapped {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("while collecting metrics")
///     }
/// }
/// impl std::error::Error for Wrapped {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
///         Some(&self.0)
///     }
/// }
///
/// assert!(is_fortress_error(&Error::Shutdown));
/// assert!(is_fortress_error(&Wrapped(Error::Aborted)));
/// let boxed: BoxError = "something else".into();
/// assert!(!is_fortress_error(&*boxed));
/// ```
pub fn is_fortress_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<Error>() {
            return true;
        }
        next = err.source();
    }
    false
}
