//! The three handles: `Fortress` (the worker), `Guard` and `Guest`.

use crate::abort::Abort;
use crate::error::{BoxError, Error};
use crate::gate::{Gate, Spread};
#[cfg(feature = "read-mostly")]
use crate::read_mostly::Readers;
use crate::shards::Shards;
use crate::state::State;
use crate::sync::Arc;
use crate::value::Value;
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
///
/// # The value and threads
///
/// `Fortress<T>` ([`Fortress::holding`]) holds a value: visits read it (`&T`), the
/// exclusive phases of guards write it (`&mut T`), never both at once. The handles
/// are shared pointers, so they follow `Arc<RwLock<T>>`: `Fortress<T>`, [`Guard<T>`],
/// [`Guest<T>`], the owned forms and the futures are `Send` and `Sync` when `T` is
/// `Send + Sync`; a [`Visit`] or an [`Exclusive`](crate::Exclusive) can be shared
/// with other threads when `T: Sync` (they can only read through a shared borrow).
/// A value that is not `Sync` cannot be shared across threads:
///
/// ```compile_fail
/// use fortress_gate::Fortress;
/// let fortress = Fortress::holding(std::cell::Cell::new(0));
/// std::thread::spawn(move || fortress.guest().try_enter().map(|v| v.set(1)));
/// ```
///
/// nor a value that is not `Send`:
///
/// ```compile_fail
/// use fortress_gate::Fortress;
/// let fortress = Fortress::holding(std::rc::Rc::new(0));
/// let guard = fortress.guard();
/// std::thread::spawn(move || drop(guard));
/// ```
///
/// The async forms are `Send` when `T` is `Send + Sync`, so a task that awaits one on
/// such a value can be spawned on a multi-threaded runtime:
///
/// ```
/// use fortress_gate::{Abort, Fortress};
/// fn spawnable<F: std::future::Future + Send>(_: F) {}
/// let fortress = Fortress::holding(String::new());
/// let (guest, guard) = (fortress.guest(), fortress.guard());
/// spawnable(async move {
///     let visit = guest.enter_async(Abort::NEVER).await;
///     drop(visit);
///     let exclusive = guard.exclusive_async(Abort::NEVER).await;
///     drop(exclusive);
/// });
/// ```
///
/// and not otherwise:
///
/// ```compile_fail
/// use fortress_gate::{Abort, Fortress};
/// fn spawnable<F: std::future::Future + Send>(_: F) {}
/// let fortress = Fortress::holding(std::rc::Rc::new(0));
/// let guest = fortress.guest();
/// spawnable(async move { drop(guest.enter_async(Abort::NEVER).await) });
/// ```
///
/// A visit to a value that is not `Sync` stays on its thread:
///
/// ```compile_fail
/// use fortress_gate::{Abort, Fortress};
/// let fortress = Fortress::holding(std::cell::Cell::new(0));
/// let guest = fortress.guest();
/// let visit = guest.enter(&Abort::never()).unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || visit.set(1));
/// });
/// ```
///
/// A reference to the value does not outlive its visit:
///
/// ```compile_fail
/// use fortress_gate::{Abort, Fortress};
/// let fortress = Fortress::holding(String::from("kept"));
/// let guest = fortress.guest();
/// let kept: &String = guest.read(|value| value, &Abort::never()).unwrap();
/// ```
///
/// ```compile_fail
/// use fortress_gate::{Abort, Fortress};
/// let fortress = Fortress::holding(String::from("kept"));
/// let guest = fortress.guest();
/// let visit = guest.enter(&Abort::never()).unwrap();
/// let kept: &String = &visit;
/// drop(visit);
/// println!("{kept}");
/// ```
///
/// and [`Exclusive`](crate::Exclusive) is invariant in `T`, so a phase over a
/// `&'static str` cannot be written through as one over a shorter-lived `&str`:
///
/// ```compile_fail
/// use fortress_gate::{Abort, Exclusive};
/// fn shorten<'a, 'g>(e: Exclusive<'g, &'static str>) -> Exclusive<'g, &'a str> {
///     e
/// }
/// ```
pub struct Fortress<T = ()> {
    pub(crate) gate: Opener<T>,
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
pub struct Guard<T = ()> {
    pub(crate) gate: Opener<T>,
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
pub struct Guest<T = ()> {
    pub(crate) gate: Arc<Inner<T>>,
}

/// How a fortress keeps its guests: asked for at construction
/// ([`Fortress::holding_with`]), told by [`Fortress::layout`]. Every layout has the same
/// handles and the same rules; they differ in what a visit and a guard operation cost.
///
/// ```
/// use fortress_gate::{Fortress, Layout};
///
/// let fortress = Fortress::holding_with(String::from("config"), Layout::Shards(4));
/// assert_eq!(fortress.layout(), Layout::Shards(4));
/// assert_eq!(fortress.shards(), 4);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One state word holds the lock and the guest count: a visit is one
    /// read-modify-write in and one out on it ([`Fortress::new`]).
    Word,
    /// One guest slot per core ([`Fortress::sharded`]).
    Sharded,
    /// This many guest slots ([`Fortress::with_shards`]); 0 panics.
    Shards(usize),
    /// Per-thread counts and asymmetric fences, for gates whose visits vastly outnumber
    /// their lockdowns: a visit makes no read-modify-write, and every lockdown, kill
    /// and scoped lockdown pays a process-wide barrier (a system call) and a scan of
    /// every thread's counts. Needs the `read-mostly` feature; where this process has
    /// no barrier ([`read_mostly_barrier`](crate::read_mostly_barrier) says `None`),
    /// the fortress keeps its guests as [`Layout::Word`] does. See the guide's
    /// "Choosing a layout".
    #[cfg(feature = "read-mostly")]
    ReadMostly,
}

/// What the handles share: the gate and the value it guards. It derefs to the gate.
pub(crate) struct Inner<T> {
    gate: Gate,
    pub(crate) value: Value<T>,
    layout: Layout,
}

impl<T> core::ops::Deref for Inner<T> {
    type Target = Gate;

