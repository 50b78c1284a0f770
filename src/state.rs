//! The state word: one `u64` that says whether the gate is closed, whether the
//! fortress is shut down, how many guests are inside and who may be asleep.
//!
//! Everything here is pure arithmetic on a `Copy` snapshot; the atomics live in
//! `gate.rs`. Keeping the two apart lets the transitions be unit-tested and fuzzed
//! against a plain reference model.
//!
//! # Layout
//!
//! | bits   | name            | meaning while set                                                |
//! |--------|-----------------|------------------------------------------------------------------|
//! | 0      | `LOCKED`        | the gate is closed: new visits wait (set by `lockdown`)          |
//! | 1      | `SHUTDOWN`      | the fortress was killed; permanent                               |
//! | 2      | `GATE_THREADS`  | threads may sleep, waiting for `unlock`                          |
//! | 3      | `GATE_TASKS`    | tasks may be pending, waiting for `unlock`                       |
//! | 4      | `DRAIN_THREADS` | lockdown threads may sleep, waiting for the last guest to leave  |
//! | 5      | `DRAIN_TASKS`   | lockdown tasks may be pending, waiting for the last guest        |
//! | 6      | `DONE_THREADS`  | `wait` threads may sleep, waiting for shutdown with no guest     |
//! | 7      | `DONE_TASKS`    | `wait_async` tasks may be pending, waiting for the same          |
//! | 8      | `OWNED`         | an exclusive phase holds the gate: nobody enters, nothing opens it but its end |
//! | 9      | `SCOPED`        | the last guard operation was a scoped close that shut the open gate |
//! | 10..=33| shuts           | how many scoped closes have shut this open gate (1..2^24-1, wrapping) |
//! | 34..=63| guest count     | visits inside, plus guests that are about to back out            |
//!
//! **The exclusive phase.** A scoped lockdown (`Guard::exclusive` and its forms)
//! completes by setting `OWNED` in the same read-modify-write that finds the gate
//! closed, alive, empty and not owned. `OWNED` implies `LOCKED`, so no guest gets in;
//! `unlock` (any guard's) leaves the gate closed while it is set, a back-out opens
//! nothing, another scoped lockdown waits at the gate until the phase ends, and
//! `wait` waits for the phase too. Only the phase's end clears it, and unlocks in the
//! same step (unless the fortress was killed meanwhile: then it stays closed).
//!
//! **The back-out record.** A scoped lockdown that must wait, and whose own close shut
//! the *open* gate, bumps the shuts field and sets `SCOPED` in that close's
//! read-modify-write; the new shuts value is its record. Every other guard operation
//! clears `SCOPED` (and leaves the field). If the call gives up, it reopens the gate
//! only if `SCOPED` is still set with its record and no phase holds the gate. The field
//! is this fortress's own, and closes of a closed gate never bump it, so a stale
//! back-out can reopen under another guard's *pending* scoped lockdown only if
//! exactly a multiple of 2^24 - 1 (16,777,215) scoped closes shut this same fortress's
//! open gate while it waited; under a *completed* one (a phase) never, because of
//! `OWNED`. The fast paths ignore the field (it is the only part of an open, idle word
//! that may be nonzero).
//!
//! The count sits above the flags and the scope, so adding or removing a guest never
//! carries into or borrows from them: a decrement only follows its own increment, so the count never
//! goes below zero, and the top bit of the count ([`OVERFLOW`]) is a guard that stops
//! admissions long before a carry could leave the word.
//!
//! # Waiters
//!
//! A *waiter* is a call that cannot proceed yet. [`Waiters`] names what it waits for
//! (the gate to open, the fortress to drain, the fortress to be done) and [`Kind`] what
//! it is: a sleeping thread or a pending async task. Each `Waiters` has one notifier in
//! the gate, and each (`Waiters`, `Kind`) pair one flag here, so a wake-up touches only
//! the machinery of the kind that is really waiting: a thread pays nothing for tasks,
//! and a task costs no system call.
//!
//! # The waking rule
//!
//! A flag is set only by a waiter that is about to sleep (or return `Pending`), while
//! its condition does not hold. Every transition ends with [`State::settled`], which
//! clears each flag whose waiters' condition now holds, and whoever clears a flag wakes
//! those waiters ([`State::woken_by`]). So `unlock`, `lockdown` and leaving a visit make
//! no system call and take no lock while the flags are clear, and a pending `wait`
//! costs the guard nothing.

use core::fmt;

/// Bit 0: the gate is closed.
pub const LOCKED: u64 = 1 << 0;
/// Bit 1: the fortress was killed.
pub const SHUTDOWN: u64 = 1 << 1;
/// Bit 2: threads may sleep at the gate. Their condition: the gate is open, or the
/// fortress is killed.
pub const GATE_THREADS: u64 = 1 << 2;
/// Bit 3: tasks may be pending at the gate; same condition.
pub const GATE_TASKS: u64 = 1 << 3;
/// Bit 4: lockdown threads may sleep. Their condition: the gate is closed with no
/// guest inside, or the fortress is killed.
pub const DRAIN_THREADS: u64 = 1 << 4;
/// Bit 5: lockdown tasks may be pending; same condition.
pub const DRAIN_TASKS: u64 = 1 << 5;
/// Bit 6: `wait` threads may sleep. Their condition: the fortress is killed with no
/// guest inside.
pub const DONE_THREADS: u64 = 1 << 6;
/// Bit 7: `wait_async` tasks may be pending; same condition.
pub const DONE_TASKS: u64 = 1 << 7;

