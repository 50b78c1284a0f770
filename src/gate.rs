//! The gate: the state word and the notifiers its waiters wait on, and every
//! transition of the fortress.
//!
//! Guests enter optimistically: one `fetch_add` on the state word, then a look at the
//! value it replaced. If the gate was open the guest is in; otherwise it backs out with
//! the same `fetch_sub` that ends a visit, so a lockdown waiting for the count to reach
//! zero is woken by whichever guest leaves last, visitor or not. Because the lock flag
//! and the count share one word, every `fetch_add` is ordered against the `lockdown`
//! that closes the gate: either it came first (the guest is inside and the lockdown
//! waits for it) or it sees the flag (and backs out).
//!
//! Naming: a `*_slow` function is the general loop behind an `#[inline]` one-instruction
//! fast path (the word was not in its common state); a `*_contended` function is the
//! part that really waits or wakes somebody.

use crate::abort::Abort;
#[cfg(feature = "async")]
use crate::abort::Registration;
use crate::error::Error;
use crate::notify::Notifier;
#[cfg(feature = "read-mostly")]
use crate::read_mostly::{Readers, Side};
use crate::shards::{Shards, Ticket};
use crate::state::{
    too_many_guests, Close, Decision, FastStep, Kind, State, Waiters, Wake, Want, COUNT_SHIFT,
    ONE_GUEST, SHUTS,
};
use crate::sync::{
    Arc, AtomicU64,
    Ordering::{self, AcqRel, Acquire, Relaxed, Release},
    Spin,
};
#[cfg(feature = "async")]
use core::task::{Context, Poll};
use crossbeam_utils::CachePadded;

/// The shared core of a fortress; `Fortress`, `Guard` and `Guest` are `Arc`s of it.
pub(crate) struct Gate {
    /// What every fast path touches, on a cache line of its own.
    hot: CachePadded<Hot>,
    /// One notifier per group of waiters, in `Waiters::ALL` order. Each is an `Arc` of
    /// its own because an abort token holds on to the notifiers it must wake.
    notifiers: [Arc<Notifier>; 3],
    /// How many `Fortress` and `Guard` handles exist: values through which `unlock`
    /// can still be called (see `fortress.rs`).
    openers: AtomicU64,
}

/// The state word, and what the fast paths branch on beside it: one cache line, which
/// the guests' read-modify-writes own, so the single word's branch on `spread` costs
/// no second line. Padded so that nothing else shares it.
struct Hot {
    /// The state word; its layout is in `state.rs`.
    state: AtomicU64,
    /// Where the guests are counted. Never changes.
    spread: Spread,
    /// The shuts field (in place, other bits clear) as a guard's fast path last found
    /// it: the fast paths guess the whole word from it instead of loading the word
    /// before their compare-exchange. A wrong guess costs a second compare-exchange.
    shuts: AtomicU64,
}

/// Where a gate counts its guests: on the state word, or beside it. Beside it, the
/// state word's count holds *references* (one per slot or per set of counts not yet
/// seen drained since the gate closed), not guests, and every guard operation takes
/// the layout's pass.
pub(crate) enum Spread {
    /// On the state word: one read-modify-write in, one out.
    Word,
    /// In per-core slots (`shards.rs`).
    Shards(Shards),
    /// In per-thread counts (`read_mostly`).
    #[cfg(feature = "read-mostly")]
    Readers(Readers),
}

/// A guard's pass over the counts beside the word, held until dropped.
enum Pass<'a> {
    Shards(#[allow(dead_code)] crate::sync::MutexGuard<'a, ()>),
    #[cfg(feature = "read-mostly")]
    Readers(crate::sync::MutexGuard<'a, Side>),
}

/// What a closing pass left (`Gate::closing_pass`).
#[derive(Clone, Copy, Debug)]
struct Closed {
    /// Nobody is inside.
    empty: bool,
    /// The pass took the gate for the scoped close's phase.
    owned: bool,
}

/// How a scoped lockdown's drain ended (`Gate::drain_for_phase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Drained {
    /// The gate is this call's phase's.
    Owned,
    /// Another phase holds the gate, or one came and went and opened it: wait until
    /// no phase holds it, then close again.
    CloseAgain,
    /// Another close came since and the gate is still closed: drain on from here.
    Since(u32),
}

/// What a waiter's look at the state word decided.
enum Step<T> {
    /// Stop waiting with this result.
    Done(Result<T, Error>),
    /// The state changed under a compare-exchange: look again at once.
    Retry,
    /// The condition does not hold and the waiter's flag is set: sleep (a thread) or
    /// return `Pending` (a task).
    Sleep,
}

/// A guest's claim on its place, made when `Decision::Proceed` says the gate is open.
type Claim<'a, T> = &'a dyn Fn(&Gate, State) -> Step<T>;

#[cfg(feature = "async")]
/// An async wait in progress: the registrations a pending future holds. Dropping it
/// removes them, so a dropped future leaves nothing behind.
pub(crate) struct TaskWait<'a> {
    /// The gate and the group this task waits in, and its key in that notifier's task
    /// set.
    task: Option<(&'a Gate, Waiters, usize)>,
    registration: Option<Registration<'a>>,
}

impl Gate {
    /// A new, locked gate that counts its guests as `spread` says.
    pub(crate) fn new(spread: Spread) -> Gate {
        Gate {
            hot: CachePadded::new(Hot {
                state: AtomicU64::new(State::NEW.0),
                spread,
                shuts: AtomicU64::new(0),
            }),
            notifiers: [(); 3].map(|()| Arc::new(Notifier::new())),
            openers: AtomicU64::new(0),
        }
    }

    /// A new `Fortress` or `Guard` handle.
    pub(crate) fn add_opener(&self) {
        // Relaxed: as `Arc`'s increment; the count only has to reach zero once.
        self.openers.fetch_add(1, Relaxed);
    }

