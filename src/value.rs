//! The value a fortress holds, in an `UnsafeCell`: the only module of the crate that
//! may use `unsafe`.
//!
//! The gate decides who may touch the value; this module only turns that decision
//! into references. A [`Shared`] token is made when a visit has begun (the gate counts
//! it) and released before the visit leaves; a [`Unique`] token is made when a scoped
//! lockdown has taken the gate for its phase (the owner mark is set) and released
//! before the phase ends. The gate's rule that makes them exclusive of each other:
//!
//! * a phase is claimed only by the read-modify-write that finds the gate closed and
//!   no visit counted (`State::claimed`), and while the owner mark is set the gate is
//!   closed and no guard operation opens it, so no visit begins until the phase's
//!   drop clears the mark (`State::unlocked`, `State::phase_ended`);
//! * at most one phase holds the gate: a claim needs the mark clear.
//!
//! Every such read-modify-write is an Acquire or Release pair with the one before it
//! (commented at each in `gate.rs`), so every access in a visit happens before the
//! phase that follows, and every access in a phase before the visits after it.
//!
//! Under loom the cell is loom's, and each token keeps loom's access guard for as long
//! as it lives, so a model fails if a visit's reading overlaps a phase's writing.
//!
//! The loom models' test resource (`Resource` in `models/loom_core.rs`, compiled only
//! under `cfg(all(test, loom))`) is a `Value` too, and takes its tokens with no gate's
//! leave: there the models' use of the fortress is what orders them, and it is the
//! claim under test. Its tokens carry loom's access guards, and loom fails the model in
//! `share` or `unique` when a token would conflict with a live one (or with one not
//! ordered before it), before any reference is made from it.

#![allow(unsafe_code)]

use core::marker::PhantomData;

#[cfg(not(all(test, loom)))]
use core::cell::UnsafeCell;
#[cfg(all(test, loom))]
use loom::cell::UnsafeCell;

/// The value of a fortress.
pub(crate) struct Value<T> {
    cell: UnsafeCell<T>,
}

// SAFETY: `&Value<T>` hands out `&T` on many threads at once (visits), which needs
// `T: Sync`, and `&mut T` on one thread at a time, maybe another than the one that
// made the value (phases), which needs `T: Send`: as `RwLock<T>`'s `Sync`.
unsafe impl<T: Send + Sync> Sync for Value<T> {}

// SAFETY: through `&Visit<T>` (and `&OwnedVisit<T>`, `&Exclusive<T>`) another thread
// can only read the value (`Deref`) and the state word; it cannot reach a handle, end
// the visit or the phase, or write. So sharing one needs `T: Sync` only, as std's
// guards. (`OwnedExclusive` hands out its guard, so it keeps the handles' bounds.)
unsafe impl<T: Sync> Sync for crate::visit::Visit<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for crate::visit::OwnedVisit<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for crate::exclusive::Exclusive<'_, T> {}

/// Leave to read the value: held by a visit, from just after it began until just
/// before it leaves.
pub(crate) struct Shared<T> {
    #[cfg(all(test, loom))]
    access: Option<loom::cell::ConstPtr<T>>,
    _value: PhantomData<fn() -> T>,
}

/// Leave to write the value: held by an exclusive phase, from its claim until just
/// before its end.
pub(crate) struct Unique<T> {
    #[cfg(all(test, loom))]
    access: Option<loom::cell::MutPtr<T>>,
    _value: PhantomData<fn() -> T>,
}

// SAFETY: loom's access guards are raw pointers, so not `Send`; the tokens only pass
// them back to the cell they came from, and the references they lead to carry their own
// bounds (the handles' `Send` and `Sync` follow `T`).
#[cfg(all(test, loom))]
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
#[cfg(all(test, loom))]
unsafe impl<T> Sync for Shared<T> {}
// SAFETY: as above.
#[cfg(all(test, loom))]
unsafe impl<T> Send for Unique<T> {}
// SAFETY: as above.
#[cfg(all(test, loom))]
unsafe impl<T> Sync for Unique<T> {}

impl<T> Value<T> {
    pub(crate) fn new(value: T) -> Value<T> {
        Value {
            cell: UnsafeCell::new(value),
        }
    }

    pub(crate) fn into_inner(self) -> T {
        self.cell.into_inner()
    }

