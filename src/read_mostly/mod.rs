//! The per-thread counts of a read-mostly fortress ([`Layout::ReadMostly`]): a visit
//! that starts and ends on one thread writes only its thread's own slot and makes no
//! read-modify-write; the guard scans every slot instead.
//!
//! [`Layout::ReadMostly`]: crate::Layout::ReadMostly
//!
//! # The counts
//!
//! Each thread that visits gets a slot of two monotonic counters, entries and exits,
//! which only that thread writes (a load and a store, no read-modify-write). A visit
//! may end on another thread (visits are `Send`), so entries and exits are counted
//! apart, and only their sums over every slot mean something: the guests inside are
//! entries minus exits. When a thread exits, its slot goes back to the fortress with
//! its counts as they are, and the next new thread that visits continues them; so the
//! slots are as many as the threads that were ever alive at once. A visit that starts
//! or ends where its thread's slot is gone (in a thread-local destructor, after ours
//! ran) counts on a shared slot with a read-modify-write. A thread finds its slot by
//! the fortress's id, which is never reused.
//!
//! # The protocol
//!
//! The state word still holds the lock, the shutdown, the waiter flags and the phase,
//! exactly as for the single word; its count holds one *reference* while the counts
//! have not been seen drained since the gate closed, as a sharded fortress's slots do.
//!
//! * A visit stores its entry, passes the light fence, and loads the word: open, it is
//!   in; closed, it counts an exit at once (leaving, below) and waits at the word as
//!   every guest does.
//! * Leaving, a visit stores its exit (Release), passes the light fence, and loads the
//!   word: if a lockdown (or `wait`) flagged itself there, it wakes it to scan again.
//! * A closing pass (lockdown, kill) closes the word and adds the reference in one
//!   read-modify-write, issues the heavy barrier, and scans: exits (Acquire), a fence,
//!   then entries. Exits first, so that every exit it counts has its entry counted
//!   too. Equal sums: nobody is inside, and the reference is dropped (which completes
//!   the drain on the word and wakes its waiters).
//! * A waiter for the drain flags itself in the word, then issues the heavy barrier
//!   and scans again before it sleeps, so a leaver either sees the flag and wakes it
//!   or its exit is in that scan.
//!
//! Every guard operation on the counts (close, scan, reopen, and the claim of a phase)
//! runs under the fortress's pass, a mutex that guests never take, so a scan counts
//! only if no guard operation came between the close and its end. Happens-before for
//! the value comes from release and acquire operations alone (the word's unlock and
//! the visit's Acquire load; the visit's Release exit and the scan's Acquire); the
//! fences only forbid the store-buffering outcomes (`barrier.rs`).

pub(crate) mod barrier;

use crate::sync::{
    fence, lock, AtomicU64, Mutex, MutexGuard,
    Ordering::{Acquire, Relaxed, Release, SeqCst},
};
use barrier::Barrier;
use core::cell::RefCell;
use crossbeam_utils::CachePadded;
use std::sync::{Arc, Weak};

/// One thread's counts for one fortress (or the shared slot's).
struct Slot {
    entries: AtomicU64,
    exits: AtomicU64,
}

type SlotRef = Arc<CachePadded<Slot>>;

/// A thread-owned slot: only its thread writes it, so a count is a load and a store.
impl Slot {
    fn new() -> CachePadded<Slot> {
        CachePadded::new(Slot {
            entries: AtomicU64::new(0),
            exits: AtomicU64::new(0),
        })
    }

    #[inline(always)]
    fn enter_owned(&self) {
        // Relaxed: the light fence that follows orders it before the word's load.
        self.entries
            .store(self.entries.load(Relaxed).wrapping_add(1), Relaxed);
    }

    #[inline(always)]
    fn exit_owned(&self) {
        // Release: pairs with the Acquire of the scan's exit loads, so the visit happens
        // before the exclusive phase of the guard that counts this exit.
        self.exits
            .store(self.exits.load(Relaxed).wrapping_add(1), Release);
    }
}

/// The slots of one fortress: what its scans sum and where exited threads' slots wait.
struct Registry {
    /// Every slot ever handed out (the scan's list), and those whose thread exited
    /// (the next new thread takes one). Taken by a thread's first visit and by scans.
    slots: Mutex<Slots>,
    /// Visits that start or end where their thread's slot is gone: counted with
    /// read-modify-writes, as several threads may write it.
    shared: CachePadded<Slot>,
}