    /// A `Fortress` or `Guard` handle is gone. The last one kills a closed fortress:
    /// nobody could ever open it again, so its waiters must not wait forever.
    pub(crate) fn drop_opener(&self) {
        // AcqRel: as `Arc`'s decrement, so the last opener sees every guard operation
        // of the others (in particular their last unlock or lockdown).
        if self.openers.fetch_sub(1, AcqRel) == 1 && self.locked() {
            self.kill();
        }
    }

    /// The state word; beside it, with the guests summed over the slots or counts.
    pub(crate) fn snapshot(&self) -> State {
        let s = State(self.hot.state.load(Relaxed));
        let guests = match &self.hot.spread {
            Spread::Word => return s,
            Spread::Shards(shards) => shards.guests(),
            #[cfg(feature = "read-mostly")]
            Spread::Readers(readers) => {
                // Under the pass the word's reference agrees with the side: passes put it
                // on and take it off inside themselves.
                let side = readers.pass();
                let s = State(self.hot.state.load(Relaxed));
                let references = u64::from(*side == Side::Held);
                drop(side);
                let word = s.guests().saturating_sub(references);
                // Forgotten visits could take the counts past what the word's field
                // holds: the snapshot says `MAX_GUESTS` then.
                let guests = (word + readers.inside()).min(crate::state::MAX_GUESTS);
                return State(s.0 & (ONE_GUEST - 1) | guests << COUNT_SHIFT);
            }
        };
        State(s.0 & (ONE_GUEST - 1) | guests << COUNT_SHIFT)
    }

    /// The slots of a sharded fortress, if it is one.
    fn shards(&self) -> Option<&Shards> {
        match &self.hot.spread {
            Spread::Shards(shards) => Some(shards),
            _ => None,
        }
    }

    /// Whether the guests are counted on the state word itself.
    #[inline(always)]
    fn on_the_word(&self) -> bool {
        matches!(self.hot.spread, Spread::Word)
    }