    /// The value through a unique borrow of its fortress: nobody else can reach it.
    pub(crate) fn get_mut(&mut self) -> &mut T {
        #[cfg(not(all(test, loom)))]
        return self.cell.get_mut();
        #[cfg(all(test, loom))]
        // SAFETY: `&mut self`: no other reference to the cell exists, and the pointer
        // lives no longer than that borrow.
        return self.cell.with_mut(|value| unsafe { &mut *value });
    }

    /// Leave to read, for a visit that the gate has just admitted (and that releases
    /// it before it leaves). Nothing else may call this, but the loom models'
    /// `Resource` (module docs).
    #[inline]
    pub(crate) fn share(&self) -> Shared<T> {
        Shared {
            #[cfg(all(test, loom))]
            access: Some(self.cell.get()),
            _value: PhantomData,
        }
    }

    /// Leave to write, for a scoped lockdown that has just claimed the gate for its
    /// phase (and that releases it before the phase ends). Nothing else may call this,
    /// but the loom models' `Resource` (module docs).
    #[inline]
    pub(crate) fn unique(&self) -> Unique<T> {
        Unique {
            #[cfg(all(test, loom))]
            access: Some(self.cell.get_mut()),
            _value: PhantomData,
        }
    }

    /// The value, for as long as `leave` is held.
    #[inline]
    pub(crate) fn get<'a>(&'a self, leave: &'a Shared<T>) -> &'a T {
        let value = self.pointer(leave);
        // SAFETY: a `Shared` token lives only inside a visit that the gate counts, and
        // while a visit is counted no phase holds the gate (module docs), so no `&mut T`
        // exists; the reference lives no longer than the token. (The loom models'
        // `Resource` is no visit: there loom's guard in the token fails the model before
        // a conflicting token exists, module docs.)
        unsafe { &*value }
    }

    /// The value, writable, for as long as `leave` is held.
    #[inline]
    pub(crate) fn get_unique<'a>(&'a self, leave: &'a mut Unique<T>) -> &'a mut T {
        let value = self.pointer(&*leave);
        // SAFETY: a `Unique` token lives only inside the one phase that holds the gate,
        // where no visit is counted and no other token exists (module docs); the
        // reference lives no longer than the exclusive borrow of the token. (The loom
        // models' `Resource` is no phase: there loom's guard in the token fails the
        // model before a conflicting token exists, module docs.)
        unsafe { &mut *value }
    }

    /// The value, read-only, for as long as `leave` is held.
    #[inline]
    pub(crate) fn get_shared_in_phase<'a>(&'a self, leave: &'a Unique<T>) -> &'a T {
        let value = self.pointer(leave);
        // SAFETY: as `get_unique`; this shared reborrow lives no longer than the shared
        // borrow of the token, so no `&mut T` from it exists meanwhile.
        unsafe { &*value }
    }

    /// The cell's pointer, taken through a token. Under loom, through the token's
    /// access guard, so that loom checks the access it stands for.
    #[inline(always)]
    fn pointer(&self, leave: &impl Leave<T>) -> *mut T {
        #[cfg(not(all(test, loom)))]
        {
            let _ = leave;
            self.cell.get()
        }
        #[cfg(all(test, loom))]
        leave.pointer()
    }
}

/// A token that leads to the value: [`Shared`] or [`Unique`].
trait Leave<T> {
    /// Under loom, the pointer from the token's access guard.
    #[cfg(all(test, loom))]
    fn pointer(&self) -> *mut T;
}

impl<T> Leave<T> for Shared<T> {
    #[cfg(all(test, loom))]
    fn pointer(&self) -> *mut T {
        let access = self.access.as_ref().expect("read after release");
        access.with(|value| value.cast_mut())
    }
}

impl<T> Leave<T> for Unique<T> {
    #[cfg(all(test, loom))]
    fn pointer(&self) -> *mut T {
        let access = self.access.as_ref().expect("written after release");
        access.with(|value| value)
    }
}

impl<T> Shared<T> {
    /// Gives the leave back: the visit is about to leave.
    #[inline]
    pub(crate) fn release(&mut self) {
        #[cfg(all(test, loom))]
        drop(self.access.take());
    }
}

impl<T> Unique<T> {
    /// Gives the leave back: the phase is about to end.
    #[inline]
    pub(crate) fn release(&mut self) {
        #[cfg(all(test, loom))]
        drop(self.access.take());
    }
}
