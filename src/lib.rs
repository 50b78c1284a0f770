//! A fortress: an abortable reader/writer gate.
//!
//! A fortress protects a shared resource, such as a configuration that one party
//! replaces while others read it, or a directory of files. It can hold the resource
//! itself, as a value of any type (see [The value](#the-value)), or stand in front of
//! one that lives elsewhere. It has two kinds of handle:
//!
//! * a [`Guard`] opens the gate with [`Guard::unlock`] and closes it with
//!   [`Guard::lockdown`]. A lockdown closes the gate **at once**, so no new visit
//!   starts, and then waits until the visits already inside have finished. When it
//!   returns `Ok`, the guard has the resource to itself until it unlocks again.
//!   [`Guard::exclusive`] does the same and unlocks when its [`Exclusive`] is dropped;
//! * a [`Guest`] visits while the gate is open, concurrently with other guests:
//!   [`Guest::visit`] runs a closure inside a visit, [`Guest::read`] runs one that
//!   reads the value, [`Guest::enter`] and [`Guest::enter_owned`] return a [`Visit`]
//!   or an [`OwnedVisit`] that ends the visit when dropped, and [`Guest::try_enter`]
//!   never waits. A long visit can ask [`Visit::lockdown_pending`] (or
//!   [`OwnedVisit::lockdown_pending`]) whether a guard is waiting for it.
//!
//! A [`Fortress`] ([`Fortress::new`], locked at first) hands out both
//! ([`Fortress::guard`], [`Fortress::guest`]); all handles are cheap clones of one
//! shared fortress and can move between threads. [`Fortress::is_locked`] and
//! [`Fortress::guests`] take snapshots of its state. [`Fortress::sharded`] and
//! [`Fortress::with_shards`] make a fortress that spreads its guests over several
//! slots ([`Fortress::shards`]), for many guests on many cores and rare lockdowns;
//! the handles and the rules are the same.
//!
//! Every call that may wait takes an [`Abort`] token. Firing the token
//! ([`Abort::abort`]) cuts those waits short with [`Error::Aborted`]. A token can also
//! fire by itself: at a deadline ([`Abort::after`], [`Abort::at`],
//! [`Abort::with_deadline`]; [`Abort::deadline`] tells the earliest that applies),
//! when its parent fires ([`Abort::child`]), or when a future completes
//! ([`Abort::from_future`]).
//! [`Abort::never`] never fires, and [`Abort::new`] makes one that fires only when
//! told to; [`Abort::is_aborted`] tells whether it has fired.
//!
//! A fortress is also a [`Worker`], as juju's dependency engine has them:
//! [`Worker::kill`] shuts it down for good, and every waiting and later call answers
//! [`Error::Shutdown`]; [`Worker::wait`] returns once it is killed and the last visit
//! has left (never before the kill, however empty the fortress). [`occupy`] starts a
//! worker inside a visit that lasts for the worker's whole life ([`Occupied`],
//! [`Occupied::is_visiting`], [`OccupyError`]), and
//! [`manifold`] returns a [`Manifold`] that starts fortresses ([`Manifold::start`])
//! and hands out their guards and guests ([`Manifold::output`]). Errors are [`Error`]
//! values; [`is_fortress_error`] finds one in the source chain of any error, such as
//! a [`BoxError`] from a worker.
//!
//! # The value
//!
//! A fortress holds what it guards. [`Fortress::holding`] makes a `Fortress<T>` that
//! keeps a value of type `T`: visits read it as `&T` and the exclusive phases of
//! guards write it as `&mut T`, never both at once. [`Fortress::holding_with`] also
//! picks how guests are kept, a [`Layout`] ([`Layout::Word`], [`Layout::Sharded`],
//! [`Layout::Shards`], and with the `read-mostly` feature `Layout::ReadMostly`, whose
//! visits make no read-modify-write at all), which [`Fortress::layout`] tells; the
//! guide's [Choosing a layout](guide#choosing-a-layout) compares them. A [`Visit`] and an
//! [`OwnedVisit`] deref to `&T` and [`Guest::read`] lends `&T` to a closure; an
//! [`Exclusive`] and an [`OwnedExclusive`] deref to `&mut T`.
//! [`Fortress::try_into_inner`] takes the value out and [`Fortress::get_mut`] lends
//! it mutably, both only when no other handle or visit exists. The constructors that
//! take no value ([`Fortress::new`], [`Fortress::sharded`], [`Fortress::with_shards`],
//! `Default`) make a `Fortress<()>`, which guards something outside it (files, a
//! device, another process's view of the world); [`occupy`] takes the guest of one,
//! and [`manifold`] starts them.
//!
//! ```
//! use fortress_gate::{Abort, Fortress};
//!
//! let fortress = Fortress::holding(String::from("release 1"));
//! let (guard, guest) = (fortress.guard(), fortress.guest());
//! guard.unlock()?;
//! assert_eq!(*guest.enter(&Abort::never())?, "release 1"); // a visit derefs to &T
//!
//! let next = String::from("release 2"); // built aside, while the readers go on
//! *guard.exclusive(&Abort::never())? = next; // no visit inside while it is written
//! assert_eq!(guest.read(|release| release.len(), &Abort::never())?, 9);
//! drop((guard, guest));
//! assert_eq!(fortress.try_into_inner().unwrap(), "release 2"); // the last handle
//! # Ok::<(), fortress_gate::Error>(())
//! ```
//!
//! Nothing is poisoned: an [`Exclusive`] dropped by `?` or a panic ends the phase,
//! and what it wrote stays written. So build a new value aside and assign it in one
//! step, as above, when a change must be all or nothing (the [guide](crate::guide)
//! shows it). The value lives as long as the last handle or visit, after a kill too,
//! and is dropped once, on the thread that drops the last of them; a value that holds
//! a handle of its own fortress makes a cycle and is never dropped. The handles are
//! `Send` and `Sync` when `T` is `Send + Sync`, as `Arc<RwLock<T>>` is; the details
//! are on [`Fortress`].
//!
//! # Example
//!
//! ```
//! use fortress_gate::{Abort, Error, Fortress, Worker};
//! use std::{thread, time::Duration};
//!
//! let fortress = Fortress::new(); // a new fortress is locked; it holds `()`
//! let guard = fortress.guard();
//! let guest = fortress.guest();
//!
//! guard.unlock()?;
//! // While the gate is open, guests visit, as many at once as there are.
//! assert_eq!(guest.visit(|| 40 + 2, &Abort::never())?, 42);
//!
//! // A visit on another thread. The lockdown closes the gate at once, then waits
//! // until that visit has ended.
//! let visit = guest.enter_owned(&Abort::never())?;
//! let reader = thread::spawn(move || {
//!     thread::sleep(Duration::from_millis(10)); // reads the resource
//!     drop(visit);
//! });
//! guard.lockdown(&Abort::never())?;
//! assert_eq!(fortress.guests(), 0); // the resource is the guard's now
//! guard.unlock()?;
//! reader.join().unwrap();
//!
//! // An aborted lockdown gives up waiting, but the gate stays closed.
//! let visit = guest.enter(&Abort::never())?;
//! let abort = Abort::new();
//! abort.abort();
//! assert_eq!(guard.lockdown(&abort), Err(Error::Aborted));
//! assert!(guest.try_enter().is_none());
//! drop(visit);
//!
//! // Killing it answers every waiting and later call with `Shutdown`.
//! fortress.kill();
//! assert_eq!(guest.visit(|| (), &Abort::never()), Err(Error::Shutdown));
//! fortress.wait()?; // killed, and no visit inside
//! # Ok::<(), fortress_gate::BoxError>(())
//! ```
//!
//! # The rules
//!
//! * **An abort only cuts a wait short.** A call that can finish without waiting
//!   finishes, even if its token fired long ago: a visit to an open fortress runs, a
//!   lockdown of a fortress with no visit inside succeeds.
//! * **An aborted lockdown still locks.** A lockdown closes the gate before it waits,
//!   and an abort does not undo that: the lockdown returns [`Error::Aborted`], the
//!   visits inside go on, new visits wait, and the gate stays closed until a guard
//!   unlocks it. A scoped lockdown ([`Guard::exclusive`] and its owned and async
//!   forms) is the exception: when it gives up, it backs out (see below).
//! * **Repeating a call changes nothing.** `unlock` on an open fortress, `lockdown` on
//!   a closed and empty one, a second `kill`, a second `abort`: each returns at once
//!   and leaves the state as it was.
//! * **Shutdown is permanent, and wakes every waiter.** After `kill`, every waiting
//!   visit, entry and lockdown wakes and returns [`Error::Shutdown`], and so does every
//!   later call, `unlock` included; `try_enter` returns `None`. Visits already inside
//!   go on, and `wait` returns when the last of them has left. `kill` leaves the lock
//!   state alone, so [`Fortress::is_locked`] still tells what the last guard did.
//! * **Several guards may act at once; the last operation decides.** That is
//!   memory-safe and never deadlocks. A lockdown that returns `Ok` guarantees that at
//!   some instant during the call the fortress was locked with no visit inside; if
//!   another guard unlocks while it waits, it keeps waiting. The one exception is an
//!   exclusive phase ([`Guard::exclusive`] and its forms): while it lives, no guard
//!   operation lets a visit in, and an `unlock` takes effect when the phase ends.
//! * **A panic ends the visit or the phase, and nothing is poisoned.** If the closure
//!   of a visit panics, or a thread unwinds while it holds a [`Visit`], the visit ends
//!   during the unwinding (so a waiting lockdown completes) and the panic goes on. An
//!   [`Exclusive`] dropped by a panic (or by `?`) ends its phase and unlocks, and
//!   whatever it wrote to the value stays: later visits see it, with no error to warn
//!   them.
//! * **Re-entering deadlocks, as with any reader-writer lock.** A visit that locks
//!   down its own fortress, or visits it again while a lockdown is waiting, waits
//!   forever (or until its abort fires).
//! * **Guards go first.** Once a lockdown has closed the gate, no new visit starts
//!   until the next unlock, however many guests keep arriving: a lockdown is never
//!   starved.
//! * **Which answer comes is fixed.** When a call could fail for both reasons,
//!   [`Error::Shutdown`] wins over [`Error::Aborted`]; and a call that did not need to
//!   wait never answers [`Error::Aborted`], however long ago its token fired.
//! * **Too many visits abort the process.** More visits at once than the state word
//!   can count (2^29; only reachable by leaking visits with [`core::mem::forget`])
//!   abort the process with a message, as [`Arc`](std::sync::Arc) does when its
//!   reference count overflows. A forgotten visit stays open for good. (A read-mostly
//!   fortress counts visits in 64-bit counters per thread and has no such limit; its
//!   [`Fortress::guests`] then says at most 2^29.)
//!
//! # When to pick it over `RwLock`
//!
//! * **The lock can be a state, not a borrow.** `lockdown` and `unlock` are separate
//!   calls that may happen in different functions or on different threads; no lock
//!   guard has to live across the exclusive phase. A `Fortress<()>` guards something
//!   outside it (files, a device, another process's view of the world) that way; a
//!   `Fortress<T>` also holds its value, written only through an [`Exclusive`].
//! * **Waits can be abandoned.** Every wait takes an [`Abort`], and one token can cut
//!   short waits on many fortresses at once. An aborted [`Guard::lockdown`] keeps the
//!   gate closed, so no new visit slips in while the caller decides what to do; an
//!   aborted [`Guard::exclusive`] backs out and reopens the gate it shut.
//! * **Shutdown is built in.** [`Worker::kill`] wakes every waiter with
//!   [`Error::Shutdown`], and [`Worker::wait`] returns once the fortress is killed and
//!   the last visit has left (it waits for the kill too, not only for an empty
//!   fortress).
//! * **Guards are never starved** by a stream of guests.
//!
//! If what you need is a scoped read/write lock around some data, with no abort,
//! deadline or shutdown, use [`std::sync::RwLock`]: it is the simpler tool. The
//! [guide](crate::guide) compares the two, and `ArcSwap`, in more detail.
//!
//! # A lockdown that unlocks by itself
//!
//! [`Guard::exclusive`] locks down as [`Guard::lockdown`] does and returns an
//! [`Exclusive`]; dropping it unlocks the fortress, so the exclusive phase ends on
//! every way out of a scope, an early `return` or `?` included. Its errors are those
//! of `lockdown`, but not what an aborted call leaves behind: a scoped lockdown that
//! gives up **backs out**. If its own close shut an open gate, and no other guard
//! operation (a lockdown, a scoped lockdown, an unlock, a kill) came since, it
//! reopens the gate; otherwise the state is that later operation's, and a gate that
//! was closed already when it came stays closed. The same holds for
//! [`Guard::exclusive_owned`] and for the async forms, whose future also backs out
//! when it is dropped while it waits. A plain [`Guard::lockdown`] never backs out.
//!
//! ```
//! use fortress_gate::{Abort, BoxError, Error, Fortress};
//!
//! let fortress = Fortress::new();
//! let guard = fortress.guard();
//! guard.unlock()?;
//! let replace = || -> Result<(), BoxError> {
//!     let _exclusive = guard.exclusive(&Abort::never())?;
//!     let _version: u32 = "not a number".parse()?; // fails: returns early
//!     Ok(())
//! };
//! assert!(replace().is_err());
//! assert!(!fortress.is_locked(), "unlocked on the way out");
//!
//! // With a visit inside it must wait; aborted, it reopens the gate it shut.
//! let visit = fortress.guest().enter_owned(&Abort::never())?;
//! let fired = Abort::new();
//! fired.abort();
//! assert_eq!(guard.exclusive(&fired).err(), Some(Error::Aborted));
//! assert!(!fortress.is_locked(), "it backed out");
//! drop(visit);
//! # Ok::<(), BoxError>(())
//! ```
//!
//! # Async
//!
//! With the `async` feature, the waits also exist as futures that any executor can
//! run (the crate depends on no runtime):
#![cfg_attr(
    feature = "async",
    doc = "[`Guest::enter_async`], [`Guest::enter_owned_async`], [`Guest::visit_async`],",
    doc = "[`Guard::lockdown_async`], [`Guard::exclusive_async`],",
    doc = "[`Guard::exclusive_owned_async`] and [`Fortress::wait_async`]."
)]
#![cfg_attr(
    not(feature = "async"),
    doc = "`Guest::enter_async`, `Guest::enter_owned_async`, `Guest::visit_async`,",
    doc = "`Guard::lockdown_async`, `Guard::exclusive_async`,",
    doc = "`Guard::exclusive_owned_async` and `Fortress::wait_async`."
)]
//! The exclusive futures back out as [`Guard::exclusive`] does, also when they are
//! dropped while they wait; a `lockdown_async` future dropped after its first poll
//! leaves the gate closed, as an aborted lockdown does. [`Abort::aborted`], with or
//! without the feature, is a future that completes once its token has fired, for
//! racing a loop against a token.
//!
//! An async entry on an open fortress is not always ready at its first poll: async
//! entries spend a cooperative budget, so that a task that keeps entering gives its
//! thread back to the executor now and then. After 128 entries on a thread, the next
//! first poll wakes its own task and returns `Pending` (and, for a short streak, the
//! entries of other tasks on the thread too), so a task alone on its thread sees one
//! first poll in 129 `Pending` (with the `tokio` feature, tokio's own budget decides
//! instead). [`Guest::try_enter`] is the attempt that never waits and
//! never yields. The [guide](crate::guide) tells what each future leaves behind when
//! dropped, and more of the budget.
//!
//! # Threads of the crate, and where your code runs
//!
//! The crate starts at most two threads, each once per process, on first use, living
//! as long as the process and asleep while it has nothing to do:
//!
//! * the **timer** (`fortress-gate-timer`), started by the first wait on a token with a
//!   deadline; it fires tokens whose deadline has passed;
//! * the **source thread** (`fortress-gate-sources`), started by the first
//!   [`Abort::from_future`]; it polls those futures.
//!
//! The crate calls code it does not control: task wakers (`wake`, `clone`, `drop`),
//! the futures of [`Abort::from_future`], a worker's `kill` and `wait` in
//! [`occupy`], and the value's `Drop` (once, on the thread that drops the last handle
//! or visit). It never calls them while it holds a lock of its own, and only once the
//! state change that caused the call is complete, so a waker may re-enter any fortress
//! or token.
//!
//! Task wakers are woken on the thread of the operation that wakes them, on the
//! timer, or on the source thread. These operations may run them:
//!
//! * [`Guard::unlock`] (and so the drop of an [`Exclusive`] or [`OwnedExclusive`]),
//!   which wakes the tasks waiting at the gate;
//! * the **back-out** of a scoped lockdown that gives up: an aborted
//!   [`Guard::exclusive`] or [`Guard::exclusive_owned`], or an exclusive future that
//!   is aborted (on the thread that polls it) or dropped while it waits (on the thread
//!   that drops it); it wakes the tasks waiting at the gate it reopens;
//! * the **close of an empty gate**: a [`Guard::lockdown`], a [`Guard::exclusive`] or
//!   the first poll of their async forms, when it finds nobody inside while the
//!   lockdown of another guard still waits (because a guard unlocked under it and the
//!   visits then left); it wakes that lockdown;
//! * the **guest that leaves last**: the end of a visit (the drop of a [`Visit`] or
//!   [`OwnedVisit`], the end of [`Guest::visit`]), or an entry that bounces off a
//!   closed gate ([`Guest::enter`], [`Guest::try_enter`], the poll of an async
//!   entry), when a lockdown waits for the drain or, after a kill, a wait for the end;
//! * [`Worker::kill`], and the kill made by the drop of the **last opener**: the last
//!   [`Fortress`] or [`Guard`] handle dropped while the gate is closed (see the
//!   guide); it wakes the entries and lockdowns that wait, and the waits for the end
//!   if no visit is inside;
//! * firing a token: [`Abort::abort`] on its caller's thread, the timer at a
//!   deadline, the source thread when a `from_future` source completes; it wakes the
//!   waits that use the token or one of its children.
//!
//! A future clones its task's waker when it stores it, and drops the one it replaces,
//! in its own `poll`; a future dropped while it waits drops its stored waker where it
//! is dropped. `from_future` sources are polled only on the source thread, and dropped
//! there once complete, or, when the last clone of their token goes first, on the
//! thread that drops it; `start`, `kill` and `wait` of an occupying worker run on the
//! caller of [`occupy`] and [`Worker::wait`].
//!
//! A waker or source that panics hurts nobody else: the panic hook reports it, the
//! panic goes no further (wakes often happen inside destructors, where a second panic
//! would abort the process), every other waiter is still woken and the operation
//! completes; a source that panics counts as completed. A waker whose `clone` panics
//! while a future stores it makes that `poll` panic, and that waker is not stored (one
//! that an earlier poll stored stays). What the future registered before the clone
//! stays registered, as for any pending future: a fortress wait's registration with
//! its abort token lasts until the future completes or is dropped (and a token with
//! a deadline stays in the timer until it fires or its last clone is dropped).
//!
//! # Platforms
//!
//! The waits sleep in the operating system's futex or its equivalent, through the
//! `atomic-wait` crate, so the crate builds where that crate does: Linux, Android,
//! FreeBSD, macOS, iOS, watchOS and Windows. On any other target the build fails
//! with an error that names them.
//!
//! With the `read-mostly` feature, `Layout::ReadMostly` uses Linux's `membarrier`
//! (through rustix) for its guards' barrier; elsewhere, and where the kernel refuses
//! it, such a fortress keeps its guests on the state word, as [`Layout::Word`] does
//! (`read_mostly_barrier()` tells which).
//!
//! The minimum supported Rust version is 1.86.
#![warn(missing_docs, missing_debug_implementations)]
// No unsafe code in the crate but in `value.rs`, the module that owns the value's
// `UnsafeCell` (the loom models' test resource is a `Value` too). The read-mostly
// layout's system call goes through rustix's safe `membarrier`.
#![deny(unsafe_code)]