    fn deref(&self) -> &Gate {
        &self.gate
    }
}

impl Fortress {
    /// A new fortress, locked, that holds nothing (`()`): it guards a resource that
    /// lives elsewhere. [`Fortress::holding`] makes one that holds a value.
    pub fn new() -> Fortress {
        Fortress::holding_with((), Layout::Word)
    }

    /// A new, locked fortress whose guests are spread over one slot per core
    /// ([`available_parallelism`](std::thread::available_parallelism)), so that
    /// visits from many cores do not all write one cache line: [`Layout::Sharded`].
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
        Fortress::holding_with((), Layout::Sharded)
    }

    /// As [`Fortress::sharded`], with `shards` slots: [`Layout::Shards`].
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
        Fortress::holding_with((), Layout::Shards(shards))
    }
}

impl<T> Fortress<T> {
    /// A new, locked fortress that holds `value`, in [`Layout::Word`]: guests read it
    /// in their visits ([`Guest::read`], or through a [`Visit`]'s `Deref`) and a guard
    /// writes it in its exclusive phases ([`Guard::exclusive`], through `DerefMut`).
    ///
    /// The value lives until the last handle and the last visit are gone (also after a
    /// kill), and is dropped then, once, on the thread that drops the last of them. A
    /// value that holds a handle of its own fortress is a cycle and is never dropped.
    ///
    /// The fortress is a [`Worker`] (`kill`, `wait`) when `T` is
    /// `Send + Sync + 'static`, as the trait asks. A fortress of any other value is
    /// killed when its last `Fortress` or `Guard` is dropped while the gate is closed.
    ///
    /// ```
    /// use fortress_gate::{Abort, Fortress};
    ///
    /// let fortress = Fortress::holding(vec![1, 2, 3]);
    /// let (guard, guest) = (fortress.guard(), fortress.guest());
    /// guard.exclusive(&Abort::never())?.push(4);
    /// assert_eq!(guest.read(|v| v.len(), &Abort::never())?, 4);
    /// # Ok::<(), fortress_gate::Error>(())
    /// ```
    pub fn holding(value: T) -> Fortress<T> {
        Fortress::holding_with(value, Layout::Word)
    }

