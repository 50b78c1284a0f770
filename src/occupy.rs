//! `occupy`: a visit that lasts for a worker's whole life.

use crate::abort::Abort;
use crate::error::{BoxError, Error};
use crate::fortress::Guest;
use crate::sync::{lock, Mutex};
use crate::visit::OwnedVisit;
use crate::worker::Worker;
use core::{fmt, ops::Deref};

/// Enters the fortress like a visit, starts a worker inside the visit, and keeps the
/// visit open until the worker has completed: Go's `fortress.Occupy`.
///
/// * While the fortress is locked it waits; `abort` cuts the wait short with
///   [`Error::Aborted`], a kill with [`Error::Shutdown`], and `start` is then never
///   called.
/// * If `start` fails, its error comes back unchanged as [`OccupyError::Start`] and
///   the visit ends at once.
/// * If `start` succeeds, the visit stays open until the worker's
///   [`wait`](Worker::wait) has returned (through [`Occupied`]'s `wait`), or until the
///   [`Occupied`] is dropped. A lockdown meanwhile blocks until then.
/// * If `abort` fires while `start` runs, the new worker is killed and waited for, the
///   visit ends and the result is [`Error::Aborted`]: nobody else would own it. The
///   token is read once the visit has begun: one that had fired by then cut no wait
///   short, so, as for every call that need not wait, it does not count (`start` runs
///   and the worker is returned).
///
/// `start` and the worker's `kill` and `wait` run on the caller's thread, under no lock
/// of the crate's; ending the visit happens after any lock is released.
///
/// The caller owns the worker's lifetime: until it is waited for or dropped, no
/// lockdown of this fortress can complete.
///
/// ```
/// use fortress_gate::{occupy, Abort, BoxError, Fortress, Worker};
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// #[derive(Default)]
/// struct Collector(AtomicBool);
/// impl Worker for Collector {
///     fn kill(&self) { self.0.store(true, Ordering::Release) }
///     fn wait(&self) -> Result<(), BoxError> { Ok(()) }
/// }
///
/// let fortress = Fortress::new();
/// fortress.guard().unlock()?;
/// let start = || Ok::<_, std::io::Error>(Collector::default());
/// let collector = occupy(&fortress.guest(), start, &Abort::never())?;
/// assert_eq!(fortress.guests(), 1, "the worker holds a visit open");
/// collector.kill();
/// collector.wait()?;
/// assert_eq!(fortress.guests(), 0);
/// # Ok::<(), fortress_gate::BoxError>(())
/// ```
pub fn occupy<W, E, F>(
    guest: &Guest,
    start: F,
    abort: &Abort,
) -> Result<Occupied<W>, OccupyError<E>>
where
    W: Worker,
    F: FnOnce() -> Result<W, E>,
{
    let visit = guest.enter_owned(abort).map_err(OccupyError::Fortress)?;
    // Read once the visit has begun: a token that had fired by then did not cut a wait
    // short (the call did not wait, or its wait ended by the gate opening), so, as for
    // any call that need not wait, it does not count.
    let fired_before = abort.is_aborted();
    let worker = start().map_err(OccupyError::Start)?; // drops `visit` on error
    if !fired_before && abort.is_aborted() {
        worker.kill();
        // The caller gets `Aborted`, which says why; the worker's own exit reason has
        // nowhere to go.
        let _ = worker.wait();
        return Err(OccupyError::Fortress(Error::Aborted));
    }
    Ok(Occupied {
        worker,
        visit: Mutex::new(Some(visit)),
    })
}

/// A worker started by [`occupy`], holding its visit open until it has completed.
///
/// It is a [`Worker`] itself (`kill` and `wait` pass through; the visit ends when
/// `wait` returns) and derefs to the inner worker. Dropping it also ends the visit.
pub struct Occupied<W> {
    worker: W,
    /// `Some` until the worker has completed.
    visit: Mutex<Option<OwnedVisit>>,
}

impl<W> Occupied<W> {
    /// Whether the worker still holds its visit open.
    pub fn is_visiting(&self) -> bool {
        lock(&self.visit).is_some()
    }
}

impl<W: Worker> Worker for Occupied<W> {
    fn kill(&self) {
        self.worker.kill();
    }

    fn wait(&self) -> Result<(), BoxError> {
        let result = self.worker.wait();
        // The worker has completed: end the visit (once, whoever waits first), after
        // the lock is released, since ending a visit may wake tasks (user code).
        let visit = lock(&self.visit).take();
        drop(visit);
        result
    }
}

impl<W> Deref for Occupied<W> {
    type Target = W;

    fn deref(&self) -> &W {
        &self.worker
    }
}

impl<W: fmt::Debug> fmt::Debug for Occupied<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Occupied")
            .field("worker", &self.worker)
            .field("visiting", &self.is_visiting())
            .finish()
    }
}

/// Why [`occupy`] did not start a worker.
#[derive(Debug, PartialEq, Eq)]
pub enum OccupyError<E> {
    /// The fortress refused the visit: aborted while it waited, or shut down.
    Fortress(Error),
    /// The worker's start function failed; its error, unchanged.
    Start(E),
}

impl<E> fmt::Display for OccupyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OccupyError::Fortress(_) => "could not occupy the fortress",
            OccupyError::Start(_) => "the occupying worker failed to start",
        })
    }
}

impl<E: std::error::Error + 'static> std::error::Error for OccupyError<E> {
    /// The cause: the fortress [`Error`] or the start error, so
    /// [`is_fortress_error`](crate::is_fortress_error) sees through this wrapper.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OccupyError::Fortress(err) => Some(err),
            OccupyError::Start(err) => Some(err),
        }
    }
}