// The waits sleep through `atomic-wait`: keep this list equal to the targets its
// `src/lib.rs` has a `platform` module for (atomic-wait 1.1: these seven).
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "macos",
    target_os = "ios",
    target_os = "watchos",
    windows
)))]
compile_error!(
    "fortress-gate supports only the targets of its futex backend, the `atomic-wait` \
     crate: Linux, Android, FreeBSD, macOS, iOS, watchOS and Windows. This target is \
     none of them."
);

mod abort;
#[cfg(feature = "async")]
mod coop;
mod error;
mod exclusive;
mod fortress;
#[cfg(feature = "async")]
mod futures;
mod gate;
mod manifold;
mod notify;
mod occupy;
#[cfg(feature = "read-mostly")]
mod read_mostly;
mod shards;
mod slab;
mod state;
mod sync;
mod user;
mod value;
mod visit;
mod worker;

// The loom models and shuttle scenarios: unit tests compiled only in a model build.
#[cfg(all(test, any(loom, shuttle)))]
mod models;

pub use abort::Abort;
pub use error::{is_fortress_error, BoxError, Error};
pub use exclusive::{Exclusive, OwnedExclusive};
pub use fortress::{Fortress, Guard, Guest, Layout};
pub use manifold::{manifold, Manifold};
pub use occupy::{occupy, Occupied, OccupyError};
#[cfg(feature = "read-mostly")]
pub use read_mostly::barrier::read_mostly_barrier;
pub use visit::{OwnedVisit, Visit};
pub use worker::Worker;

