//! The three handles: `Fortress` (the worker), `Guard` and `Guest`.

use crate::abort::Abort;
use crate::error::{BoxError, Error};
use crate::gate::Gate;
use crate::state::State;
use crate::sync::Arc;
use crate::visit::{OwnedVisit, Visit};
use crate::worker::Worker;
use core::fmt;

/// A fortress: a gate that a [`Guard`] opens and closes and [`Guest`]s visit.
///
/// A new fortress is **locked**. Clones share one fortress. As a [`Worker`], `kill`
/// shuts it down for good (every waiting and later call answers
/// [`Error::Shutdown`]) and `wait` returns once it is killed and no visit runs.
///
/// ```
/// use fortress_gate::{Abort, Fortress, Worker};
///
/// let fortress = Fortress::new();
/// assert!(fortress.is_locked());
/// fortress.guard().unlock()?;
/// assert_eq!(fortress.guest().visit(|| 41 + 1, &Abort::never())?, 42);
/// fortress.kill();
/// fortress.wait().unwrap();
/// # Ok::<(), fortress_gate::Error>(())
/// ```
#[derive(Clone)]
pub struct Fortress {
    pub(crate) gate: Opener,
}

/// Opens ([`unlock`](Guard::unlock)) and closes ([`lockdown`](Guard::lockdown)) a
/// fortress.
///
/// Guards can be cloned and used from several threads at once: that is memory-safe and
/// never deadlocks, and the last operation decides the state. A `lockdown` that
/// returns `Ok` guarantees that at some instant during the call the fortress was locked
/// with no visit inside; if another guard unlocks meanwhile, the pending lockdown keeps
/// waiting. During an exclusive phase ([`Guard::exclusive`]) an `unlock` opens nothing:
/// the phase's end opens the gate.
///
/// ```
/// use fortress_gate::{Abort, Fortress};
///
/// let fortress = Fortress::new();
/// let guard = fortress.guard();
/// guard.unlock()?;
/// guard.lockdown(&Abort::never())?; // no visit inside: returns at once
/// assert!(fortress.is_locked());
/// # Ok::<(), fortress_gate::Error>(())
/// ```
#[derive(Clone)]
pub struct Guard {
    pub(crate) gate: Opener,
}

/// Visits a fortress while it is unlocked, concurrently with other guests.
///
/// A visit that calls [`Guard::lockdown`] on its own fortress, or visits it again while
/// a lockdown is pending, deadlocks (or waits until its abort fires), as a read lock
/// re-taken under a waiting writer would.
///
/// ```
/// use fortress_gate::{Abort, Fortress};
///
/// let fortress = Fortress::new();
/// fortress.guard().unlock()?;
/// let guest = fortress.guest();
/// let len = guest.visit(|| "/var/lib/juju/charm".len(), &Abort::never())?;
/// assert_eq!(len, "/var/lib/juju/charm".len());
/// # Ok::<(), fortress_gate::Error>(())
/// ```
#[derive(Clone)]
pub struct Guest {
    pub(crate) gate: Arc<Gate>,
}

impl Fortress {
    /// A new fortress, locked.
    pub fn new() -> Fortress {
        Fortress {
            gate: Opener::new(&Arc::new(Gate::new(None))),
        }
    }

    /// A new, locked fortress whose guests are spread over one slot per core
    /// ([`available_parallelism`](std::thread::available_parallelism)), so that
    /// visits from many cores do not all write one cache line.
    ///
    /// Same handles, same rules as [`Fortress::new`]. A visit is still one
    /// read-modify-write in and one out, on its thread's slot; `lockdown`, `unlock` and
    /// `kill` pay for the slots (they close, reopen or count each one), so pick it when
    /// guests are many and lockdowns rare.
    ///
    /// ```
    /// use fortress_gate::{Abort, Fortress};
    ///
    /// let fortress = Fortress::sharded();
    /// assert!(fortress.is_locked());
    /// fortress.guard().unlock()?;
    /// let visit = fortress.guest().enter_owned(&Abort::never())?;
    /// assert_eq!(fortress.guests(), 1);
    /// drop(visit);
    /// fortress.guard().lockdown(&Abort::never())?;
    /// # Ok::<(), fortress_gate::Error>(())
    /// ```
    pub fn sharded() -> Fortress {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Fortress::with_shards(cores)
    }