/// The flags of the waiters that wait for guests to leave.
#[cfg_attr(not(feature = "read-mostly"), allow(dead_code))]
const SCANNERS: u64 = DRAIN_THREADS | DRAIN_TASKS | DONE_THREADS | DONE_TASKS;
/// The flags of waiting threads.
pub const THREADS: u64 = GATE_THREADS | DRAIN_THREADS | DONE_THREADS;
/// The flags of pending tasks: each sits one bit above its threads' flag.
pub const TASKS: u64 = THREADS << 1;
/// All waiter flags.
pub const WAITERS: u64 = THREADS | TASKS;
/// All flag bits; the scope and the guest count live above them.
pub const FLAGS: u64 = LOCKED | SHUTDOWN | WAITERS;
/// Bit 8: an exclusive phase holds the gate. Implies `LOCKED`.
pub const OWNED: u64 = 1 << FLAGS.count_ones();
/// Bit 9: the last guard operation was a scoped close that shut the open gate, and the
/// shuts field holds its record. Implies `LOCKED` and not `OWNED`.
pub const SCOPED: u64 = OWNED << 1;
/// The lowest bit of the shuts field.
pub const SHUTS_SHIFT: u32 = (FLAGS | OWNED | SCOPED).count_ones();
/// How many bits the shuts field has.
pub const SHUTS_BITS: u32 = 24;
/// The shuts field: how many scoped closes have shut the open gate (never 0 once one
/// has; wraps from 2^24 - 1 to 1).
pub const SHUTS: u64 = ((1 << SHUTS_BITS) - 1) << SHUTS_SHIFT;
/// The shuts field's largest value, and one step of it in place.
const SHUTS_MAX: u32 = (1 << SHUTS_BITS) - 1;
const ONE_SHUT: u64 = 1 << SHUTS_SHIFT;
/// The lowest bit of the guest count.
pub const COUNT_SHIFT: u32 = SHUTS_SHIFT + SHUTS_BITS;
/// One guest, as added to the word.
pub const ONE_GUEST: u64 = 1 << COUNT_SHIFT;
/// The top bit of the count. A count that reaches it (2^29 guests) stops admissions:
/// the process aborts before the count could ever wrap.
pub const OVERFLOW: u64 = 1 << (u64::BITS - 1);
/// The most guests a fortress admits.
pub const MAX_GUESTS: u64 = OVERFLOW >> COUNT_SHIFT;

/// What a waiter waits for: each has a notifier in the gate and two flags here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiters {
    /// Guests waiting for `unlock`.
    Gate,
    /// Lockdowns waiting for the last guest to leave.
    Drain,
    /// `wait` callers waiting for shutdown with no guest inside.
    Done,
}

/// What one waiter waits for: the group it sleeps in, and when it stops waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// A guest: the gate open (group `Gate`).
    Open,
    /// A plain lockdown: no guest inside the closed gate (group `Drain`).
    Drained,
    /// `wait`: the fortress killed, with no guest inside and no phase (group `Done`).
    Done,
    /// A scoped lockdown's drain, whose close left the shuts field at `since`: as
    /// `Drained`, or until the field changes (a phase ended since, or another scoped
    /// close shut the open gate): then it closes again, so that a phase that began and
    /// ended while it looked away cannot leave it waiting on an open gate (group
    /// `Drain`).
    Phase {
        /// The shuts field as its close left it.
        since: u32,
    },
    /// A scoped lockdown waits for another's phase to end (group `Gate`: the end of a
    /// phase opens the gate, or the fortress was killed).
    PhaseEnd,
}

impl Want {
    /// The group this waiter sleeps in: its flags and its notifier.
    #[inline]
    pub const fn group(self) -> Waiters {
        match self {
            Want::Open | Want::PhaseEnd => Waiters::Gate,
            Want::Drained | Want::Phase { .. } => Waiters::Drain,
            Want::Done => Waiters::Done,
        }
    }

    /// What this waiter does in state `s`. Within its group's condition (so a flag
    /// that a transition clears always wakes it), and sometimes sooner.
    #[inline]
    pub const fn decide(self, s: State) -> Decision {
        match self {
            Want::Phase { since } if !s.shut_down() && s.shuts() != since => Decision::Proceed,
            Want::PhaseEnd if !s.shut_down() && !s.owned() => Decision::Proceed,
            _ => s.decide(self.group()),
        }
    }
}

/// How a waiter waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A thread asleep on the notifier's futex counter.
    Thread,
    /// An async task whose waker is in the notifier's task set.
    Task,
}

impl Waiters {
    /// Every group, in flag order.
    pub const ALL: [Waiters; 3] = [Waiters::Gate, Waiters::Drain, Waiters::Done];

    /// The flag that says waiters of this group and kind may exist.
    #[inline]
    pub const fn flag(self, kind: Kind) -> u64 {
        match (self, kind) {
            (Waiters::Gate, Kind::Thread) => GATE_THREADS,
            (Waiters::Gate, Kind::Task) => GATE_TASKS,
            (Waiters::Drain, Kind::Thread) => DRAIN_THREADS,
            (Waiters::Drain, Kind::Task) => DRAIN_TASKS,
            (Waiters::Done, Kind::Thread) => DONE_THREADS,
            (Waiters::Done, Kind::Task) => DONE_TASKS,
        }
    }