// The user guide: documentation only, no code.
#[doc = include_str!("guide.md")]
pub mod guide {}

/// The pure state-word type, for the fuzz targets and model tests. Not a stable API.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    pub use crate::state::*;

    /// The fortress's state word right now.
    pub fn snapshot<T>(fortress: &crate::Fortress<T>) -> State {
        fortress.snapshot()
    }

    /// How many deadlines the shared timer holds right now (for leak checks).
    pub fn timer_entries() -> usize {
        crate::abort::timer::pending()
    }

    /// The fortress's task sets, summed over its notifiers: `(entries, keys)`, the
    /// wakers stored now and the most that were ever stored at once (for leak checks).
    pub fn task_slots<T>(fortress: &crate::Fortress<T>) -> (usize, usize) {
        fortress.gate.task_slots()
    }

    /// How many per-thread slots a read-mostly fortress has handed out (0 for the
    /// other layouts, and for one that fell back to the word).
    #[cfg(feature = "read-mostly")]
    pub fn reader_slots<T>(fortress: &crate::Fortress<T>) -> usize {
        fortress.gate.reader_slots()
    }

    /// The token's links: `(waits, children)` registered with it right now.
    pub fn links(abort: &crate::Abort) -> (usize, usize) {
        abort.links()
    }
}