    /// Starts the guards' pass of the layout, if it has one.
    fn pass(&self) -> Option<Pass<'_>> {
        match &self.hot.spread {
            Spread::Word => None,
            Spread::Shards(shards) => Some(Pass::Shards(shards.pass())),
            #[cfg(feature = "read-mostly")]
            Spread::Readers(readers) => Some(Pass::Readers(readers.pass())),
        }
    }

    /// How many per-thread slots a read-mostly fortress has handed out (0 for the other
    /// layouts): for the memory tests.
    #[cfg(all(feature = "read-mostly", any(test, feature = "internals")))]
    pub(crate) fn reader_slots(&self) -> usize {
        match &self.hot.spread {
            Spread::Readers(readers) => readers.slots(),
            _ => 0,
        }
    }

    /// Whether the gate is closed: one relaxed load of the state word.
    #[inline]
    pub(crate) fn locked(&self) -> bool {
        State(self.hot.state.load(Relaxed)).locked()
    }

    /// The number of guest slots; 0 for the single word.
    pub(crate) fn shard_count(&self) -> usize {
        self.shards().map_or(0, Shards::len)
    }

    /// The task sets' entries and keys, summed over the notifiers: for leak checks.
    #[cfg_attr(not(any(test, feature = "internals")), allow(dead_code))]
    pub(crate) fn task_slots(&self) -> (usize, usize) {
        self.notifiers
            .iter()
            .map(|n| n.task_slots())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }

    fn notifier(&self, waiters: Waiters) -> &Arc<Notifier> {
        &self.notifiers[waiters as usize]
    }

    /// The fast path of every entry: one `fetch_add`, on the state word or on this
    /// thread's slot. `None` means the guest has already backed out and must wait (or
    /// give up).
    ///
    /// Inlined always, with both halves, down to the caller's loop, and so are
    /// `enter`, `leave` and the public entries on them: a sharded visit that paid a
    /// call in and a call out cost 1.25–1.5× the bare atomic pair, fully inlined it
    /// costs what the single word does (paired runs, `benches/paired.rs`); everything
    /// that is not the one read-modify-write stays out of line (`#[cold]`).
    #[inline(always)]
    pub(crate) fn try_enter(&self) -> Option<Ticket> {
        match &self.hot.spread {
            Spread::Word => {}
            Spread::Shards(shards) => return self.try_enter_sharded(shards),
            #[cfg(feature = "read-mostly")]
            Spread::Readers(readers) => return self.try_enter_reading(readers),
        }
        // Acquire: pairs with the Release in `unlock`, so whatever the guard wrote
        // while the fortress was locked is visible inside the visit.
        let old = State(self.hot.state.fetch_add(ONE_GUEST, Acquire));
        if old.admits() {
            return Some(0);
        }
        self.back_out(old);
        None
    }

    /// `try_enter` through this thread's slot.
    #[inline(always)]
    fn try_enter_sharded(&self, shards: &Shards) -> Option<Ticket> {
        let ticket = shards.ticket();
        match shards.try_enter(ticket) {
            Ok(()) => Some(ticket),
            Err(release) => {
                self.drop_references(release.into());
                None
            }
        }
    }

    /// `try_enter` on this thread's counts: a store, the light fence and a load; no
    /// read-modify-write. A refused guest counts its exit at once.
    #[cfg(feature = "read-mostly")]
    #[inline(always)]
    fn try_enter_reading(&self, readers: &Readers) -> Option<Ticket> {
        readers.arrive();
        // Acquire: pairs with the Release in `unlock` (and the reopening of every other
        // guard operation), as in `try_enter`. After the light fence in `arrive`, which
        // pairs with the closing pass's heavy barrier: this load sees the close, or the
        // pass's scan sees this entry.
        let s = State(self.hot.state.load(Acquire));
        if s.opens_to_readers() {
            return Some(0);
        }
        self.bounce_reading(readers);
        None
    }

    /// A guest refused by a closed read-mostly gate leaves as a visit does.
    #[cfg(feature = "read-mostly")]
    #[cold]
    fn bounce_reading(&self, readers: &Readers) {
        self.leave_reading(readers);
    }

    /// Ends a visit on this thread's counts: a store, the light fence and a load; it
    /// wakes the lockdowns (and `wait` callers) that flagged themselves, to scan again.
    #[cfg(feature = "read-mostly")]
    #[inline(always)]
    fn leave_reading(&self, readers: &Readers) {
        readers.depart();
        // Relaxed: the light fence in `depart` (pairing with the heavy barrier that a
        // waiter issues after it sets its flag, before its last scan) orders it after
        // the exit: this load sees the flag, or that scan sees the exit.
        let s = State(self.hot.state.load(Relaxed));
        if s.has_scanners() {
            self.wake_scanners(s);
        }
    }

    /// A leaver saw lockdowns or `wait` callers flagged: wakes them to scan again.
    #[cfg(feature = "read-mostly")]
    #[cold]
    fn wake_scanners(&self, s: State) {
        self.wake(s.scanners());
    }

    /// Undoes a refused optimistic increment.
    #[cold]
    fn back_out(&self, old: State) {
        if old.overflowed() {
            too_many_guests();
        }
        self.leave_word();
    }

    /// Starts a visit, waiting while the gate is closed.
    #[inline(always)]
    pub(crate) fn enter(&self, abort: &Abort) -> Result<Ticket, Error> {
        if let Some(ticket) = self.try_enter() {
            return Ok(ticket);
        }
        self.enter_contended(abort)
    }

    #[cold]
    fn enter_contended(&self, abort: &Abort) -> Result<Ticket, Error> {
        self.wait_until(Want::Open, abort, &Gate::claim_place)
    }

    /// The gate is open in `s`: take a place. On the single word by compare-exchange,
    /// not by `fetch_add`, so a crowd of woken guests cannot bounce off a gate that
    /// closes again. In a sharded fortress through this thread's slot: its slot
    /// reopened before the state word said "open", so a refusal means a new lockdown
    /// has closed it since, and the next look finds the gate closed.
    fn claim_place(&self, s: State) -> Step<Ticket> {
        if !self.on_the_word() {
            return match self.try_enter() {
                Some(ticket) => Step::Done(Ok(ticket)),
                None => Step::Retry,
            };
        }
        if s.overflowed() {
            too_many_guests();
        }
        // Acquire: as in `try_enter`; this may read the word from the `unlock` that
        // opened the gate, or from a later guest's read-modify-write, which continues
        // that unlock's release sequence.
        match self
            .hot
            .state
            .compare_exchange_weak(s.0, s.with_guest().0, Acquire, Relaxed)
        {
            Ok(_) => Step::Done(Ok(0)),
            Err(_) => Step::Retry,
        }
    }

    /// Ends the visit that entered with `ticket`.
    #[inline(always)]
    pub(crate) fn leave(&self, ticket: Ticket) {
        match &self.hot.spread {
            Spread::Word => self.leave_word(),
            Spread::Shards(shards) => self.leave_sharded(shards, ticket),
            #[cfg(feature = "read-mostly")]
            Spread::Readers(readers) => self.leave_reading(readers),
        }
    }

    /// `leave` through a slot.
    #[inline(always)]
    fn leave_sharded(&self, shards: &Shards, ticket: Ticket) {
        if shards.leave(ticket) {
            self.drop_references(1);
        }
    }

    /// Drops `n` slot references from the state word at once, as `n` guests leaving
    /// would.
    #[cold]
    fn drop_references(&self, n: u64) {
        if n > 0 {
            self.leave_word_by(n);
        }
    }

    /// Takes one off the state word's count: a visit ends (or a refused guest backs
    /// out, or a slot's reference is dropped).
    #[inline]
    fn leave_word(&self) {
        self.leave_word_by(1);
    }

    #[inline]
    fn leave_word_by(&self, n: u64) {
        // Release: pairs with the Acquire in `lockdown` and `wait`, so everything the
        // visit did happens before the guard's exclusive phase.
        let old = State(self.hot.state.fetch_sub(n * ONE_GUEST, Release));
        debug_assert!(old.guests() >= n, "a visit ended twice: {old:?}");
        if old.last_out_wakes_after(n) {
            self.leave_contended();
        }
    }

    /// The last guest left while lockdowns or `wait` callers may wait: settle the word
    /// and wake whoever can now proceed. If someone entered since, the flags stay for
    /// the guest that leaves last.
    #[cold]
    fn leave_contended(&self) {
        // Relaxed: this read-modify-write continues the release sequence of the
        // `fetch_sub`s before it, so waiters that read it still synchronize with
        // every guest that left.
        let settled = self.update(Relaxed, |s| {
            let settled = s.settled();
            (settled != s).then_some(settled)
        });
        if let Ok((old, new)) = settled {
            self.wake(old.woken_by(new));
        }
    }

    /// A guard's fast path: one compare-exchange from the word that is idle for
    /// `step` with the shuts field it last saw, to `step` of it; if the word was
    /// another idle one (the shuts field moved), one more from that. `false` if the
    /// word is not idle: take the slow path. On `Claim` and `Close` it pairs as the
    /// slow path's close does (Acquire), on `Unlock` and `EndPhase` as its reopen
    /// (Release).
    #[inline(always)]
    fn fast_step(&self, step: FastStep) -> bool {
        if !self.on_the_word() {
            return false; // the slots or counts must close or reopen too
        }
        let order = match step {
            FastStep::Close | FastStep::Claim => Acquire,
            FastStep::Unlock | FastStep::EndPhase => Release,
        };
        let guess = State(step.idle().0 | self.hot.shuts.load(Relaxed));
        let next = step.apply(guess);
        match self
            .hot
            .state
            .compare_exchange(guess.0, next.0, order, Relaxed)
        {
            Ok(_) => {
                if step.moves_shuts() {
                    self.hot.shuts.store(next.0 & SHUTS, Relaxed);
                }
                true
            }
            Err(actual) => self.fast_step_again(State(actual), step, order),
        }
    }

    #[cold]
    fn fast_step_again(&self, s: State, step: FastStep, order: Ordering) -> bool {
        self.hot.shuts.store(s.0 & SHUTS, Relaxed);
        if !step.is_idle(s) {
            return false;
        }
        let next = step.apply(s);
        let done = self
            .hot
            .state
            .compare_exchange(s.0, next.0, order, Relaxed)
            .is_ok();
        if done {
            self.hot.shuts.store(next.0 & SHUTS, Relaxed);
        }
        done
    }

    /// Opens the gate and wakes the guests waiting at it.
    #[inline]
    pub(crate) fn unlock(&self) -> Result<(), Error> {
        // The common case in one compare-exchange: closed, not owned, empty, nobody
        // waiting (a sharded fortress always takes the slow path: its slots must reopen
        // too). The shuts field may be anything: `fast_step` guesses it.
        // Release: pairs with the Acquire in `try_enter` and `claim_place`; the guard's
        // writes during its exclusive phase happen before every visit it now admits.
        if self.fast_step(FastStep::Unlock) {
            return Ok(());
        }
        self.unlock_slow()
    }

    #[cold]
    fn unlock_slow(&self) -> Result<(), Error> {
        match self.reopen(|s| (!s.shut_down()).then(|| s.unlocked())) {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::Shutdown),
        }
    }

    /// The back-out of a scoped lockdown that gave up (it withdraws its close):
    /// reopens the gate if the close with `record` shut it and no guard has acted since
    /// (see `state.rs`); otherwise leaves the state to whoever did.
    #[cold]
    pub(crate) fn withdraw(&self, record: u32) {
        let _ = self.reopen(|s| s.backed_out(record));
    }

    /// The end of an exclusive phase: clears the owner mark and unlocks in one step
    /// (a killed fortress stays closed, and its `wait` callers may now return).
    #[inline]
    pub(crate) fn end_phase(&self) {
        // Release: as in `unlock`; the phase's writes happen before every later visit.
        if !self.fast_step(FastStep::EndPhase) {
            self.end_phase_slow();
        }
    }

    #[cold]
    fn end_phase_slow(&self) {
        let ended = self.reopen(|s| s.owned().then(|| s.phase_ended()));
        debug_assert!(ended.is_ok(), "an exclusive phase ended twice");
    }

    /// Applies `open` (an unlock, a back-out or a phase's end) to the state word and,
    /// in a sharded fortress, reopens the slots first if the gate opens. `Err` with the
    /// state `open` declined.
    fn reopen(&self, open: impl Fn(State) -> Option<State>) -> Result<(), State> {
        let mut references = 0;
        let mut pass = self.pass();
        if pass.is_some() {
            // Under the pass no other guard operation can slip in (they all take it,
            // the claim of a phase included), so what `open` decides now holds for the
            // update below: in particular whether the gate opens.
            let s = State(self.hot.state.load(Relaxed));
            let opened = open(s).ok_or(s)?;
            match (&mut pass, &self.hot.spread) {
                (Some(Pass::Shards(_)), Spread::Shards(shards)) if !opened.locked() => {
                    references = shards.reopen();
                }
                #[cfg(feature = "read-mostly")]
                (Some(Pass::Readers(side)), _) if opened.opens_to_readers() => {
                    references = u64::from(**side == Side::Held);
                    **side = Side::Open;
                }
                _ => {}
            }
        }
        // Release: as in `unlock`. The references of slots that never drained go in
        // the same step, so no drain wait sees them leave while the gate is closed.
        let (old, new) = self.update(Release, |s| {
            open(s).map(|n| n.without_references(references))
        })?;
        // The pass is released before any waker (user code) runs: a waker may re-enter.
        drop(pass);
        self.wake(old.woken_by(new));
        Ok(())
    }

    /// Closes the gate; `Ok(true)` if nobody is inside, so the lockdown is complete.
    #[inline]
    pub(crate) fn close(&self) -> Result<bool, Error> {
        // The common case in one compare-exchange: open, empty, nobody waiting (a
        // sharded fortress always takes the slow path: its slots must close too). The
        // shuts field may be anything: `fast_step` guesses it.
        // Acquire: pairs with the Release in `leave`; every visit that ended happens
        // before the guard's exclusive phase.
        if self.fast_step(FastStep::Close) {
            return Ok(true);
        }
        self.close_slow()
    }

    #[cold]
    fn close_slow(&self) -> Result<bool, Error> {
        // Acquire: as in `close`.
        self.closing_pass(Acquire, false, |s| {
            (!s.shut_down()).then(|| s.locked_down())
        })
        .map(|closed| closed.empty)
        .map_err(|_| Error::Shutdown)
    }

    /// A scoped lockdown's fast path: `true` if it took the open, empty gate of a
    /// single word for its phase at once (see `close_scoped`).
    #[inline(always)]
    pub(crate) fn try_claim(&self) -> bool {
        // Acquire: as in `close`.
        self.fast_step(FastStep::Claim)
    }

    /// The close of a scoped lockdown. On the single word, if nobody is inside, it
    /// takes the gate for its phase in the same read-modify-write (`Close::Owned`);
    /// otherwise (and always on a sharded fortress, whose word does not count guests)
    /// it must drain, with the back-out record of its close if that shut the open gate
    /// (`Gate::withdraw`). `Ok(None)` if a phase holds the gate: wait for its end
    /// (`Gate::wait_phase`), then close again.
    #[inline]
    pub(crate) fn close_scoped(&self) -> Result<Option<Close>, Error> {
        // The common case in one compare-exchange: open, empty, nobody waiting, on the
        // single word; the gate is closed and the phase's at once. Acquire: as in
        // `close`.
        if self.fast_step(FastStep::Claim) {
            return Ok(Some(Close::Owned));
        }
        self.close_scoped_slow()
    }

    #[cold]
    fn close_scoped_slow(&self) -> Result<Option<Close>, Error> {
        let sharded = !self.on_the_word();
        let mut close = Close::Owned;
        // Acquire: as in `close`.
        let closed = self.closing_pass(Acquire, sharded, |s| {
            if s.shut_down() || s.owned() {
                return None;
            }
            let new;
            (new, close) = match sharded {
                false => s.locked_down_scoped(),
                true => {
                    let (new, record) = s.locked_down_recording();
                    let since = new.shuts();
                    (new, Close::Drain { record, since })
                }
            };
            Some(new)
        });
        match closed {
            // The pass took the gate for the phase: the record of its close is void.
            Ok(Closed { owned: true, .. }) => Ok(Some(Close::Owned)),
            Ok(_) => Ok(Some(close)),
            Err(s) if s.shut_down() => Err(Error::Shutdown),
            Err(_) => Ok(None),
        }
    }

    /// The second half of a scoped lockdown whose close left the shuts field at
    /// `since`: waits until no guest is inside the closed gate, then takes it for its
    /// phase. `Ok(false)` if it must close again: another phase took the gate first
    /// (wait for its end: `Gate::wait_phase`), or one began and ended meanwhile.
    #[cold]
    pub(crate) fn drain_for_phase(&self, since: u32, abort: &Abort) -> Result<Drained, Error> {
        self.wait_until(Want::Phase { since }, abort, &Gate::claim_phase)
    }

    /// A scoped lockdown waits until no phase holds the gate (or the fortress is
    /// killed), claiming nothing: it closes again next.
    #[cold]
    pub(crate) fn wait_phase(&self, abort: &Abort) -> Result<(), Error> {
        self.wait_until(Want::PhaseEnd, abort, &Gate::nothing_to_claim)
    }

    /// `Want::Phase` decided to go on in `s`: if the gate is closed and empty, take it
    /// for a phase, in the read-modify-write that finds it so; otherwise (a phase holds
    /// it, or one came and went) close again. On a sharded fortress under the guards'
    /// pass, so that no unlock decides to reopen the slots of a gate that a phase holds
    /// by the time it writes.
    fn claim_phase(&self, s: State) -> Step<Drained> {
        let Some(claimed) = s.claimed() else {
            if s.locked() && !s.owned() {
                // Another close came since, and the gate is still closed: drain on,
                // from the field as it is now (this is no new guard operation).
                return Step::Done(Ok(Drained::Since(s.shuts())));
            }
            return Step::Done(Ok(Drained::CloseAgain));
        };
        let _pass = self.pass();
        // Acquire: pairs with the Release of the last guest's `leave` (or of the
        // decrement that dropped the last slot's reference): every visit happens
        // before the phase.
        match self
            .hot
            .state
            .compare_exchange(s.0, claimed.0, Acquire, Relaxed)
        {
            Ok(_) => {
                // The last guest's decrement may not have settled the word yet: this
                // read-modify-write clears the drain flags then, so it wakes their
                // waiters (another scoped lockdown must learn that a phase holds the
                // gate now, or it sleeps through the phase and past its end).
                drop(_pass);
                self.wake(s.woken_by(claimed));
                Step::Done(Ok(Drained::Owned))
            }
            Err(_) => Step::Retry,
        }
    }

    /// Applies `close` (a lockdown or a kill) to the state word and, beside a word that
    /// does not count guests, closes the slots or the counts: their references go on
    /// the word in the same step, and those of slots or counts found empty come off it
    /// before the pass ends, so that no look at the word after the pass sees a
    /// reference that is only on its way out. With `claim` (a scoped close), if nobody
    /// is inside then, the pass also takes the gate for the phase, so that no other
    /// guard operation comes between the close and the claim (on the single word the
    /// close's own read-modify-write does both). Every waker runs after the pass.
    fn closing_pass(
        &self,
        order: Ordering,
        claim: bool,
        mut close: impl FnMut(State) -> Option<State>,
    ) -> Result<Closed, State> {
        let shards = match &self.hot.spread {
            Spread::Word => {
                let (old, new) = self.update(order, close)?;
                self.wake(old.woken_by(new));
                // During a phase nobody is inside (a guest counted then is bouncing off).
                let empty = new.guests() == 0 || new.owned();
                return Ok(Closed {
                    empty,
                    owned: false,
                });
            }
            Spread::Shards(shards) => shards,
            #[cfg(feature = "read-mostly")]
            Spread::Readers(readers) => return self.closing_scan(readers, order, claim, close),
        };
        // Every change is made before anybody is woken: the word and every slot are
        // closed (a killed fortress admits nobody) and the pass is released before any
        // waker, which is user code and may re-enter, runs.
        let pass = shards.pass();
        let references = shards.open();
        let (old, new) = self.update(order, |s| close(s).map(|n| n.with_references(references)))?;
        let released = shards.close();
        let settle = self.drop_references_in_pass(released);
        let owned = claim.then(|| self.claim_in_pass()).flatten();
        drop(pass);
        Ok(self.after_closing(old, new, settle, owned, released))
    }

    /// The end of a closing pass, once the pass is released: settles the word if the
    /// references dropped in the pass emptied it, and wakes whoever the close, the
    /// settling and the claim concern.
    fn after_closing(
        &self,
        old: State,
        new: State,
        settle: bool,
        owned: Option<Wake>,
        released: u64,
    ) -> Closed {
        if settle {
            self.leave_contended();
        }
        self.wake(old.woken_by(new));
        if let Some(wake) = owned {
            self.wake(wake);
        }
        Closed {
            empty: new.guests() == released || new.owned(),
            owned: owned.is_some(),
        }
    }

    /// Drops `n` references of drained slots or counts from the word inside the pass
    /// that found them drained. `true` if the word must then be settled
    /// (`leave_contended`), which the caller does after the pass.
    fn drop_references_in_pass(&self, n: u64) -> bool {
        if n == 0 {
            return false;
        }
        // Release: as in `leave_word_by`.
        let old = State(self.hot.state.fetch_sub(n * ONE_GUEST, Release));
        debug_assert!(old.guests() >= n, "a reference dropped twice: {old:?}");
        old.last_out_wakes_after(n)
    }

    /// Inside the pass of a scoped close that found nobody inside: takes the gate for
    /// the phase if it is closed, alive, unowned and empty now. The wake it owes (the
    /// flags the claim settled), for after the pass.
    fn claim_in_pass(&self) -> Option<Wake> {
        let mut s = State(self.hot.state.load(Relaxed));
        loop {
            let claimed = s.claimed()?;
            // Acquire: as in `claim_phase`.
            match self
                .hot
                .state
                .compare_exchange_weak(s.0, claimed.0, Acquire, Relaxed)
            {
                Ok(_) => return Some(s.woken_by(claimed)),
                Err(actual) => s = State(actual),
            }
        }
    }

    /// `closing_pass` on per-thread counts: the reference goes on the word with the
    /// close (if the counts were open), then, under the same pass, the heavy barrier
    /// and a scan; if the scan finds nobody inside, the reference comes off again.
    #[cfg(feature = "read-mostly")]
    fn closing_scan(
        &self,
        readers: &Readers,
        order: Ordering,
        claim: bool,
        mut close: impl FnMut(State) -> Option<State>,
    ) -> Result<Closed, State> {
        let mut side = readers.pass();
        let add = u64::from(*side == Side::Open);
        let (old, new) = self.update(order, |s| close(s).map(|n| n.with_references(add)))?;
        if *side == Side::Open {
            *side = Side::Held;
        }
        // The scan pairs with the light fences of `arrive` and `depart` through the
        // heavy barrier that `drained` issues after the close above.
        let released = *side == Side::Held && readers.drained();
        if released {
            *side = Side::Released;
        }
        let settle = self.drop_references_in_pass(released.into());
        let owned = claim.then(|| self.claim_in_pass()).flatten();
        drop(side);
        Ok(self.after_closing(old, new, settle, owned, released.into()))
    }

    /// A waiter of a read-mostly fortress about to sleep or to give up: if the counts
    /// still hold their reference, scans them (the heavy barrier first, pairing with
    /// the leavers' light fences) and drops it if they are drained. Under the pass, so
    /// it also waits out any guard operation in progress. `true` if the word is no
    /// longer `seen`: look again.
    #[cfg(feature = "read-mostly")]
    #[cold]
    fn rescan(&self, readers: &Readers, seen: State) -> bool {
        let mut side = readers.pass();
        if *side == Side::Held && readers.drained() {
            *side = Side::Released;
            let settle = self.drop_references_in_pass(1);
            drop(side);
            if settle {
                self.leave_contended();
            }
            return true;
        }
        State(self.hot.state.load(Relaxed)) != seen
    }

    /// Closes the gate, then waits until no guest is inside.
    #[inline]
    pub(crate) fn lockdown(&self, abort: &Abort) -> Result<(), Error> {
        if self.close()? {
            return Ok(());
        }
        self.lockdown_contended(abort)
    }

    /// Waits until no guest is inside a closed gate: the second half of a lockdown.
    #[cold]
    pub(crate) fn lockdown_contended(&self, abort: &Abort) -> Result<(), Error> {
        self.wait_until(Want::Drained, abort, &Gate::nothing_to_claim)
    }

    /// Lockdowns and `wait` need nothing more once their condition holds.
    fn nothing_to_claim(&self, _: State) -> Step<()> {
        Step::Done(Ok(()))
    }

    /// Shuts the fortress down for good and wakes every waiter.
    pub(crate) fn kill(&self) {
        // AcqRel: Release pairs with the Acquire of every operation that then answers
        // `Shutdown`, so what happened before `kill` is visible to them.
        let _ = self.closing_pass(AcqRel, false, |s| (!s.shut_down()).then(|| s.killed()));
    }

    /// Blocks until the fortress is killed and no visit is running, or `abort` fires.
    pub(crate) fn wait_done(&self, abort: &Abort) -> Result<(), Error> {
        self.wait_until(Want::Done, abort, &Gate::nothing_to_claim)
    }

    /// One look at the state word for a waiter of `waiters` and `kind`: decide, and if
    /// it must wait, make sure its flag is set. Precedence: whatever the state decides
    /// comes first, so an abort only cuts short a call that would really wait.
    fn look<T>(&self, want: Want, kind: Kind, abort: &Abort, claim: Claim<'_, T>) -> Step<T> {
        let waiters = want.group();
        let (s, step) = self.peek(want, abort, claim);
        if !matches!(step, Step::Sleep) {
            return step;
        }
        let flagged = s.with_waiter(waiters, kind);
        // Relaxed: setting the flag publishes nothing; the waker reads it with its own
        // read-modify-write, which always sees the latest value.
        if flagged != s
            && self
                .hot
                .state
                .compare_exchange(s.0, flagged.0, Relaxed, Relaxed)
                .is_err()
        {
            return Step::Retry;
        }
        // On per-thread counts nobody's leave touches the word: with the flag set, scan
        // once more before sleeping (a leaver from now on sees the flag and wakes us).
        if self.scans(want) && self.settle_beside(want, flagged) {
            return Step::Retry;
        }
        Step::Sleep
    }

    /// A look that changes nothing when it must wait (`Step::Sleep`): whatever the
    /// state decides comes first, so an abort only cuts short a call that would
    /// really wait.
    fn peek<T>(&self, want: Want, abort: &Abort, claim: Claim<'_, T>) -> (State, Step<T>) {
        // Acquire: pairs with the Release of `leave`, `unlock` and `kill`, so a
        // lockdown that returns here sees every visit's effects.
        let s = State(self.hot.state.load(Acquire));
        let step = match want.decide(s) {
            Decision::Proceed => claim(self, s),
            Decision::Shutdown => Step::Done(Err(Error::Shutdown)),
            // Per-thread counts may have drained with nobody flagged to see it: scan
            // before answering that the call would have to wait.
            // Beside the word, a guard's pass in progress may still change it (a
            // reference on its way out, a claim): wait it out and look again before
            // answering that the call would have to wait.
            Decision::Wait
                if abort.is_aborted() && !self.on_the_word() && self.settle_beside(want, s) =>
            {
                Step::Retry
            }
            Decision::Wait if abort.is_aborted() => Step::Done(Err(Error::Aborted)),
            Decision::Wait => Step::Sleep,
        };
        (s, step)
    }

    /// Whether this waiter must scan before it sleeps: a drain or `wait` waiter on
    /// per-thread counts, which no leaver's read-modify-write settles.
    #[inline]
    fn scans(&self, want: Want) -> bool {
        #[cfg(feature = "read-mostly")]
        if matches!(self.hot.spread, Spread::Readers(_)) {
            return want.group() != Waiters::Gate;
        }
        let _ = want;
        false
    }

    /// A read-mostly fortress's counts look drained: their sums agree, read without
    /// the heavy barrier (an entry still in a store buffer may hide), so only a hint
    /// that a scan is now worth its barrier. `false` on the other layouts.
    fn looks_drained(&self) -> bool {
        match &self.hot.spread {
            #[cfg(feature = "read-mostly")]
            Spread::Readers(readers) => readers.inside() == 0,
            _ => false,
        }
    }

    /// Beside the word: waits out any guard pass in progress and, for a drain or
    /// `wait` waiter on per-thread counts, scans them (`rescan`). `true` if the word
    /// is no longer `seen`: look again.
    #[cold]
    fn settle_beside(&self, want: Want, seen: State) -> bool {
        let _ = want; // only the read-mostly counts ask what it waits for
        let _pass = match &self.hot.spread {
            Spread::Word => return false,
            #[cfg(feature = "read-mostly")]
            Spread::Readers(readers) if self.scans(want) => return self.rescan(readers, seen),
            _ => self.pass(),
        };
        State(self.hot.state.load(Relaxed)) != seen
    }

    /// The sleeping loop of threads: a short spin, then futex sleeps on the notifier.
    fn wait_until<T>(&self, want: Want, abort: &Abort, claim: Claim<'_, T>) -> Result<T, Error> {
        let waiters = want.group();
        // A short spin first: most visits and most lockdowns are brief.
        let mut spin = Spin::new();
        // Per-thread counts change the word only when a scan says so: spin on a look at
        // them instead, and go on (to flag, scan and maybe sleep) once they look drained.
        let scans = self.scans(want);
        loop {
            let s = State(self.hot.state.load(Relaxed));
            match want.decide(s) {
                Decision::Wait if abort.is_aborted() => break,
                Decision::Wait if scans && self.looks_drained() => break,
                Decision::Wait if spin.spin() => continue,
                _ => break,
            }
        }

        let notifier = self.notifier(waiters);
        let _registration = abort.register(notifier);
        let _enlisted = Enlisted::new(self, waiters);
        loop {
            // Read the counter before the state: see `notify.rs`.
            let seq = notifier.seq();
            match self.look(want, Kind::Thread, abort, claim) {
                Step::Done(result) => return result,
                Step::Retry => continue,
                Step::Sleep => {
                    #[cfg(all(feature = "tokio", not(all(test, any(loom, shuttle)))))]
                    no_sleep_on_a_tokio_worker(want);
                    notifier.sleep(seq)
                }
            }
        }
    }

    #[cfg(feature = "async")]
    /// The pending loop of tasks: one poll of an async wait. The waker is stored (and
    /// the abort registered) before the state is looked at, so no wake-up is lost.
    fn poll_wait<'a, T>(
        &'a self,
        want: Want,
        abort: &'a Abort,
        wait: &mut TaskWait<'a>,
        cx: &mut Context<'_>,
        claim: Claim<'_, T>,
    ) -> Poll<Result<T, Error>> {
        let waiters = want.group();
        let notifier = self.notifier(waiters);
        if wait.registration.is_none() {
            wait.registration = Some(abort.register(notifier));
        }
        if wait.task.is_some() {
            // Polled again, most often because it was woken: look before storing the
            // waker again, so a task that can go on pays for no lock and no clone.
            if let (_, Step::Done(result)) = self.peek(want, abort, claim) {
                *wait = TaskWait::new();
                return Poll::Ready(result);
            }
        }
        loop {
            let mut key = wait.task.map(|(_, _, key)| key);
            notifier.register_task(&mut key, cx.waker());
            wait.task = key.map(|key| (self, waiters, key));
            match self.look(want, Kind::Task, abort, claim) {
                Step::Done(result) => {
                    *wait = TaskWait::new();
                    return Poll::Ready(result);
                }
                Step::Retry => continue,
                Step::Sleep => return Poll::Pending,
            }
        }
    }

    #[cfg(feature = "async")]
    /// One poll of an async entry. The first poll tries the fast path: one
    /// `fetch_add`, nothing stored.
    #[inline]
    pub(crate) fn poll_enter<'a>(
        &'a self,
        abort: &'a Abort,
        wait: &mut TaskWait<'a>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Ticket, Error>> {
        if wait.is_new() {
            if !crate::coop::proceed(cx, core::ptr::from_ref(wait).cast()) {
                return Poll::Pending; // yield to the other tasks; then try again
            }
            if let Some(ticket) = self.try_enter() {
                return Poll::Ready(Ok(ticket));
            }
        }
        self.poll_wait(Want::Open, abort, wait, cx, &Gate::claim_place)
    }

    #[cfg(feature = "async")]
    /// One poll of an async lockdown's drain wait (the gate is already closed).
    pub(crate) fn poll_drain<'a>(
        &'a self,
        abort: &'a Abort,
        wait: &mut TaskWait<'a>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        self.poll_wait(Want::Drained, abort, wait, cx, &Gate::nothing_to_claim)
    }

    #[cfg(feature = "async")]
    /// One poll of a scoped lockdown's drain wait: as `poll_drain`, then it takes the
    /// gate for its phase (`Gate::drain_for_phase`).
    pub(crate) fn poll_drain_for_phase<'a>(
        &'a self,
        since: u32,
        abort: &'a Abort,
        wait: &mut TaskWait<'a>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Drained, Error>> {
        self.poll_wait(Want::Phase { since }, abort, wait, cx, &Gate::claim_phase)
    }

    #[cfg(feature = "async")]
    /// One poll of a scoped lockdown's wait for another's phase to end
    /// (`Gate::wait_phase`).
    pub(crate) fn poll_phase<'a>(
        &'a self,
        abort: &'a Abort,
        wait: &mut TaskWait<'a>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        self.poll_wait(Want::PhaseEnd, abort, wait, cx, &Gate::nothing_to_claim)
    }

    #[cfg(feature = "async")]
    /// One poll of `wait_async`.
    pub(crate) fn poll_done<'a>(
        &'a self,
        abort: &'a Abort,
        wait: &mut TaskWait<'a>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        self.poll_wait(Want::Done, abort, wait, cx, &Gate::nothing_to_claim)
            .map(|done| debug_assert!(done.is_ok()))
    }

    /// Applies `f` to the word until a compare-exchange succeeds, or `f` declines.
    /// Returns the values before and after, or the value `f` declined.
    #[inline]
    fn update(
        &self,
        success: Ordering,
        mut f: impl FnMut(State) -> Option<State>,
    ) -> Result<(State, State), State> {
        let mut current = State(self.hot.state.load(Relaxed));
        loop {
            let new = f(current).ok_or(current)?;
            match self
                .hot
                .state
                .compare_exchange_weak(current.0, new.0, success, Relaxed)
            {
                Ok(_) => {
                    debug_assert_eq!(new.check_invariants(), Ok(()), "{current:?} -> {new:?}");
                    return Ok((current, new));
                }
                Err(actual) => current = State(actual),
            }
        }
    }

    /// Wakes the waiters whose flags a transition cleared; free when it cleared none.
    #[inline]
    fn wake(&self, wake: Wake) {
        if !wake.is_empty() {
            self.wake_contended(wake);
        }
    }

    /// Threads first (waking them runs no user code), then tasks, whose wakers run
    /// isolated (see `user.rs`): a waker that panics wakes nobody less.
    #[cold]
    fn wake_contended(&self, wake: Wake) {
        for waiters in Waiters::ALL {
            if wake.wakes(waiters, Kind::Thread) {
                self.notifier(waiters).wake_threads();
            }
        }
        for waiters in Waiters::ALL {
            if wake.wakes(waiters, Kind::Task) {
                self.notifier(waiters).wake_tasks();
            }
        }
    }
}