    /// As [`Fortress::sharded`], with `shards` slots.
    ///
    /// Each slot is a 64-bit counter padded so that no two slots share a cache line
    /// (crossbeam's `CachePadded`: 128 bytes on x86_64 and aarch64), and every slot is
    /// allocated and written when the fortress is made: `with_shards(n)` takes `n` ×
    /// 128 bytes there, on top of the state word.
    /// More slots than the cores that visit at once buy nothing, and every `lockdown`,
    /// `unlock` and `kill` pays for each slot, so [`Fortress::sharded`]'s one slot per
    /// core is the useful size.
    ///
    /// # Panics
    /// If `shards` is 0, and, as a `Vec` of that many slots would, with
    /// "capacity overflow" if the slots' size in bytes exceeds `isize::MAX`. A count
    /// whose slots fit in the address space but not in memory aborts the process on
    /// allocation failure, as any allocation that fails does (or, where the system
    /// overcommits memory, may be stopped by it while the slots are written).
    ///
    /// ```
    /// let fortress = fortress_gate::Fortress::with_shards(8);
    /// assert_eq!(fortress.shards(), 8);
    /// ```
    pub fn with_shards(shards: usize) -> Fortress {
        assert!(shards > 0, "a sharded fortress needs at least one slot");
        Fortress {
            gate: Opener::new(&Arc::new(Gate::new(Some(shards)))),
        }
    }

    /// How many guest slots the fortress has: 0 for [`Fortress::new`]'s single state
    /// word.
    pub fn shards(&self) -> usize {
        self.gate.shard_count()
    }

    /// A guard of this fortress.
    pub fn guard(&self) -> Guard {
        Guard {
            gate: self.gate.clone(),
        }
    }

    /// A guest of this fortress.
    pub fn guest(&self) -> Guest {
        Guest {
            gate: Arc::clone(&self.gate),
        }
    }

    /// Whether the gate is closed right now (a snapshot). `kill` leaves this as the
    /// last guard left it.
    ///
    /// ```
    /// let fortress = fortress_gate::Fortress::new();
    /// assert!(fortress.is_locked());
    /// fortress.guard().unlock()?;
    /// assert!(!fortress.is_locked());
    /// # Ok::<(), fortress_gate::Error>(())
    /// ```
    pub fn is_locked(&self) -> bool {
        self.snapshot().locked()
    }

    /// How many visits are inside right now (a snapshot; a guest that is bouncing off
    /// a closed gate counts for an instant).
    ///
    /// ```
    /// use fortress_gate::{Abort, Fortress};
    ///
    /// let fortress = Fortress::new();
    /// fortress.guard().unlock()?;
    /// let guest = fortress.guest();
    /// let n = guest.visit(|| fortress.guests(), &Abort::never())?;
    /// assert_eq!((n, fortress.guests()), (1, 0));
    /// # Ok::<(), fortress_gate::Error>(())
    /// ```
    pub fn guests(&self) -> u64 {
        self.snapshot().guests()
    }

    /// As [`Worker::wait`], but `abort` can cut the wait short: `Ok(())` once the
    /// fortress is killed and no visit is running (on a live fortress it waits for the
    /// kill, however empty the fortress is); otherwise [`Error::Aborted`] when `abort`
    /// fires (as every wait, it answers `Ok` without looking at `abort` if it need not
    /// wait).
    ///
    /// # Errors
    /// [`Error::Aborted`] when `abort` fires first.
    ///
    /// ```
    /// use fortress_gate::{Abort, Error, Fortress, Worker};
    /// use std::time::Duration;
    ///
    /// let fortress = Fortress::new();
    /// let soon = Abort::after(Duration::from_millis(10));
    /// assert_eq!(fortress.wait_with(&soon), Err(Error::Aborted), "not killed");
    /// fortress.kill();
    /// assert_eq!(fortress.wait_with(&soon), Ok(()), "killed and empty: no wait");
    /// ```
    pub fn wait_with(&self, abort: &Abort) -> Result<(), Error> {
        self.gate.wait_done(abort)
    }

    /// The whole state word, decoded.
    pub(crate) fn snapshot(&self) -> State {
        self.gate.snapshot()
    }
}

/// A handle through which `unlock` can still be called: what a `Fortress` and a `Guard`
/// hold. The gate counts them; when the last one goes while the gate is closed, nobody
/// could ever open it again, so the fortress is killed and its waiters answered with
/// `Shutdown` instead of waiting forever.
pub(crate) struct Opener(Arc<Gate>);

impl Opener {
    fn new(gate: &Arc<Gate>) -> Opener {
        gate.add_opener();
        Opener(Arc::clone(gate))
    }
}

impl Clone for Opener {
    fn clone(&self) -> Opener {
        Opener::new(&self.0)
    }
}

impl Drop for Opener {
    fn drop(&mut self) {
        self.0.drop_opener();
    }
}

impl core::ops::Deref for Opener {
    type Target = Arc<Gate>;

    fn deref(&self) -> &Arc<Gate> {
        &self.0
    }
}

impl Default for Fortress {
    fn default() -> Fortress {
        Fortress::new()
    }
}

impl Worker for Fortress {
    /// Shuts the fortress down for good: waiting visits and lockdowns wake and return
    /// [`Error::Shutdown`], and so does every later call. Visits already running go
    /// on.
    fn kill(&self) {
        self.gate.kill();
    }

