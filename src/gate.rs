//! The gate: the state word and the three futexes its sleepers wait on, and every
//! transition of the fortress.
//!
//! Guests enter optimistically: one `fetch_add` on the state word, then a look at the
//! value it replaced. If the gate was open the guest is in; otherwise it backs out with
//! the same `fetch_sub` that ends a visit, so a lockdown waiting for the count to reach
//! zero is woken by whichever guest leaves last, visitor or not. Because the lock flag
//! and the count share one word, every `fetch_add` is ordered against the `lockdown`
//! that closes the gate: either it came first (the guest is inside and the lockdown
//! waits for it) or it sees the flag (and backs out).

use crate::abort::Abort;
use crate::error::Error;
use crate::state::{State, Waiters, Wake, ONE_GUEST};
use crate::sync::{
    Arc, AtomicU64, Futex,
    Ordering::{self, AcqRel, Acquire, Relaxed, Release},
    Spin,
};
use crossbeam_utils::CachePadded;

/// The shared core of a fortress; `Fortress`, `Guard` and `Guest` are `Arc`s of it.
pub(crate) struct Gate {
    /// The state word; its layout is in `state.rs`. Padded so that the guests'
    /// read-modify-writes do not share a cache line with anything else.
    state: CachePadded<AtomicU64>,
    /// Guests waiting for `unlock` sleep here (flag `GATE_WAITERS`).
    gate: Futex,
    /// Lockdowns waiting for the last guest to leave sleep here (flag `DRAIN_WAITERS`).
    drain: Futex,
    /// `wait` callers sleep here (flag `DONE_WAITERS`).
    done: Futex,
}

/// What a sleeper's re-check decided.
enum Step<T> {
    /// Stop waiting with this result.
    Done(Result<T, Error>),
    /// The state changed under a compare-exchange: look again at once.
    Retry,
    /// The condition does not hold: sleep (unless aborted).
    Sleep,
}

impl Gate {
    pub(crate) fn new() -> Gate {
        Gate {
            state: CachePadded::new(AtomicU64::new(State::NEW.0)),
            gate: Futex::new(),
            drain: Futex::new(),
            done: Futex::new(),
        }
    }

    /// A snapshot, for diagnostics and `Visit::lockdown_pending`.
    #[inline]
    pub(crate) fn snapshot(&self) -> State {
        State(self.state.load(Relaxed))
    }

    pub(crate) fn futex(&self, waiters: Waiters) -> &Futex {
        match waiters {
            Waiters::Gate => &self.gate,
            Waiters::Drain => &self.drain,
            Waiters::Done => &self.done,
        }
    }

    /// Starts a visit, waiting while the gate is closed.
    #[inline]
    pub(crate) fn enter(this: &Arc<Self>, abort: &Abort) -> Result<(), Error> {
        // Acquire: pairs with the Release in `unlock`, so whatever the guard wrote
        // while the fortress was locked is visible inside the visit.
        let old = State(this.state.fetch_add(ONE_GUEST, Acquire));
        if old.admits() {
            return Ok(());
        }
        Gate::enter_contended(this, old, abort)
    }

    /// Starts a visit if the gate is open; never waits.
    #[inline]
    pub(crate) fn try_enter(&self) -> bool {
        // Acquire: as in `enter`.
        let old = State(self.state.fetch_add(ONE_GUEST, Acquire));
        if old.admits() {
            return true;
        }
        self.back_out(old);
        false
    }

    /// Undoes a refused optimistic increment.
    #[cold]
    fn back_out(&self, old: State) {
        if old.overflowed() {
            too_many_guests();
        }
        self.leave();
    }