/// A thread in the sleeping loop of one group. When the last one leaves (aborted, or
/// woken), it clears the group's thread flag: a wait that ended leaves no flag that
/// would send later transitions down their slow paths (`Notifier::discharge`).
struct Enlisted<'a> {
    gate: &'a Gate,
    waiters: Waiters,
}

impl<'a> Enlisted<'a> {
    fn new(gate: &'a Gate, waiters: Waiters) -> Enlisted<'a> {
        gate.notifier(waiters).enlist();
        Enlisted { gate, waiters }
    }
}

impl Drop for Enlisted<'_> {
    fn drop(&mut self) {
        let flag = self.waiters.flag(Kind::Thread);
        self.gate.notifier(self.waiters).discharge(|| {
            // Relaxed: a flag publishes nothing (see `look`); the fences in
            // `Notifier::enlist` and `discharge` order it against a thread that
            // enlists meanwhile.
            self.gate.hot.state.fetch_and(!flag, Relaxed) & flag != 0
        });
    }
}

#[cfg(feature = "async")]
impl<'a> TaskWait<'a> {
    /// Nothing registered yet: the future has not waited.
    pub(crate) const fn new() -> TaskWait<'a> {
        TaskWait {
            task: None,
            registration: None,
        }
    }

    fn is_new(&self) -> bool {
        self.task.is_none() && self.registration.is_none()
    }
}