    /// Both flags of this group.
    #[inline]
    pub const fn flags(self) -> u64 {
        self.flag(Kind::Thread) | self.flag(Kind::Task)
    }
}

/// The futexes a transition must wake: the waiter flags it cleared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wake(pub u64);

impl Wake {
    /// Nobody to wake: the common case, tested on the fast paths.
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Some waiters of this group must be woken.
    #[cfg_attr(not(any(test, feature = "internals")), allow(dead_code))]
    #[inline]
    pub const fn contains(self, waiters: Waiters) -> bool {
        self.0 & waiters.flags() != 0
    }

    /// Waiters of this group and kind must be woken.
    #[inline]
    pub const fn wakes(self, waiters: Waiters, kind: Kind) -> bool {
        self.0 & waiters.flag(kind) != 0
    }
}

/// What a waiter does next, from [`State::decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Its condition holds: go on (a guest still has to claim its place).
    Proceed,
    /// The fortress is killed: answer `Shutdown`.
    Shutdown,
    /// Wait, unless the abort has fired.
    Wait,
}

/// How a scoped lockdown's close went, from [`State::locked_down_scoped`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// Nobody was inside: the gate is closed and this call's phase holds it.
    Owned,
    /// Guests are inside: drain.
    Drain {
        /// `Some` if this close shut the open gate: the record to back out with.
        record: Option<u32>,
        /// The shuts field as this close left it ([`Want::Phase`]).
        since: u32,
    },
}

/// A snapshot of the state word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct State(pub u64);

impl State {
    /// Open, alive, empty, nobody asleep: what `lockdown` usually finds.
    pub const OPEN: State = State(0);
    /// Locked, alive, empty, nobody asleep: a new fortress, and what `unlock`
    /// usually finds.
    pub const CLOSED: State = State(LOCKED);
    /// A new fortress.
    pub const NEW: State = State::CLOSED;

    /// An exclusive phase holds the gate.
    #[inline]
    pub const fn owned(self) -> bool {
        self.0 & OWNED != 0
    }

    /// The gate is closed.
    #[inline]
    pub const fn locked(self) -> bool {
        self.0 & LOCKED != 0
    }

    /// The fortress was killed.
    #[inline]
    pub const fn shut_down(self) -> bool {
        self.0 & SHUTDOWN != 0
    }

    /// Waiters of this group, of either kind, may exist.
    #[inline]
    pub const fn has_waiters(self, waiters: Waiters) -> bool {
        self.0 & waiters.flags() != 0
    }

    /// Waiters of this group and kind may exist.
    #[inline]
    pub const fn has(self, waiters: Waiters, kind: Kind) -> bool {
        self.0 & waiters.flag(kind) != 0
    }

    /// Guests inside, counting those about to back out.
    #[inline]
    pub const fn guests(self) -> u64 {
        self.0 >> COUNT_SHIFT
    }

    /// Read on the value *before* an optimistic increment: the guest that made it is in.
    /// One mask test covers the closed gate, shutdown and the overflow guard.
    #[inline]
    pub const fn admits(self) -> bool {
        self.0 & (LOCKED | SHUTDOWN | OVERFLOW) == 0
    }

    /// A read-mostly fortress's guests, who count beside the word, may enter: the gate
    /// is open and the fortress alive.
    #[inline]
    #[cfg_attr(not(feature = "read-mostly"), allow(dead_code))]
    pub const fn opens_to_readers(self) -> bool {
        self.0 & (LOCKED | SHUTDOWN) == 0
    }

    /// Lockdowns or `wait` callers are flagged: on a read-mostly fortress a leaving
    /// guest wakes them to scan the counts again ([`State::scanners`]).
    #[inline]
    #[cfg_attr(not(feature = "read-mostly"), allow(dead_code))]
    pub const fn has_scanners(self) -> bool {
        self.0 & SCANNERS != 0
    }

    /// The scanners to wake in this state (their flags stay set): those flagged, if
    /// the gate is closed or killed. On an open gate no scan can succeed, and the next
    /// close scans anyway.
    #[inline]
    #[cfg_attr(not(feature = "read-mostly"), allow(dead_code))]
    pub const fn scanners(self) -> Wake {
        match self.0 & (LOCKED | SHUTDOWN) {
            0 => Wake(0),
            _ => Wake(self.0 & SCANNERS),
        }
    }

    /// The count has reached [`MAX_GUESTS`]: admitting one more guest is refused.
    #[inline]
    pub const fn overflowed(self) -> bool {
        self.0 & OVERFLOW != 0
    }

    /// Whether sleepers of this kind would stop waiting in this state.
    #[inline]
    pub const fn satisfies(self, waiters: Waiters) -> bool {
        let empty = self.guests() == 0;
        match waiters {
            Waiters::Gate => !self.locked() || self.shut_down(),
            // A phase holds the gate only with no visit inside (a guest counted then is
            // bouncing off it): the gate is drained.
            Waiters::Drain => self.shut_down() || (self.locked() && (empty || self.owned())),
            Waiters::Done => self.shut_down() && empty && !self.owned(),
        }
    }

