//! The heavy barrier of a read-mostly fortress and the light fence that pairs with it.
//!
//! A visit stores its count, then loads the state word; a lockdown stores the word,
//! then loads the counts. Without fences both loads may miss the other side's store
//! (the store-buffering outcome: x86 too keeps a store in its buffer past a later
//! load). A visit issues only a *light* fence, which stops the compiler from moving
//! its load above its store; the guard issues a *heavy* barrier that makes every
//! running thread pass a full fence, so each visit either had its store seen by the
//! guard's later loads or sees the guard's store in its own later load.
//!
//! The heavy barrier is chosen once per process, when the first read-mostly fortress
//! is made:
//!
//! * Linux's `membarrier`, private expedited (registered then), through rustix;
//! * in the checking builds (loom, shuttle, Miri, and the ThreadSanitizer build, which
//!   sets `--cfg fortress_fences`): `fence(SeqCst)` on both sides, which the checkers
//!   understand;
//! * otherwise, or if registration fails, or if the environment variable
//!   `FORTRESS_GATE_READ_MOSTLY` is `fallback`: none, and read-mostly fortresses keep
//!   their guests on the state word as [`Layout::Word`](crate::Layout::Word) does.

use std::sync::OnceLock;

/// Whether this build pairs `fence(SeqCst)` with `fence(SeqCst)` instead of a compiler
/// fence with a system call: every build that a checker runs.
const FENCES: bool = cfg!(any(miri, fortress_fences, all(test, any(loom, shuttle))));

/// The heavy barrier in use (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Barrier {
    /// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`.
    #[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
    Membarrier,
    /// `fence(SeqCst)` on both sides.
    Fences,
}

impl Barrier {
    /// The barrier's name, as `read_mostly_barrier` tells it.
    fn name(self) -> &'static str {
        match self {
            Barrier::Membarrier => "membarrier (private expedited)",
            Barrier::Fences => "fence(SeqCst) on both sides",
        }
    }
}

/// The barrier of this process, chosen at the first call. Never called on a visit.
pub(crate) fn chosen() -> Option<Barrier> {
    static CHOICE: OnceLock<Option<Barrier>> = OnceLock::new();
    *CHOICE.get_or_init(choose)
}

#[cold]
fn choose() -> Option<Barrier> {
    if std::env::var_os("FORTRESS_GATE_READ_MOSTLY").is_some_and(|v| v == "fallback") {
        return None;
    }
    if FENCES {
        return Some(Barrier::Fences);
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if membarrier::register() {
        return Some(Barrier::Membarrier);
    }
    None
}

/// The name of the heavy barrier that read-mostly fortresses use in this process, or
/// `None` if they fall back to [`Layout::Word`](crate::Layout::Word)'s path (no
/// barrier is available here, or `FORTRESS_GATE_READ_MOSTLY=fallback` was set when the
/// first one was made). Chooses it if no read-mostly fortress has yet.
///
/// ```
/// use fortress_gate::{Fortress, Layout};
///
/// let fortress = Fortress::holding_with((), Layout::ReadMostly);
/// let barrier = fortress_gate::read_mostly_barrier();
/// if cfg!(target_os = "linux") && std::env::var_os("FORTRESS_GATE_READ_MOSTLY").is_none() {
///     assert!(barrier.is_some(), "Linux has membarrier");
/// }
/// assert_eq!(fortress.layout(), Layout::ReadMostly, "whichever path it takes");
/// ```
pub fn read_mostly_barrier() -> Option<&'static str> {
    chosen().map(Barrier::name)
}

/// The guard's side: every running thread of the process passes a full fence before
/// this returns. Pairs with every `light` fence. A failure after a successful
/// registration aborts the process: going on without the barrier would let a visit
/// overlap an exclusive phase.
#[cold]
pub(crate) fn heavy(barrier: Barrier) {
    match barrier {
        Barrier::Fences => crate::sync::fence(crate::sync::Ordering::SeqCst),
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Barrier::Membarrier => membarrier::issue(),
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        Barrier::Membarrier => unreachable!("membarrier is only chosen on Linux"),
    }
}

/// The visit's side: keeps the visit's store before its load. With `membarrier` a
/// compiler fence (the system call makes each running thread pass a real one); in the
/// checking builds a real `fence(SeqCst)`.
#[inline(always)]
pub(crate) fn light() {
    if FENCES {
        crate::sync::fence(crate::sync::Ordering::SeqCst);
    } else {
        core::sync::atomic::compiler_fence(crate::sync::Ordering::SeqCst);
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod membarrier {
    use rustix::io::Errno;
    use rustix::thread::{membarrier, membarrier_query, MembarrierCommand as Command};

    /// Registers the process for private expedited barriers: `true` if they work.
    pub(super) fn register() -> bool {
        membarrier_query().contains_command(Command::PrivateExpedited)
            && membarrier(Command::RegisterPrivateExpedited).is_ok()
            && membarrier(Command::PrivateExpedited).is_ok()
    }

    /// One barrier. A child of `fork` is not registered (the registration belongs to
    /// the parent's address space): it registers again, once, and retries.
    pub(super) fn issue() {
        let failed = match membarrier(Command::PrivateExpedited) {
            Ok(()) => return,
            Err(Errno::PERM) => match membarrier(Command::RegisterPrivateExpedited)
                .and_then(|()| membarrier(Command::PrivateExpedited))
            {
                Ok(()) => return,
                Err(e) => e,
            },
            Err(e) => e,
        };
        eprintln!(
            "fortress-gate: membarrier failed after it was registered ({failed}); a \
             read-mostly fortress cannot go on without it, aborting"
        );
        std::process::abort();
    }
}