    #[cold]
    fn enter_contended(this: &Arc<Self>, old: State, abort: &Abort) -> Result<(), Error> {
        this.back_out(old);
        Gate::wait_until(this, Waiters::Gate, abort, |s| {
            if s.shut_down() {
                Step::Done(Err(Error::Shutdown))
            } else if s.locked() {
                Step::Sleep
            } else {
                if s.overflowed() {
                    too_many_guests();
                }
                // Acquire: as in `enter`. A compare-exchange, not a `fetch_add`, so
                // a crowd of woken guests cannot bounce off a gate that closes again.
                match this
                    .state
                    .compare_exchange_weak(s.0, s.with_guest().0, Acquire, Relaxed)
                {
                    Ok(_) => Step::Done(Ok(())),
                    Err(_) => Step::Retry,
                }
            }
        })
    }

    /// Ends a visit (or backs out of one that was refused).
    #[inline]
    pub(crate) fn leave(&self) {
        // Release: pairs with the Acquire in `lockdown` and `wait`, so everything the
        // visit did happens before the guard's exclusive phase.
        let old = State(self.state.fetch_sub(ONE_GUEST, Release));
        debug_assert!(old.guests() > 0, "a visit ended twice: {old:?}");
        if old.last_out_wakes() {
            self.leave_contended();
        }
    }

    /// The last guest left while lockdowns or `wait` callers may sleep: settle the word
    /// and wake whoever can now proceed. If someone entered since, the flags stay for
    /// the guest that leaves last.
    #[cold]
    fn leave_contended(&self) {
        // Relaxed: this read-modify-write continues the release sequence of the
        // `fetch_sub`s before it, so sleepers that read it still synchronize with
        // every guest that left.
        let settled = self.update(Relaxed, |s| {
            let settled = s.settled();
            (settled != s).then_some(settled)
        });
        if let Ok((old, new)) = settled {
            self.wake(old.woken_by(new));
        }
    }

    /// Opens the gate and wakes the guests waiting at it.
    #[inline]
    pub(crate) fn unlock(&self) -> Result<(), Error> {
        // The common case in one compare-exchange: closed, empty, nobody asleep.
        // Release: pairs with the Acquire in `enter`; the guard's writes during its
        // exclusive phase happen before every visit it now admits.
        let fast = self
            .state
            .compare_exchange(State::CLOSED.0, State::OPEN.0, Release, Relaxed);
        if fast.is_ok() {
            return Ok(());
        }
        self.unlock_slow()
    }

    #[cold]
    fn unlock_slow(&self) -> Result<(), Error> {
        // Release: as in `unlock`.
        let (old, new) = self
            .update(Release, |s| (!s.shut_down()).then(|| s.unlocked()))
            .map_err(|_| Error::Shutdown)?;
        self.wake(old.woken_by(new));
        Ok(())
    }

    /// Closes the gate, then waits until no guest is inside.
    #[inline]
    pub(crate) fn lockdown(this: &Arc<Self>, abort: &Abort) -> Result<(), Error> {
        // The common case in one compare-exchange: open, empty, nobody asleep.
        // Acquire: pairs with the Release in `leave`; every visit that ended happens
        // before the guard's exclusive phase.
        let fast = this
            .state
            .compare_exchange(State::OPEN.0, State::CLOSED.0, Acquire, Relaxed);
        if fast.is_ok() {
            return Ok(());
        }
        Gate::lockdown_slow(this, abort)
    }

    #[cold]
    fn lockdown_slow(this: &Arc<Self>, abort: &Abort) -> Result<(), Error> {
        // Acquire: as in `lockdown`.
        let (old, new) = this
            .update(Acquire, |s| (!s.shut_down()).then(|| s.locked_down()))
            .map_err(|_| Error::Shutdown)?;
        this.wake(old.woken_by(new));
        if new.guests() == 0 {
            return Ok(());
        }
        Gate::lockdown_contended(this, abort)
    }

    #[cold]
    fn lockdown_contended(this: &Arc<Self>, abort: &Abort) -> Result<(), Error> {
        Gate::wait_until(this, Waiters::Drain, abort, |s| {
            if s.shut_down() {
                Step::Done(Err(Error::Shutdown))
            } else if s.locked() && s.guests() == 0 {
                Step::Done(Ok(()))
            } else {
                // Guests inside, or another guard reopened the gate: keep waiting.
                Step::Sleep
            }
        })
    }