    /// As [`Fortress::holding`], with the guests kept as `layout` says.
    ///
    /// # Panics
    /// With `Layout::Shards(0)`, as [`Fortress::with_shards`] with 0.
    ///
    /// ```
    /// use fortress_gate::{Fortress, Layout};
    ///
    /// let fortress = Fortress::holding_with(0_u64, Layout::Sharded);
    /// assert_eq!(fortress.layout(), Layout::Sharded);
    /// ```
    pub fn holding_with(value: T, layout: Layout) -> Fortress<T> {
        let spread = match layout {
            Layout::Word => Spread::Word,
            Layout::Sharded => Spread::Shards(Shards::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
            Layout::Shards(shards) => {
                assert!(shards > 0, "a sharded fortress needs at least one slot");
                Spread::Shards(Shards::new(shards))
            }
            #[cfg(feature = "read-mostly")]
            Layout::ReadMostly => Readers::new().map_or(Spread::Word, Spread::Readers),
        };
        let inner = Inner {
            gate: Gate::new(spread),
            value: Value::new(value),
            layout,
        };
        Fortress {
            gate: Opener::new(&Arc::new(inner)),
        }
    }

    /// The layout asked for at construction.
    pub fn layout(&self) -> Layout {
        self.gate.layout
    }

    /// The value, if this is the only handle of the fortress and no visit or phase
    /// holds it (`Ok`); otherwise this fortress back (`Err`).
    ///
    /// # Errors
    /// This fortress, untouched, while another handle (a clone, a guard, a guest) or
    /// an owned visit exists.
    ///
    /// ```
    /// use fortress_gate::Fortress;
    ///
    /// let fortress = Fortress::holding(String::from("kept"));
    /// let guest = fortress.guest();
    /// let fortress = fortress.try_into_inner().unwrap_err(); // the guest holds it
    /// drop(guest);
    /// assert_eq!(fortress.try_into_inner().ok().as_deref(), Some("kept"));
    /// ```
    pub fn try_into_inner(self) -> Result<T, Fortress<T>> {
        // With `self` owned, a count of one means no other handle exists, and none
        // can be made: every handle comes from another.
        if Arc::strong_count(&self.gate.0) != 1 {
            return Err(self);
        }
        let inner = Arc::clone(&self.gate.0);
        drop(self); // the last opener: it may kill the closed gate, which nobody waits at
        match Arc::try_unwrap(inner) {
            Ok(inner) => Ok(inner.value.into_inner()),
            Err(_) => unreachable!("a fortress's only handle was shared"),
        }
    }

    /// The value, writable, if this is the only handle of the fortress and no visit or
    /// phase holds it: then nobody else can reach the value, whatever the gate's state.
    ///
    /// ```
    /// use fortress_gate::Fortress;
    ///
    /// let mut fortress = Fortress::holding(1);
    /// *fortress.get_mut().unwrap() += 1;
    /// let guard = fortress.guard();
    /// assert!(fortress.get_mut().is_none(), "the guard shares it");
    /// drop(guard);
    /// assert_eq!(fortress.get_mut(), Some(&mut 2));
    /// ```
    pub fn get_mut(&mut self) -> Option<&mut T> {
        Arc::get_mut(&mut self.gate.0).map(|inner| inner.value.get_mut())
    }

    /// How many guest slots the fortress has: 0 for [`Fortress::new`]'s single state
    /// word.
    pub fn shards(&self) -> usize {
        self.gate.shard_count()
    }

    /// A guard of this fortress.
    pub fn guard(&self) -> Guard<T> {
        Guard {
            gate: self.gate.clone(),
        }
    }

    /// A guest of this fortress.
    pub fn guest(&self) -> Guest<T> {
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
pub(crate) struct Opener<T>(Arc<Inner<T>>);

impl<T> Opener<T> {
    fn new(inner: &Arc<Inner<T>>) -> Opener<T> {
        inner.add_opener();
        Opener(Arc::clone(inner))
    }
}

impl<T> Clone for Opener<T> {
    fn clone(&self) -> Opener<T> {
        Opener::new(&self.0)
    }
}

impl<T> Drop for Opener<T> {
    fn drop(&mut self) {
        self.0.drop_opener();
    }
}

impl<T> core::ops::Deref for Opener<T> {
    type Target = Arc<Inner<T>>;

    fn deref(&self) -> &Arc<Inner<T>> {
        &self.0
    }
}

impl Default for Fortress {
    fn default() -> Fortress {
        Fortress::new()
    }
}

// Clones share the fortress: no `T: Clone` needed, as for `Arc`.
impl<T> Clone for Fortress<T> {
    fn clone(&self) -> Fortress<T> {
        Fortress {
            gate: self.gate.clone(),
        }
    }
}

impl<T> Clone for Guard<T> {
    fn clone(&self) -> Guard<T> {
        Guard {
            gate: self.gate.clone(),
        }
    }
}

impl<T> Clone for Guest<T> {
    fn clone(&self) -> Guest<T> {
        Guest {
            gate: Arc::clone(&self.gate),
        }
    }
}

impl<T: Send + Sync + 'static> Worker for Fortress<T> {
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

impl<T> Guard<T> {
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

impl<T> Guest<T> {
    /// Waits until the fortress is unlocked, then runs `f` as a visit and returns its
    /// value. The closure's own errors travel inside `R`. (To read the value the
    /// fortress holds, see [`Guest::read`].)
    ///
    /// If `f` panics, the visit ends during unwinding (a waiting lockdown completes)
    /// and the panic propagates; nothing is poisoned.
    ///
    /// # Errors
    /// * [`Error::Aborted`] if it had to wait and `abort` fired first; `f` never ran.
    /// * [`Error::Shutdown`] if the fortress is, or while waiting gets, killed.
    #[inline(always)]
    pub fn visit<R>(&self, f: impl FnOnce() -> R, abort: &Abort) -> Result<R, Error> {
        let _visit = self.enter(abort)?;
        Ok(f())
    }

    /// As [`Guest::visit`], with the value the fortress holds: `f` reads it, inside the
    /// visit, and its result is returned. The reference cannot leave `f`.
    ///
    /// # Errors
    /// As [`Guest::visit`]; `f` never ran then.
    ///
    /// ```
    /// use fortress_gate::{Abort, Fortress};
    ///
    /// let fortress = Fortress::holding(String::from("/var/lib/juju/charm"));
    /// fortress.guard().unlock()?;
    /// let len = fortress.guest().read(|path| path.len(), &Abort::never())?;
    /// assert_eq!(len, 19);
    /// # Ok::<(), fortress_gate::Error>(())
    /// ```
    #[inline(always)]
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R, abort: &Abort) -> Result<R, Error> {
        let visit = self.enter(abort)?;
        Ok(f(&visit))
    }

    /// Waits until the fortress is unlocked, then starts a visit that lasts until the
    /// returned [`Visit`] is dropped; the visit derefs to the value.
    ///
    /// # Errors
    /// As [`Guest::visit`].
    #[must_use = "the visit ends as soon as the returned value is dropped"]
    #[inline(always)]
    pub fn enter(&self, abort: &Abort) -> Result<Visit<'_, T>, Error> {
        let ticket = self.gate.enter(abort)?;
        Ok(Visit::new(&self.gate, ticket))
    }

    /// As [`Guest::enter`], but the visit owns a handle to the fortress, so it can
    /// outlive this `Guest`.
    ///
    /// # Errors
    /// As [`Guest::visit`].
    #[must_use = "the visit ends as soon as the returned value is dropped"]
    pub fn enter_owned(&self, abort: &Abort) -> Result<OwnedVisit<T>, Error> {
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
    pub fn try_enter(&self) -> Option<Visit<'_, T>> {
        self.gate
            .try_enter()
            .map(|ticket| Visit::new(&self.gate, ticket))
    }
}

macro_rules! debug_as_state {
    ($($handle:ident),*) => {$(
        // The state only: no `T: Debug` needed.
        impl<T> fmt::Debug for $handle<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($handle)).field(&self.gate.snapshot()).finish()
            }
        }
    )*};
}
debug_as_state!(Fortress, Guard, Guest);