struct Slots {
    all: Vec<SlotRef>,
    free: Vec<SlotRef>,
}

/// A thread's hold on one fortress's slot; dropped with the thread's locals (or when
/// the fortress is gone), it gives the slot back.
struct Mine {
    id: u64,
    slot: SlotRef,
    home: Weak<Registry>,
}

impl Drop for Mine {
    fn drop(&mut self) {
        // A model that failed unwinds out of the checker, whose primitives are gone.
        #[cfg(all(test, any(loom, shuttle)))]
        if std::thread::panicking() {
            return;
        }
        if let Some(home) = self.home.upgrade() {
            // Through the mutex: the next thread that takes the slot sees its counts.
            lock(&home.slots).free.push(Arc::clone(&self.slot));
        }
    }
}

#[cfg(not(all(test, any(loom, shuttle))))]
std::thread_local!(static MINE: RefCell<Vec<Mine>> = const { RefCell::new(Vec::new()) });
#[cfg(all(test, any(loom, shuttle)))]
crate::sync::model_thread_local!(static MINE: RefCell<Vec<Mine>> = RefCell::new(Vec::new()));

/// Runs `f` with this thread's slot list, or returns `None` where the thread's locals
/// are gone (a destructor that runs after ours). Shuttle has no `try_with`; its
/// threads never visit from a destructor.
#[inline(always)]
fn with_mine<R>(f: impl FnOnce(&RefCell<Vec<Mine>>) -> R) -> Option<R> {
    #[cfg(not(all(test, shuttle, not(loom))))]
    return MINE.try_with(f).ok();
    #[cfg(all(test, shuttle, not(loom)))]
    return Some(MINE.with(f));
}

/// Where a guard's pass finds the counts: open (the word admits guests), closed with
/// the word holding the reference, or closed and seen drained (reference dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Open,
    Held,
    Released,
}

/// The per-thread counts of one fortress, and the pass its guards take.
pub(crate) struct Readers {
    id: u64,
    barrier: Barrier,
    registry: Arc<Registry>,
    pass: Mutex<Side>,
}

impl Readers {
    /// The counts of a new (locked, drained) fortress, or `None` if this process has
    /// no heavy barrier: then the fortress keeps its guests on the state word.
    pub(crate) fn new() -> Option<Readers> {
        #[cfg(not(all(test, any(loom, shuttle))))]
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        #[cfg(all(test, any(loom, shuttle)))]
        crate::sync::model_static! {
            static ref NEXT_ID: AtomicU64 = AtomicU64::new(0);
        }
        let barrier = barrier::chosen()?;
        Some(Readers {
            // Relaxed: only makes ids unique.
            id: NEXT_ID.fetch_add(1, Relaxed),
            barrier,
            registry: Arc::new(Registry {
                slots: Mutex::new(Slots {
                    all: Vec::new(),
                    free: Vec::new(),
                }),
                shared: Slot::new(),
            }),
            pass: Mutex::new(Side::Released),
        })
    }

    /// Counts an entry (`true`) or an exit (`false`) on this thread's slot, or on the
    /// shared slot, then passes the light fence.
    #[inline(always)]
    fn count(&self, entry: bool) {
        let counted = with_mine(|mine| {
            let mine = mine.borrow();
            match mine.first() {
                Some(first) if first.id == self.id => {
                    match entry {
                        true => first.slot.enter_owned(),
                        false => first.slot.exit_owned(),
                    }
                    true
                }
                _ => false,
            }
        });
        if counted != Some(true) {
            self.count_slow(entry, counted.is_some());
        }
        // Pairs with the heavy barrier of a closing pass (or of a scan before a sleep):
        // forbids the outcome where this visit's later load of the word misses the
        // guard's close (or its waiter flag) and the guard's scan misses this count.
        barrier::light();
    }

    /// The thread's slot is not the first of its list: find it (and move it first),
    /// take one, or count on the shared slot if the thread's locals are gone.
    #[cold]
    fn count_slow(&self, entry: bool, alive: bool) {
        if alive {
            let found = with_mine(|mine| {
                let mut mine = mine.borrow_mut();
                let at = match mine.iter().position(|m| m.id == self.id) {
                    Some(at) => at,
                    None => {
                        // Prune the slots of fortresses that are gone, then take one.
                        mine.retain(|m| m.home.strong_count() > 0);
                        mine.push(self.take_slot());
                        mine.len() - 1
                    }
                };
                mine.swap(0, at);
                match entry {
                    true => mine[0].slot.enter_owned(),
                    false => mine[0].slot.exit_owned(),
                }
            });
            if found.is_some() {
                return;
            }
        }
        let shared = &self.registry.shared;
        match entry {
            // Relaxed: as `enter_owned`.
            true => shared.entries.fetch_add(1, Relaxed),
            // Release: as `exit_owned`.
            false => shared.exits.fetch_add(1, Release),
        };
    }

