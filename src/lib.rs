#![doc = include_str!("../README.md")]
#![warn(missing_docs, missing_debug_implementations)]
// No unsafe code, ever, in the library. The one exception is the loom models' test
// cell (a loom `UnsafeCell` whose every access loom checks), compiled only under
// `cfg(all(test, loom))`, where `forbid` would make that module's `allow` an error.
#![cfg_attr(not(all(test, loom)), forbid(unsafe_code))]
#![cfg_attr(all(test, loom), deny(unsafe_code))]

mod abort;
mod abort_future;
mod deadline;
mod error;
mod fortress;
#[cfg(feature = "async")]
mod futures;
mod gate;
mod manifold;
mod notify;
mod occupy;
mod signal;
mod state;
mod sync;
mod visit;
mod worker;

#[cfg(all(test, loom, feature = "async"))]
mod loom_async;
#[cfg(all(test, loom))]
mod loom_deadline;
#[cfg(all(test, loom))]
#[allow(unsafe_code)]
mod loom_models;

pub use abort::Abort;
pub use error::{is_fortress_error, BoxError, Error};
pub use fortress::{Fortress, Guard, Guest};
pub use manifold::{manifold, Manifold};
pub use occupy::{occupy, Occupied, OccupyError};
pub use visit::{OwnedVisit, Visit};
pub use worker::Worker;

/// The pure state-word type, for the fuzz targets and model tests. Not a stable API.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    pub use crate::state::*;

    /// The fortress's state word right now.
    pub fn snapshot(fortress: &crate::Fortress) -> State {
        fortress.snapshot()
    }

    /// How many deadlines the shared timer holds right now (for leak checks).
    pub fn timer_entries() -> usize {
        crate::deadline::pending()
    }
}