    /// Shuts the fortress down for good and wakes every sleeper.
    pub(crate) fn kill(&self) {
        // AcqRel: Release pairs with the Acquire of every operation that then answers
        // `Shutdown`, so what happened before `kill` is visible to them.
        if let Ok((old, new)) = self.update(AcqRel, |s| (!s.shut_down()).then(|| s.killed())) {
            self.wake(old.woken_by(new));
        }
    }

    /// Blocks until the fortress is killed and no visit is running.
    pub(crate) fn wait_done(this: &Arc<Self>) {
        let done = Gate::wait_until(this, Waiters::Done, &Abort::never(), |s| {
            if s.shut_down() && s.guests() == 0 {
                Step::Done(Ok(()))
            } else {
                Step::Sleep
            }
        });
        debug_assert!(done.is_ok());
    }

    /// The one sleeping loop. `poll` looks at a fresh state and decides; `Sleep` means
    /// announce ourselves with the `waiters` flag and sleep on its futex, unless the
    /// abort has fired. Precedence (SPEC rule 9): whatever `poll` decides comes first,
    /// so an abort only cuts short a call that would really wait.
    fn wait_until<T>(
        this: &Arc<Self>,
        waiters: Waiters,
        abort: &Abort,
        mut poll: impl FnMut(State) -> Step<T>,
    ) -> Result<T, Error> {
        // A short spin first: most visits and most lockdowns are brief.
        let mut spin = Spin::new();
        loop {
            // Acquire: as in the sleeping loop below.
            match poll(State(this.state.load(Acquire))) {
                Step::Done(result) => return result,
                Step::Retry => continue,
                Step::Sleep if abort.is_aborted() => return Err(Error::Aborted),
                Step::Sleep if spin.spin() => continue,
                Step::Sleep => break,
            }
        }

        let _registration = abort.register(this, waiters);
        let futex = this.futex(waiters);
        loop {
            // Read the counter before the state: see `Futex`.
            let seq = futex.seq();
            // Acquire: pairs with the Release of `leave`, `unlock` and `kill`, so a
            // lockdown that returns here sees every visit's effects.
            let s = State(this.state.load(Acquire));
            match poll(s) {
                Step::Done(result) => return result,
                Step::Retry => continue,
                Step::Sleep => {}
            }
            if abort.is_aborted() {
                return Err(Error::Aborted);
            }
            if !s.has_waiters(waiters) {
                // Relaxed: setting the flag publishes nothing; the waker reads it
                // with its own read-modify-write, which always sees the latest value.
                let flagged = s.with_waiters(waiters);
                debug_assert!(
                    !s.satisfies(waiters),
                    "would sleep on a met condition: {s:?}"
                );
                if this
                    .state
                    .compare_exchange(s.0, flagged.0, Relaxed, Relaxed)
                    .is_err()
                {
                    continue;
                }
            }
            futex.wait(seq);
        }
    }

    /// Applies `f` to the word until a compare-exchange succeeds, or `f` declines.
    /// Returns the values before and after, or the value `f` declined.
    #[inline]
    fn update(
        &self,
        success: Ordering,
        mut f: impl FnMut(State) -> Option<State>,
    ) -> Result<(State, State), State> {
        let mut current = State(self.state.load(Relaxed));
        loop {
            let new = f(current).ok_or(current)?;
            match self
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

    /// Wakes the futexes whose flags a transition cleared; free when it cleared none.
    #[inline]
    fn wake(&self, wake: Wake) {
        if !wake.is_empty() {
            self.wake_contended(wake);
        }
    }

    #[cold]
    fn wake_contended(&self, wake: Wake) {
        for waiters in Waiters::ALL {
            if wake.contains(waiters) {
                self.futex(waiters).wake_all();
            }
        }
    }
}

/// The guest count would overflow: like `Arc`, abort rather than corrupt the state.
#[cold]
#[inline(never)]
fn too_many_guests() -> ! {
    eprintln!(
        "fortress: more than {} guests at once; aborting",
        crate::state::MAX_GUESTS
    );
    std::process::abort()
}