    /// What a waiter of this group does in this state: the one place that decides, for
    /// threads and tasks alike. Precedence: a killed fortress answers `Shutdown`
    /// (`wait` excepted: shutdown is what it waits for); otherwise a call that can
    /// proceed proceeds. Only [`Decision::Wait`] can turn into `Aborted`.
    #[inline]
    pub const fn decide(self, waiters: Waiters) -> Decision {
        match waiters {
            Waiters::Done if self.satisfies(Waiters::Done) => Decision::Proceed,
            Waiters::Done => Decision::Wait,
            _ if self.shut_down() => Decision::Shutdown,
            _ if self.satisfies(waiters) => Decision::Proceed,
            _ => Decision::Wait,
        }
    }

    /// Clears the flag of every kind of sleeper whose condition holds.
    #[inline]
    pub const fn settled(self) -> State {
        let mut clear = 0;
        let mut i = 0;
        while i < Waiters::ALL.len() {
            let waiters = Waiters::ALL[i];
            if self.satisfies(waiters) {
                clear |= waiters.flags();
            }
            i += 1;
        }
        State(self.0 & !clear)
    }

    /// Leaving may have to wake drain or done sleepers: this was the last guest and
    /// one of their flags is set. Read on the value before the decrement.
    #[cfg_attr(not(any(test, feature = "internals")), allow(dead_code))]
    #[inline]
    pub const fn last_out_wakes(self) -> bool {
        self.last_out_wakes_after(1)
    }

    /// As [`State::last_out_wakes`], for `n` guests (or slot references) leaving in one
    /// read-modify-write.
    #[inline]
    pub const fn last_out_wakes_after(self, n: u64) -> bool {
        self.guests() == n && self.0 & (Waiters::Drain.flags() | Waiters::Done.flags()) != 0
    }

    /// One more guest. The caller has checked [`State::overflowed`].
    #[inline]
    pub const fn with_guest(self) -> State {
        State(self.0 + ONE_GUEST)
    }

    /// One guest fewer; the caller settles afterwards. Panics (in debug) if nobody is
    /// inside.
    #[cfg_attr(not(any(test, feature = "internals")), allow(dead_code))]
    #[inline]
    pub fn without_guest(self) -> State {
        debug_assert!(
            self.guests() > 0,
            "a guest left a fortress with nobody inside"
        );
        State(self.0 - ONE_GUEST)
    }

    /// A sharded fortress's guard adds one reference per slot it closes.
    #[inline]
    pub const fn with_references(self, n: u64) -> State {
        State(self.0 + n * ONE_GUEST)
    }

    /// A sharded fortress's guard drops the references of slots it reopens.
    #[inline]
    pub const fn without_references(self, n: u64) -> State {
        State(self.0 - n * ONE_GUEST)
    }

    /// `lockdown`: close the gate (and end any back-out record: a guard acted). A
    /// phase that holds the gate keeps it.
    #[inline]
    pub const fn locked_down(self) -> State {
        State(self.0 & !SCOPED | LOCKED).settled()
    }

    /// The shuts field.
    #[inline]
    pub const fn shuts(self) -> u32 {
        ((self.0 & SHUTS) >> SHUTS_SHIFT) as u32
    }

    /// The shuts field bumped (it skips 0 as it wraps), and its new value.
    #[inline]
    const fn with_next_shuts(self) -> (State, u32) {
        let next = self.shuts() % ((1 << SHUTS_BITS) - 1) + 1;
        (State(self.0 & !SHUTS | (next as u64) << SHUTS_SHIFT), next)
    }

    /// A scoped lockdown's close, when no phase holds the gate. If nobody is inside it
    /// completes at once: the gate is closed and owned ([`Close::Owned`]). Otherwise it
    /// closes the gate as [`State::locked_down`] does and must drain; if it shut the
    /// open gate, it also records a back-out ([`Close::Drain`] with `Some`).
    #[inline]
    pub const fn locked_down_scoped(self) -> (State, Close) {
        debug_assert!(!self.owned());
        if self.guests() == 0 {
            return (State(self.locked_down().0 | OWNED), Close::Owned);
        }
        let (closed, record) = self.locked_down_recording();
        let since = closed.shuts();
        (closed, Close::Drain { record, since })
    }

    /// The close of a scoped lockdown that will drain (a sharded fortress's always
    /// does: its word's count is not its guests): as [`State::locked_down`], and if it
    /// shuts the open gate, with a fresh back-out record, which it returns.
    #[inline]
    pub const fn locked_down_recording(self) -> (State, Option<u32>) {
        debug_assert!(!self.owned());
        if self.locked() {
            return (self.locked_down(), None);
        }
        let (bumped, record) = self.with_next_shuts();
        (State(bumped.0 | SCOPED | LOCKED).settled(), Some(record))
    }

    /// The back-out record that is live now: the shuts field if the last guard
    /// operation was a scoped close that shut the open gate, else 0.
    #[inline]
    pub const fn scope(self) -> u32 {
        if self.0 & SCOPED == 0 {
            return 0;
        }
        self.shuts()
    }

