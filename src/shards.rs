//! The slots of a sharded fortress: guests spread over per-core counters, so visits
//! from many cores do not all write one cache line. The main state word (`state.rs`)
//! still holds the lock bit, shutdown and the waiter flags; the guard pays for the
//! slots.
//!
//! # A slot word
//!
//! | bits   | name       | meaning while set                                                |
//! |--------|------------|------------------------------------------------------------------|
//! | 0      | `CLOSED`   | a guard has closed the slot: guests back out and wait at the main word |
//! | 1      | `RELEASED` | the slot was seen empty since it closed, and its reference on the main word is dropped |
//! | 2..=63 | count      | guests inside through this slot, plus guests backing out of it    |
//!
//! # The hand-offs
//!
//! A guest enters with one `fetch_add` on its slot and leaves with one `fetch_sub`,
//! exactly as on the main word. A guard's pass over the slots (closing for `lockdown`
//! and `kill`, reopening for `unlock`) runs under a mutex that only guards take, so two
//! passes never interleave.
//!
//! Closing: the guard first adds one *reference* per open slot to the main word's count
//! (in the same read-modify-write that sets `LOCKED`), then closes each slot with a
//! `fetch_or`. Whoever then sees a closed slot empty (the closer, if it was empty
//! already; otherwise the guest whose `fetch_sub` took the count to zero) sets
//! `RELEASED` by compare-exchange and drops that slot's reference from the main word.
//! `RELEASED` is set once per closing, so each reference is dropped exactly once, and a
//! lockdown's drain wait on the main word (count zero) completes only when every slot
//! has drained. Every step is a read-modify-write on one location.
//!
//! Reopening: the guard clears `CLOSED` and `RELEASED` with a `fetch_and`; a slot that
//! closed and never drained (an aborted lockdown) still holds its reference, which the
//! guard drops in the read-modify-write that then unlocks the main word. Guests may
//! enter a reopened slot a moment before the main word says "unlocked"; a guest woken
//! by the main word always finds its slot open.

use crate::state::{too_many_guests, OVERFLOW};
use crate::sync::{
    lock, shard_hint, AtomicU64, Mutex, MutexGuard,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};
use crossbeam_utils::CachePadded;

/// Bit 0: the slot is closed.
const CLOSED: u64 = 1 << 0;
/// Bit 1: the slot's reference on the main word has been dropped since it closed.
const RELEASED: u64 = 1 << 1;
/// The lowest bit of the slot's guest count.
const COUNT_SHIFT: u32 = (CLOSED | RELEASED).count_ones();
/// One guest, as added to a slot.
const ONE: u64 = 1 << COUNT_SHIFT;

/// A snapshot of a slot word.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Slot(u64);

impl Slot {
    #[inline]
    const fn closed(self) -> bool {
        self.0 & CLOSED != 0
    }

    #[inline]
    const fn released(self) -> bool {
        self.0 & RELEASED != 0
    }

    #[inline]
    const fn guests(self) -> u64 {
        self.0 >> COUNT_SHIFT
    }

    /// Read on the value before an optimistic increment: the guest is in. The top bit
    /// is the same overflow guard as the main word's.
    #[inline]
    const fn admits(self) -> bool {
        self.0 & (CLOSED | OVERFLOW) == 0
    }

    /// A closed slot that nobody is in and whose reference is still held: whoever
    /// sees this drops the reference.
    #[inline]
    const fn drained(self) -> bool {
        self.closed() && !self.released() && self.guests() == 0
    }
}

pub(crate) struct Shards {
    slots: Box<[CachePadded<AtomicU64>]>,
    /// Serializes the guards' passes over the slots. Guests never take it.
    passes: Mutex<()>,
}

/// What a guest entered through: the slot it must leave by.
pub(crate) type Ticket = usize;

