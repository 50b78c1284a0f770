//! The one place that names the synchronisation primitives: std's in a normal build,
//! loom's when the crate's unit tests run under `--cfg loom`, shuttle's when they run
//! under `--cfg shuttle` (loom's if both are set). A crate that depends on this one
//! and sets either cfg for its own tests still gets std's. The futex stand-in lives
//! with the notifier (`notify.rs`).
//!
//! The rest of the crate is the same code under all three. A *model build* is either
//! checker's: `cfg(all(test, any(loom, shuttle)))`. There no thread of the crate's runs
//! in the background (the deadline timer and the source thread are played by the
//! models), the clock is a model clock, and waits never spin.

#[cfg(not(all(test, any(loom, shuttle))))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8},
    Arc, Mutex, MutexGuard,
};

#[cfg(all(test, loom))]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8},
    Arc, Mutex, MutexGuard,
};

#[cfg(all(test, shuttle, not(loom)))]
pub(crate) use shuttle::sync::{
    atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8},
    Arc, Mutex, MutexGuard,
};

/// The model checker's statics (`lazy_static!` syntax, one value per execution) and
/// thread locals (one value per model thread or task).
#[cfg(all(test, loom))]
pub(crate) use loom::{
    lazy_static as model_static, sync::atomic::AtomicUsize as ModelAtomicUsize,
    thread_local as model_thread_local,
};
#[cfg(all(test, shuttle, not(loom)))]
pub(crate) use shuttle::{
    lazy_static as model_static, sync::atomic::AtomicUsize as ModelAtomicUsize,
    thread_local as model_thread_local,
};

pub(crate) use core::sync::atomic::Ordering;
pub(crate) use std::time::Instant;

/// A 32-bit number that differs between threads: which slot of a sharded fortress this
/// thread uses (`Shards::ticket`). Handed out at a thread's first visit, consecutive
/// threads spread evenly over the range; no system call.
#[inline]
pub(crate) fn shard_hint() -> usize {
    #[cfg(not(all(test, any(loom, shuttle))))]
    std::thread_local!(static HINT: core::cell::Cell<usize> = const { core::cell::Cell::new(usize::MAX) });
    #[cfg(all(test, any(loom, shuttle)))]
    model_thread_local!(static HINT: core::cell::Cell<usize> = core::cell::Cell::new(usize::MAX));
    HINT.with(|hint| {
        if hint.get() == usize::MAX {
            hint.set(next_hint());
        }
        hint.get()
    })
}

#[cold]
fn next_hint() -> usize {
    #[cfg(not(all(test, any(loom, shuttle))))]
    static NEXT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
    #[cfg(all(test, any(loom, shuttle)))]
    model_static! {
        static ref NEXT: ModelAtomicUsize = ModelAtomicUsize::new(0);
    }
    // Relaxed: only spreads threads over slots; any value is correct.
    let n = NEXT.fetch_add(1, Ordering::Relaxed) as u32;
    // Spread over 32 bits (Fibonacci hashing), so `Shards::ticket` maps any slot count
    // with a multiply and a shift: consecutive threads land far apart.
    n.wrapping_mul(0x9E37_79B9) as usize
}

/// The clock that deadlines are read from. In a model build it is a model clock that
/// only moves when a model calls `clock::advance`, so a model can pass a deadline.
#[cfg(not(all(test, any(loom, shuttle))))]
#[inline]
pub(crate) fn now() -> Instant {
    Instant::now()
}

#[cfg(all(test, any(loom, shuttle)))]
pub(crate) use clock::now;

#[cfg(all(test, any(loom, shuttle)))]
pub(crate) mod clock {
    use super::{AtomicU64, Instant, Ordering::SeqCst};
    use std::time::Duration;

    super::model_static! {
        /// Nanoseconds the model clock has moved in this execution.
        static ref ELAPSED: AtomicU64 = AtomicU64::new(0);
    }

    fn base() -> Instant {
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *BASE.get_or_init(Instant::now)
    }

    pub(crate) fn now() -> Instant {
        base() + Duration::from_nanos(ELAPSED.load(SeqCst))
    }

    /// Moves the model clock forward.
    pub(crate) fn advance(by: Duration) {
        ELAPSED.fetch_add(by.as_nanos() as u64, SeqCst);
    }
}

/// Locks a mutex, ignoring poisoning: every critical section in this crate leaves its
/// data consistent even if it unwinds.
#[inline]
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A short, bounded spin before sleeping: a visit or a lockdown that ends within a few
/// microseconds is caught without a system call. In a model build it never spins.
pub(crate) struct Spin {
    #[cfg(not(all(test, any(loom, shuttle))))]
    backoff: crossbeam_utils::Backoff,
    #[cfg(not(all(test, any(loom, shuttle))))]
    rounds: u32,
}

impl Spin {
    /// `Backoff::spin` doubles its busy-wait up to 64 pause instructions, so seven
    /// rounds (127 pauses) bound the spin at a few microseconds; it never yields.
    #[cfg(not(all(test, any(loom, shuttle))))]
    const ROUNDS: u32 = 7;

    pub(crate) fn new() -> Spin {
        Spin {
            #[cfg(not(all(test, any(loom, shuttle))))]
            backoff: crossbeam_utils::Backoff::new(),
            #[cfg(not(all(test, any(loom, shuttle))))]
            rounds: 0,
        }
    }

    /// Spins a little longer each time; `false` once the budget is spent.
    #[cfg(not(all(test, any(loom, shuttle))))]
    #[inline]
    pub(crate) fn spin(&mut self) -> bool {
        if self.rounds == Spin::ROUNDS {
            return false;
        }
        self.rounds += 1;
        self.backoff.spin();
        true
    }

    #[cfg(all(test, any(loom, shuttle)))]
    #[inline]
    pub(crate) fn spin(&mut self) -> bool {
        false
    }
}