    /// The back-out of the scoped lockdown with `record`: reopen the gate if no other
    /// guard operation came since its close (and the fortress is alive, and no phase
    /// holds the gate).
    #[inline]
    pub const fn backed_out(self, record: u32) -> Option<State> {
        if self.shut_down() || !self.locked() || self.owned() || self.scope() != record {
            return None;
        }
        Some(self.unlocked())
    }

    /// A draining scoped lockdown finds the gate closed, alive and empty: it takes the
    /// gate for its phase. `None` if the gate is not in that state, or a phase holds it.
    #[inline]
    pub const fn claimed(self) -> Option<State> {
        if !self.locked() || self.shut_down() || self.owned() || self.guests() != 0 {
            return None;
        }
        Some(State((self.0 & !SCOPED) | OWNED).settled())
    }

    /// `unlock`: open the gate (and end any back-out record). While a phase holds the
    /// gate, it stays closed: the phase's end opens it.
    #[inline]
    pub const fn unlocked(self) -> State {
        if self.owned() {
            return State(self.0 & !SCOPED).settled();
        }
        State(self.0 & !(LOCKED | SCOPED)).settled()
    }

    /// The end of an exclusive phase: clear the mark and unlock in one step; a killed
    /// fortress stays closed. It bumps the shuts field, so that a scoped lockdown that
    /// drained beside this one and did not see the phase closes again
    /// ([`Want::Phase`]).
    #[inline]
    pub const fn phase_ended(self) -> State {
        debug_assert!(self.owned(), "an exclusive phase ended twice");
        let ended = State(self.with_next_shuts().0 .0 & !OWNED);
        if ended.shut_down() {
            return ended.settled();
        }
        ended.unlocked()
    }

    /// `kill`: shut down for good (and end any back-out record). The lock bit and a
    /// phase's mark are left as they were.
    #[inline]
    pub const fn killed(self) -> State {
        State(self.0 & !SCOPED | SHUTDOWN).settled()
    }

    /// A waiter announces itself before it sleeps.
    #[inline]
    pub const fn with_waiter(self, waiters: Waiters, kind: Kind) -> State {
        State(self.0 | waiters.flag(kind))
    }

    /// The futexes that the transition `self -> new` must wake: those whose flag it
    /// cleared.
    #[inline]
    pub const fn woken_by(self, new: State) -> Wake {
        Wake(self.0 & !new.0 & WAITERS)
    }

    /// The invariant of every settled state: no flag stands for waiters whose
    /// condition holds (they would never be woken).
    pub fn check_invariants(self) -> Result<(), &'static str> {
        match Waiters::ALL
            .into_iter()
            .find(|&w| self.has_waiters(w) && self.satisfies(w))
        {
            Some(Waiters::Gate) => Err("guests asleep on an open or killed fortress"),
            Some(Waiters::Drain) => Err("lockdowns asleep though they could return"),
            Some(Waiters::Done) => Err("wait callers asleep though they could return"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut state = f.debug_struct("State");
        state
            .field("locked", &self.locked())
            .field("shut_down", &self.shut_down())
            .field("guests", &self.guests());
        if self.owned() {
            state.field("owned", &true);
        }
        if self.scope() != 0 {
            state.field("scope", &self.scope());
        }
        state.field("waiters", &WaiterFlags(*self)).finish()
    }
}

/// The waiter flags of a state, listed by name: `[gate threads, drain tasks]`.
struct WaiterFlags(State);

impl fmt::Debug for WaiterFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for waiters in Waiters::ALL {
            for kind in [Kind::Thread, Kind::Task] {
                if self.0.has(waiters, kind) {
                    list.entry(&format_args!("{waiters:?} {kind:?}s"));
                }
            }
        }
        list.finish()
    }
}

/// The guest count would overflow: like `Arc`, abort rather than corrupt the state.
#[cold]
#[inline(never)]
pub(crate) fn too_many_guests() -> ! {
    eprintln!(
        "fortress: more than {} guests at once; aborting",
        MAX_GUESTS
    );
    std::process::abort()
}

/// The guards' fast paths: each moves a word that is *idle* for it (nothing set but
/// the bits named here and the shuts field, whatever that holds) to its next state
/// with plain bit operations. On an idle word each equals the [`State`] method that
/// the slow path applies (tested below), so the fast and slow paths cannot disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastStep {
    /// `lockdown` of the open, empty gate: [`State::locked_down`].
    Close,
    /// `unlock` of the closed gate that no phase holds: [`State::unlocked`].
    Unlock,
    /// A scoped lockdown of the open, empty gate takes it for its phase at once:
    /// [`State::locked_down_scoped`]'s [`Close::Owned`].
    Claim,
    /// The end of a phase that nobody waits beside: [`State::phase_ended`].
    EndPhase,
}

impl FastStep {
    /// The idle word for this step, with the shuts field at 0.
    #[inline]
    pub const fn idle(self) -> State {
        match self {
            FastStep::Close | FastStep::Claim => State::OPEN,
            FastStep::Unlock => State::CLOSED,
            FastStep::EndPhase => State(LOCKED | OWNED),
        }
    }

    /// Whether `s` is idle for this step.
    #[inline]
    pub const fn is_idle(self, s: State) -> bool {
        s.0 & !SHUTS == self.idle().0
    }