    /// Blocks until the fortress is killed and no visit is running; then `Ok(())`.
    fn wait(&self) -> Result<(), BoxError> {
        self.gate.wait_done(&Abort::never())?;
        Ok(())
    }
}

impl Guard {
    /// Opens the gate: every waiting and later visit goes in. Does nothing on an
    /// unlocked fortress.
    ///
    /// # Errors
    /// [`Error::Shutdown`] once the fortress is killed (the state is left as it was).
    #[inline]
    pub fn unlock(&self) -> Result<(), Error> {
        self.gate.unlock()
    }

    /// Closes the gate to new visits at once, then waits until the visits inside have
    /// finished. On `Ok` the guard has exclusive access until it calls
    /// [`unlock`](Guard::unlock). With no visit inside it returns `Ok` without
    /// waiting, even if `abort` has fired.
    ///
    /// # Errors
    /// * [`Error::Aborted`] if it had to wait and `abort` fired: the gate **stays
    ///   closed** and the visits inside go on; a later `unlock` reopens it.
    /// * [`Error::Shutdown`] if the fortress is, or while waiting gets, killed.
    ///
    /// ```
    /// use fortress_gate::{Abort, Error, Fortress};
    ///
    /// let fortress = Fortress::new();
    /// let guard = fortress.guard();
    /// guard.unlock()?;
    /// let guest = fortress.guest();
    /// let visit = guest.enter(&Abort::never())?;
    /// let abort = Abort::new();
    /// abort.abort();
    /// assert_eq!(guard.lockdown(&abort), Err(Error::Aborted));
    /// assert!(fortress.is_locked(), "an aborted lockdown still locks");
    /// drop(visit);
    /// guard.lockdown(&abort)?; // empty now: no wait, so the abort does not matter
    /// # Ok::<(), fortress_gate::Error>(())
    /// ```
    #[inline]
    pub fn lockdown(&self, abort: &Abort) -> Result<(), Error> {
        self.gate.lockdown(abort)
    }
}

impl Guest {
    /// Waits until the fortress is unlocked, then runs `f` as a visit and returns its
    /// value. The closure's own errors travel inside `T`.
    ///
    /// If `f` panics, the visit ends during unwinding (a waiting lockdown completes)
    /// and the panic propagates; nothing is poisoned.
    ///
    /// # Errors
    /// * [`Error::Aborted`] if it had to wait and `abort` fired first; `f` never ran.
    /// * [`Error::Shutdown`] if the fortress is, or while waiting gets, killed.
    #[inline(always)]
    pub fn visit<T>(&self, f: impl FnOnce() -> T, abort: &Abort) -> Result<T, Error> {
        let _visit = self.enter(abort)?;
        Ok(f())
    }

    /// Waits until the fortress is unlocked, then starts a visit that lasts until the
    /// returned [`Visit`] is dropped.
    ///
    /// # Errors
    /// As [`Guest::visit`].
    #[must_use = "the visit ends as soon as the returned value is dropped"]
    #[inline(always)]
    pub fn enter(&self, abort: &Abort) -> Result<Visit<'_>, Error> {
        let ticket = self.gate.enter(abort)?;
        Ok(Visit::new(&self.gate, ticket))
    }

    /// As [`Guest::enter`], but the visit owns a handle to the fortress, so it can
    /// outlive this `Guest`.
    ///
    /// # Errors
    /// As [`Guest::visit`].
    #[must_use = "the visit ends as soon as the returned value is dropped"]
    pub fn enter_owned(&self, abort: &Abort) -> Result<OwnedVisit, Error> {
        let ticket = self.gate.enter(abort)?;
        Ok(OwnedVisit::new(Arc::clone(&self.gate), ticket))
    }

    /// Starts a visit if the fortress is unlocked right now; never waits. `None` if it
    /// is locked or killed.
    ///
    /// ```
    /// let fortress = fortress_gate::Fortress::new();
    /// let guest = fortress.guest();
    /// assert!(guest.try_enter().is_none(), "a new fortress is locked");
    /// fortress.guard().unlock()?;
    /// assert!(guest.try_enter().is_some());
    /// # Ok::<(), fortress_gate::Error>(())
    /// ```
    #[must_use = "the visit ends as soon as the returned value is dropped"]
    #[inline(always)]
    pub fn try_enter(&self) -> Option<Visit<'_>> {
        self.gate
            .try_enter()
            .map(|ticket| Visit::new(&self.gate, ticket))
    }
}

macro_rules! debug_as_state {
    ($($handle:ident),*) => {$(
        impl fmt::Debug for $handle {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($handle)).field(&self.gate.snapshot()).finish()
            }
        }
    )*};
}
debug_as_state!(Fortress, Guard, Guest);