#[cfg(feature = "async")]
impl Drop for TaskWait<'_> {
    fn drop(&mut self) {
        if let Some((gate, waiters, key)) = self.task.take() {
            // The last task of its group to stop waiting clears the group's task flag,
            // so a wait that was cancelled costs later transitions nothing. Under the
            // task set's lock: a task that waits from now on registers after this and
            // so sets the flag again after this clears it.
            gate.notifier(waiters).unregister_task(key, || {
                // Relaxed: a flag publishes nothing (see `look`).
                gate.hot.state.fetch_and(!waiters.flag(Kind::Task), Relaxed);
            });
        }
    }
}

/// With the `tokio` feature, a blocking call that is about to sleep on a thread that
/// runs tokio tasks (a worker, or the thread of a current-thread runtime: what
/// `tokio::runtime::worker_index` tells) panics instead: the visit or the guard it
/// waits for may need that very thread, so it could wait forever. Never in
/// `spawn_blocking` or `block_in_place`, and never for a call that needs no sleep. The
/// unwinding leaves nothing behind: the wait's registration and flag go with their
/// guards, and a scoped lockdown backs out (`exclusive.rs`).
#[cfg(all(feature = "tokio", not(all(test, any(loom, shuttle)))))]
#[cold]
fn no_sleep_on_a_tokio_worker(want: Want) {
    if tokio::runtime::worker_index().is_none() {
        return;
    }
    let (call, instead) = match want {
        Want::Open => (
            "a guest's blocking entry (`enter`, `visit`, `read`)",
            "`enter_async`",
        ),
        Want::Drained => ("`Guard::lockdown`", "`lockdown_async`"),
        Want::Phase { .. } | Want::PhaseEnd => ("`Guard::exclusive`", "`exclusive_async`"),
        Want::Done => ("`wait` or `wait_with`", "`wait_async`"),
    };
    panic!(
        "fortress-gate: {call} would put a tokio worker thread to sleep, and the task it \
         waits for may need that thread; use {instead} in async code (or call it from \
         `spawn_blocking` or `block_in_place`)"
    );
}