    /// The step applied to a word that is idle for it.
    #[inline]
    pub const fn apply(self, s: State) -> State {
        debug_assert!(self.is_idle(s));
        match self {
            FastStep::Close => State(s.0 | LOCKED),
            FastStep::Unlock => State(s.0 & !LOCKED),
            FastStep::Claim => State(s.0 | LOCKED | OWNED),
            FastStep::EndPhase => {
                // The shuts field bumped as `with_next_shuts` does, without its division:
                // it skips 0 as it wraps.
                let bumped = match s.shuts() == SHUTS_MAX {
                    true => s.0 & !SHUTS | ONE_SHUT,
                    false => s.0 + ONE_SHUT,
                };
                State(bumped & !(LOCKED | OWNED))
            }
        }
    }

    /// Whether the step moves the shuts field (the fast paths' guess of it must follow).
    #[inline]
    pub const fn moves_shuts(self) -> bool {
        matches!(self, FastStep::EndPhase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_FLAG_COMBINATIONS: core::ops::RangeInclusive<u64> = 0..=FLAGS;
    const GATE_WAITERS: u64 = Waiters::Gate.flags();
    const DRAIN_WAITERS: u64 = Waiters::Drain.flags();
    const DONE_WAITERS: u64 = Waiters::Done.flags();

    #[test]
    fn layout_is_derived_and_disjoint() {
        assert_eq!(FLAGS, 0b1111_1111);
        assert_eq!((OWNED, SCOPED), (1 << 8, 1 << 9));
        assert_eq!(SHUTS, 0xff_ffff << 10);
        assert_eq!(COUNT_SHIFT, 34);
        assert_eq!(ONE_GUEST & (FLAGS | OWNED | SCOPED | SHUTS), 0);
        assert_eq!(SHUTS & (FLAGS | OWNED | SCOPED), 0);
        assert_eq!(MAX_GUESTS, 1 << 29);
        assert_eq!(THREADS & TASKS, 0);
        for waiters in Waiters::ALL {
            assert_eq!(waiters.flag(Kind::Task), waiters.flag(Kind::Thread) << 1);
        }
        assert_eq!(OVERFLOW & (FLAGS | OWNED | SCOPED | SHUTS), 0);
    }

    #[test]
    fn the_fast_path_states_are_the_transitions_of_each_other() {
        assert_eq!(State::OPEN.locked_down(), State::CLOSED);
        assert_eq!(State::CLOSED.unlocked(), State::OPEN);
        assert!(State::OPEN.woken_by(State::CLOSED).is_empty());
        assert!(State::CLOSED.woken_by(State::OPEN).is_empty());
        // Whatever the shuts field says, the fast paths flip the lock bit alone.
        let used = State(7 << SHUTS_SHIFT);
        assert!(FastStep::Close.is_idle(used) && !FastStep::Unlock.is_idle(used));
        assert_eq!(used.locked_down(), State(used.0 | LOCKED));
        assert!(FastStep::Unlock.is_idle(State(used.0 | LOCKED)));
        assert_eq!(State(used.0 | LOCKED).unlocked(), used);
        assert!(!FastStep::Unlock.is_idle(State(OWNED | LOCKED)));
        assert!(!FastStep::Unlock.is_idle(State(SCOPED | LOCKED)));
    }

    /// A scoped close of the open gate with a guest inside: its state and its record.
    fn scoped_close_with_a_guest(s: State) -> (State, u32) {
        match s.with_guest().locked_down_scoped() {
            (
                closed,
                Close::Drain {
                    record: Some(record),
                    since,
                },
            ) => {
                assert_eq!(since, record);
                (closed, record)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_scoped_close_backs_out_only_if_no_guard_acted_since() {
        let open = State::OPEN.with_guest();
        let (mine, record) = scoped_close_with_a_guest(State::OPEN);
        assert!(mine.locked() && mine.scope() == record && record != 0);
        assert_eq!(mine.backed_out(record).map(|s| s.0 & !SHUTS), Some(open.0));
        assert_eq!(mine.backed_out(record + 1), None, "another record");
        // Any other guard operation since the close leaves the state to it.
        assert_eq!(mine.locked_down().backed_out(record), None);
        assert_eq!(mine.locked_down_scoped().0.backed_out(record), None);
        assert_eq!(mine.unlocked().backed_out(record), None);
        let (again, second) = scoped_close_with_a_guest(mine.without_guest().unlocked());
        assert_ne!(
            second, record,
            "each shut of the open gate has its own record"
        );
        assert_eq!(again.backed_out(record), None);
        assert_eq!(mine.killed().backed_out(record), None);
        // A gate that was closed already is not this call's to reopen, and its close
        // leaves the shuts field alone.
        let (closed, close) = State::CLOSED.with_guest().locked_down_scoped();
        assert_eq!(
            close,
            Close::Drain {
                record: None,
                since: 0
            }
        );
        assert_eq!(closed.scope(), 0);
        assert_eq!(closed.0 & SHUTS, 0);
        // The fast paths see an idle word once the record is over.
        assert!(FastStep::Close.is_idle(mine.without_guest().unlocked()));
    }

    #[test]
    fn the_shuts_field_wraps_past_its_width_without_zero_and_within_its_bits() {
        let top = (1 << SHUTS_BITS) - 1;
        let s = State((top as u64) << SHUTS_SHIFT);
        let (closed, record) = scoped_close_with_a_guest(s);
        assert_eq!(record, 1, "after the largest record comes 1, never 0");
        assert_eq!(closed.guests(), 1, "the count is untouched");
        assert_eq!(closed.0 & FLAGS, LOCKED);
    }

    #[test]
    fn a_scoped_close_of_an_empty_gate_owns_it_at_once() {
        for start in [State::OPEN, State::CLOSED] {
            let (owned, close) = start.locked_down_scoped();
            assert_eq!(close, Close::Owned);
            assert!(owned.locked() && owned.owned() && owned.scope() == 0);
        }
    }

    #[test]
    fn a_phase_holds_the_gate_against_every_guard_until_it_ends() {
        let (closed, record) = scoped_close_with_a_guest(State::OPEN);
        let drained = closed.without_guest();
        let owned = drained.claimed().expect("closed and empty: claimed");
        assert!(owned.owned() && owned.scope() == 0);
        assert_eq!(owned.claimed(), None, "one phase at a time");
        assert!(!owned.admits(), "no guest gets in");
        assert!(
            owned.unlocked().locked() && owned.unlocked().owned(),
            "unlock opens nothing"
        );
        assert_eq!(owned.backed_out(record), None, "a back-out opens nothing");
        assert!(
            owned.locked_down().owned(),
            "a plain lockdown keeps the phase"
        );
        assert_eq!(owned.decide(Waiters::Drain), Decision::Proceed);
        let ended = owned.locked_down().unlocked().phase_ended();
        assert!(
            !ended.locked() && !ended.owned(),
            "the end unlocks in one step"
        );
        // Killed during the phase: it stays closed, and `wait` waits for the end.
        let killed = owned.killed();
        assert!(!killed.satisfies(Waiters::Done));
        let after = killed.phase_ended();
        assert!(after.locked() && !after.owned() && after.satisfies(Waiters::Done));
        assert_eq!(State(DONE_THREADS).killed().claimed(), None);
        // A gate with a guest inside, or open, cannot be claimed.
        assert_eq!(closed.claimed(), None);
        assert_eq!(State::OPEN.claimed(), None);
    }

    #[test]
    fn a_scoped_drain_that_missed_a_whole_phase_closes_again() {
        let (closed, record) = scoped_close_with_a_guest(State::OPEN);
        let want = Want::Phase { since: record };
        assert_eq!(want.decide(closed), Decision::Wait, "a guest is inside");
        // Another guard's phase begins and ends while this drain looks away.
        let phase = closed.without_guest().claimed().unwrap();
        assert_eq!(want.decide(phase), Decision::Proceed);
        let after = phase.phase_ended();
        assert!(!after.locked(), "the phase's end opened the gate");
        assert_eq!(want.decide(after), Decision::Proceed, "close again");
        assert_eq!(
            Want::Drained.decide(after),
            Decision::Wait,
            "a plain one waits"
        );
        // A phase's end waiter proceeds as soon as no phase holds the gate.
        assert_eq!(Want::PhaseEnd.decide(phase), Decision::Wait);
        assert_eq!(Want::PhaseEnd.decide(closed), Decision::Proceed);
        assert_eq!(Want::PhaseEnd.decide(phase.killed()), Decision::Shutdown);
    }

    #[test]
    fn the_end_of_a_phase_wakes_the_guests_at_the_gate_and_done_waiters_of_a_killed_fortress() {
        let owned = State(LOCKED | OWNED | GATE_WAITERS);
        assert_eq!(owned.woken_by(owned.phase_ended()), Wake(GATE_WAITERS));
        let killed = State(LOCKED | OWNED | SHUTDOWN | DONE_WAITERS);
        assert_eq!(killed.woken_by(killed.phase_ended()), Wake(DONE_WAITERS));
    }

    #[test]
    fn a_new_fortress_is_locked_alive_and_empty() {
        let s = State::NEW;
        assert!(s.locked() && !s.shut_down());
        assert_eq!(s.guests(), 0);
        assert!(s.check_invariants().is_ok());
    }

    #[test]
    fn count_changes_never_touch_the_flags() {
        for flags in ALL_FLAG_COMBINATIONS {
            let mut s = State(flags);
            for n in 1..=1000 {
                s = s.with_guest();
                assert_eq!(s.0 & FLAGS, flags);
                assert_eq!(s.guests(), n);
            }
            for n in (0..1000).rev() {
                s = s.without_guest();
                assert_eq!(s.0 & FLAGS, flags);
                assert_eq!(s.guests(), n);
            }
        }
    }

    #[test]
    fn the_overflow_guard_refuses_admission_before_the_count_can_wrap() {
        let below = State((MAX_GUESTS - 1) << COUNT_SHIFT);
        assert!(below.admits(), "the last guest below the limit is admitted");
        let at_limit = below.with_guest();
        assert_eq!(at_limit.guests(), MAX_GUESTS);
        assert!(at_limit.overflowed() && !at_limit.admits());
        // Even the increment of a refused guest keeps the flags intact.
        let past = at_limit.with_guest();
        assert_eq!(past.0 & FLAGS, 0);
    }

    #[test]
    fn admits_only_an_open_live_fortress() {
        for flags in ALL_FLAG_COMBINATIONS {
            let s = State(flags | (3 << COUNT_SHIFT));
            assert_eq!(s.admits(), flags & (LOCKED | SHUTDOWN) == 0, "{s:?}");
        }
    }

    #[test]
    fn unlock_wakes_gate_waiters_only() {
        let s = State(LOCKED | GATE_WAITERS | DRAIN_WAITERS | DONE_WAITERS | ONE_GUEST);
        let n = s.unlocked();
        assert!(!n.locked());
        assert_eq!(s.woken_by(n), Wake(GATE_WAITERS));
    }

    #[test]
    fn lockdown_of_an_empty_fortress_wakes_pending_lockdowns_but_not_wait() {
        let empty = State(DRAIN_WAITERS | DONE_WAITERS);
        let n = empty.locked_down();
        assert!(n.locked() && n.guests() == 0);
        assert_eq!(empty.woken_by(n), Wake(DRAIN_WAITERS));

        let busy = State(DRAIN_WAITERS | ONE_GUEST);
        assert!(busy.woken_by(busy.locked_down()).is_empty());
    }

    #[test]
    fn kill_wakes_gate_and_drain_and_keeps_the_lock_bit() {
        for flags in ALL_FLAG_COMBINATIONS {
            let s = State(flags | ONE_GUEST);
            let n = s.killed();
            assert!(n.shut_down());
            assert_eq!(n.locked(), s.locked());
            assert_eq!(n.guests(), 1);
            // With a guest inside, `wait` callers keep sleeping until it leaves.
            assert_eq!(s.woken_by(n), Wake(flags & (GATE_WAITERS | DRAIN_WAITERS)));
        }
        let empty = State(DONE_WAITERS);
        assert_eq!(empty.woken_by(empty.killed()), Wake(DONE_WAITERS));
    }

    #[test]
    fn the_last_guest_out_wakes_only_sleepers_that_can_proceed() {
        let cases = [
            (LOCKED | DRAIN_WAITERS, Wake(DRAIN_WAITERS)),
            (DRAIN_WAITERS, Wake(0)), // gate reopened: the lockdown keeps waiting
            (SHUTDOWN | DONE_WAITERS, Wake(DONE_WAITERS)),
            (DONE_WAITERS, Wake(0)),
            (LOCKED | DONE_WAITERS, Wake(0)),
        ];
        for (flags, wake) in cases {
            let before = State(flags | ONE_GUEST);
            assert!(before.last_out_wakes());
            let left = before.without_guest();
            assert_eq!(left.woken_by(left.settled()), wake, "{before:?}");
        }
        assert!(!State(LOCKED | DRAIN_WAITERS | (2 * ONE_GUEST)).last_out_wakes());
        assert!(!State(LOCKED | GATE_WAITERS | ONE_GUEST).last_out_wakes());
    }

    #[test]
    fn settled_states_satisfy_the_invariants() {
        for flags in ALL_FLAG_COMBINATIONS {
            for guests in 0..3 {
                let s = State(flags | (guests << COUNT_SHIFT)).settled();
                assert_eq!(s.check_invariants(), Ok(()), "{s:?}");
                assert_eq!(s.settled(), s, "settling twice changes nothing");
            }
        }
        assert!(State(GATE_WAITERS).check_invariants().is_err());
    }

    #[test]
    fn every_fast_step_equals_its_slow_path_on_every_idle_word() {
        let shuts = [0, 1, 2, (1 << SHUTS_BITS) - 2, (1 << SHUTS_BITS) - 1];
        let steps = [
            FastStep::Close,
            FastStep::Unlock,
            FastStep::Claim,
            FastStep::EndPhase,
        ];
        for step in steps {
            for shuts in shuts {
                let s = State(step.idle().0 | (shuts as u64) << SHUTS_SHIFT);
                assert!(step.is_idle(s));
                let slow = match step {
                    FastStep::Close => s.locked_down(),
                    FastStep::Unlock => s.unlocked(),
                    FastStep::Claim => {
                        assert_eq!(s.locked_down_scoped().1, Close::Owned);
                        s.locked_down_scoped().0
                    }
                    FastStep::EndPhase => s.phase_ended(),
                };
                assert_eq!(step.apply(s), slow, "{step:?} from {s:?}");
                assert_eq!(step.moves_shuts(), slow.shuts() != s.shuts(), "{step:?}");
            }
            // Anything else set makes the word not idle for the step.
            for bit in [
                SHUTDOWN,
                GATE_THREADS,
                DRAIN_TASKS,
                DONE_THREADS,
                SCOPED,
                ONE_GUEST,
            ] {
                assert!(
                    !step.is_idle(State(step.idle().0 | bit)),
                    "{step:?} {bit:#x}"
                );
            }
        }
    }

    #[test]
    fn debug_decodes_the_word() {
        let s = State(LOCKED | GATE_THREADS | DRAIN_TASKS | (2 * ONE_GUEST));
        assert_eq!(
            format!("{s:?}"),
            "State { locked: true, shut_down: false, guests: 2, \
             waiters: [Gate Threads, Drain Tasks] }"
        );
        let s = State(LOCKED | OWNED | (5 << SHUTS_SHIFT));
        assert_eq!(
            format!("{s:?}"),
            "State { locked: true, shut_down: false, guests: 0, owned: true, waiters: [] }"
        );
    }
}