    /// A slot for this thread: one that an exited thread gave back, or a new one.
    fn take_slot(&self) -> Mine {
        let mut slots = lock(&self.registry.slots);
        let slot = slots.free.pop().unwrap_or_else(|| {
            let slot = Arc::new(Slot::new());
            slots.all.push(Arc::clone(&slot));
            slot
        });
        Mine {
            id: self.id,
            slot,
            home: Arc::downgrade(&self.registry),
        }
    }

    /// A visit's entry, before it loads the word.
    #[inline(always)]
    pub(crate) fn arrive(&self) {
        self.count(true);
    }

    /// A visit's exit (or a refused guest's), before it loads the word.
    #[inline(always)]
    pub(crate) fn depart(&self) {
        self.count(false);
    }

    /// Starts a guard's pass (see the module docs).
    pub(crate) fn pass(&self) -> MutexGuard<'_, Side> {
        lock(&self.pass)
    }

    /// Issues the heavy barrier and sums the counts: `true` if every entry has its
    /// exit. Call inside a pass, after the word was closed (or a waiter flagged).
    pub(crate) fn drained(&self) -> bool {
        barrier::heavy(self.barrier);
        let (entries, exits) = self.sums();
        entries == exits
    }

    /// Entries and exits summed over every slot: exits first (Acquire: pairs with each
    /// exit's Release, so the entry of every exit counted is counted too), then a
    /// fence, then entries.
    fn sums(&self) -> (u64, u64) {
        let slots = lock(&self.registry.slots);
        let shared = &self.registry.shared;
        let exits = slots.all.iter().fold(shared.exits.load(Acquire), |n, s| {
            n.wrapping_add(s.exits.load(Acquire))
        });
        // The full barrier between the two sums: no entry load is made before an exit
        // load it follows.
        fence(SeqCst);
        let entries = slots.all.iter().fold(shared.entries.load(Relaxed), |n, s| {
            n.wrapping_add(s.entries.load(Relaxed))
        });
        (entries, exits)
    }

    /// Visits inside now, for a snapshot (exits read first, so it never goes below
    /// zero but may count a visit that was just refused).
    pub(crate) fn inside(&self) -> u64 {
        let (entries, exits) = self.sums();
        entries.saturating_sub(exits)
    }

    /// How many slots the fortress has handed out (for the memory tests).
    #[cfg_attr(not(any(test, feature = "internals")), allow(dead_code))]
    pub(crate) fn slots(&self) -> usize {
        lock(&self.registry.slots).all.len()
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    /// The light fence is the visits' alone, and the heavy barrier the guards': each is
    /// called in exactly one place, `count` and `drained`, so no guard-side path pairs
    /// a light fence with a visit's (which would forbid nothing).
    #[test]
    fn the_light_fence_is_only_the_visits_and_the_heavy_barrier_only_the_guards() {
        let counts = include_str!("mod.rs");
        let counts = &counts[..counts.find("#[cfg(all(test, not(any(loom").unwrap()];
        let gate = include_str!("../gate.rs");
        let calls = |text: &str, call: &str| {
            text.lines()
                .filter(|line| !line.trim_start().starts_with("//") && line.contains(call))
                .count()
        };
        for file in [
            gate,
            include_str!("../fortress.rs"),
            include_str!("../exclusive.rs"),
        ] {
            assert_eq!(calls(file, "light("), 0);
            assert_eq!(calls(file, "heavy("), 0);
        }
        assert_eq!(calls(counts, "barrier::light()"), 1);
        assert_eq!(calls(counts, "barrier::heavy("), 1);
        let count =
            &counts[counts.find("fn count(").unwrap()..counts.find("fn count_slow(").unwrap()];
        assert_eq!(
            calls(count, "barrier::light()"),
            1,
            "the light fence is in `count`"
        );
        let drained =
            &counts[counts.find("fn drained(").unwrap()..counts.find("fn sums(").unwrap()];
        assert_eq!(
            calls(drained, "barrier::heavy("),
            1,
            "the heavy barrier is in `drained`"
        );
    }
}