impl Shards {
    /// `count` slots, closed and drained, as a new (locked, empty) fortress has them.
    pub(crate) fn new(count: usize) -> Shards {
        Shards {
            slots: (0..count)
                .map(|_| CachePadded::new(AtomicU64::new(CLOSED | RELEASED)))
                .collect(),
            passes: Mutex::new(()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// This thread's slot: a per-thread 32-bit number scaled to the slot count by a
    /// multiply and a shift (no division), no system call, no lock.
    #[inline]
    pub(crate) fn ticket(&self) -> Ticket {
        let hint = shard_hint() as u64 & u64::from(u32::MAX);
        ((hint * self.slots.len() as u64) >> 32) as usize
    }

    /// Guests inside, summed over the slots (a snapshot).
    pub(crate) fn guests(&self) -> u64 {
        self.slots
            .iter()
            .map(|slot| Slot(slot.load(Relaxed)).guests())
            .sum()
    }

    /// A guest's optimistic entry through slot `ticket`. `Err(release)` means it was
    /// refused and has backed out; `release` says it must drop the slot's reference on
    /// the main word.
    #[inline]
    pub(crate) fn try_enter(&self, ticket: Ticket) -> Result<(), bool> {
        // Acquire: pairs with the Release of `reopen`, so whatever the guard wrote
        // while the fortress was locked is visible inside the visit.
        let old = Slot(self.slots[ticket].fetch_add(ONE, Acquire));
        if old.admits() {
            return Ok(());
        }
        if old.0 & OVERFLOW != 0 {
            too_many_guests();
        }
        Err(self.leave(ticket))
    }

    /// Ends a visit through slot `ticket` (or backs out of a refused one). `true` if
    /// the caller must drop the slot's reference on the main word.
    #[inline]
    pub(crate) fn leave(&self, ticket: Ticket) -> bool {
        // Release: pairs with the Acquire of `release`'s compare-exchange and of
        // `close`, so the visit happens before the guard's exclusive phase.
        let old = Slot(self.slots[ticket].fetch_sub(ONE, Release));
        debug_assert!(old.guests() > 0, "a visit ended twice: {old:?}");
        old.closed() && old.guests() == 1 && self.release(ticket)
    }

    /// Claims the job of dropping a drained slot's reference: `true` for exactly one
    /// caller per closing.
    #[cold]
    fn release(&self, ticket: Ticket) -> bool {
        let slot = &self.slots[ticket];
        let mut current = Slot(slot.load(Relaxed));
        while current.drained() {
            // AcqRel: Acquire continues the chain from every guest's Release
            // decrement to the main word's `fetch_sub` that drops the reference.
            match slot.compare_exchange_weak(current.0, current.0 | RELEASED, AcqRel, Relaxed) {
                Ok(_) => return true,
                Err(actual) => current = Slot(actual),
            }
        }
        false
    }

    /// Starts a guard's pass: no other pass runs until the returned guard is dropped.
    pub(crate) fn pass(&self) -> MutexGuard<'_, ()> {
        lock(&self.passes)
    }

    /// How many slots are open: the references a closing pass must add to the main
    /// word first. Call inside a pass (only passes change `CLOSED`).
    pub(crate) fn open(&self) -> u64 {
        self.slots
            .iter()
            .filter(|slot| !Slot(slot.load(Relaxed)).closed())
            .count() as u64
    }

    /// Closes every open slot, after the caller added their references to the main
    /// word. Returns how many references the caller must drop (slots that were empty).
    /// Call inside the same pass as `open`.
    pub(crate) fn close(&self) -> u64 {
        let mut release = 0;
        for (ticket, slot) in self.slots.iter().enumerate() {
            // Acquire: pairs with the Release of `leave`, when the slot is empty.
            // Release: pairs with the Acquire of `try_enter`; a guest refused here
            // then also sees the state word locked (set before this pass closed the
            // slots), so it waits rather than retrying at once.
            let old = Slot(slot.fetch_or(CLOSED, AcqRel));
            if !old.closed() && old.guests() == 0 && self.release(ticket) {
                release += 1;
            }
        }
        release
    }

    /// Reopens every slot. Returns how many references the caller must drop: those of
    /// slots that closed and never drained. Call inside a pass; drop them in the same
    /// read-modify-write that unlocks the main word, so that no drain wait mistakes
    /// them for a drained fortress.
    pub(crate) fn reopen(&self) -> u64 {
        let mut release = 0;
        for slot in self.slots.iter() {
            // Release: pairs with the Acquire of `try_enter`.
            let old = Slot(slot.fetch_and(!(CLOSED | RELEASED), Release));
            if old.closed() && !old.released() {
                release += 1;
            }
        }
        release
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_empty_slot_is_released_once() {
        let shards = Shards::new(1);
        assert_eq!(shards.reopen(), 0, "a new fortress holds no reference");
        assert!(shards.try_enter(0).is_ok());
        assert_eq!(shards.close(), 0, "a guest is inside: the reference stays");
        assert!(shards.leave(0), "the last guest out drops it");
        assert!(!shards.release(0), "only once");
        assert_eq!(shards.try_enter(0), Err(false), "a closed slot refuses");
        assert_eq!(shards.reopen(), 0, "already dropped");
        assert_eq!(shards.guests(), 0);
    }

    #[test]
    fn a_slot_closed_empty_is_released_by_the_closer() {
        let shards = Shards::new(2);
        assert_eq!(shards.reopen(), 0);
        assert_eq!(shards.open(), 2);
        assert_eq!(shards.close(), 2);
        assert_eq!(shards.open(), 0);
    }
}
