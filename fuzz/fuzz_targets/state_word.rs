//! Applies arbitrary operation sequences to the pure state-word type and compares
//! every step with a plain reference model: locked? shut down? how many guests? which
//! sleepers are flagged, and who must be woken?
#![no_main]

use arbitrary::Arbitrary;
use fortress_gate::internals::{State, Waiters, Wake};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    /// A guest's optimistic increment, kept or backed out.
    Enter,
    /// A visit ends (ignored when nobody is inside).
    Leave,
    Unlock,
    Lockdown,
    Kill,
    /// A sleeper announces itself (only when its condition does not hold, as the
    /// sleeping loop does).
    Sleep(Kind),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Kind {
    Gate,
    Drain,
    Done,
}

impl Kind {
    fn waiters(self) -> Waiters {
        match self {
            Kind::Gate => Waiters::Gate,
            Kind::Drain => Waiters::Drain,
            Kind::Done => Waiters::Done,
        }
    }
}

/// The reference: plain fields and the rules written out longhand.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Model {
    locked: bool,
    shut_down: bool,
    guests: u64,
    gate: bool,
    drain: bool,
    done: bool,
}

#[derive(Debug, Default, PartialEq)]
struct Woken {
    gate: bool,
    drain: bool,
    done: bool,
}

impl Model {
    fn gate_may_proceed(&self) -> bool {
        !self.locked || self.shut_down
    }
    fn drain_may_proceed(&self) -> bool {
        self.shut_down || (self.locked && self.guests == 0)
    }
    fn done_may_proceed(&self) -> bool {
        self.shut_down && self.guests == 0
    }
    /// Clears every flag whose sleepers may now proceed, and says whom to wake.
    fn wake_ready(&mut self) -> Woken {
        let woken = Woken {
            gate: self.gate && self.gate_may_proceed(),
            drain: self.drain && self.drain_may_proceed(),
            done: self.done && self.done_may_proceed(),
        };
        self.gate &= !woken.gate;
        self.drain &= !woken.drain;
        self.done &= !woken.done;
        woken
    }
}

fn decode(s: State) -> Model {
    Model {
        locked: s.locked(),
        shut_down: s.shut_down(),
        guests: s.guests(),
        gate: s.has_waiters(Waiters::Gate),
        drain: s.has_waiters(Waiters::Drain),
        done: s.has_waiters(Waiters::Done),
    }
}

fn woken(w: Wake) -> Woken {
    Woken {
        gate: w.contains(Waiters::Gate),
        drain: w.contains(Waiters::Drain),
        done: w.contains(Waiters::Done),
    }
}

/// Runs `op` on the real state type as `gate.rs` does, returning the new state and
/// whom it wakes.
fn step(s: State, op: Op) -> (State, Wake) {
    match op {
        Op::Enter => {
            let old = s;
            let added = old.with_guest();
            if old.admits() {
                (added, Wake::default())
            } else {
                leave(added)
            }
        }
        Op::Leave => leave(s),
        Op::Unlock if !s.shut_down() => {
            let n = s.unlocked();
            (n, s.woken_by(n))
        }
        Op::Lockdown if !s.shut_down() => {
            let n = s.locked_down();
            (n, s.woken_by(n))
        }
        Op::Kill if !s.shut_down() => {
            let n = s.killed();
            (n, s.woken_by(n))
        }
        Op::Unlock | Op::Lockdown | Op::Kill => (s, Wake::default()),
        Op::Sleep(kind) => {
            let w = kind.waiters();
            if s.satisfies(w) {
                (s, Wake::default())
            } else {
                (s.with_waiters(w), Wake::default())
            }
        }
    }
}

/// `Gate::leave`: the `fetch_sub`, then settling only if the old value says so.
fn leave(old: State) -> (State, Wake) {
    let left = old.without_guest();
    if old.last_out_wakes() {
        let settled = left.settled();
        (settled, left.woken_by(settled))
    } else {
        (left, Wake::default())
    }
}

/// The same operation on the reference model.
fn model_step(m: &mut Model, op: Op) -> Woken {
    match op {
        Op::Enter => {
            if !m.locked && !m.shut_down {
                m.guests += 1;
            }
            Woken::default() // a guest that backs out leaves things as they were
        }
        Op::Leave => {
            m.guests -= 1;
            m.wake_ready()
        }
        Op::Unlock if !m.shut_down => {
            m.locked = false;
            m.wake_ready()
        }
        Op::Lockdown if !m.shut_down => {
            m.locked = true;
            m.wake_ready()
        }
        Op::Kill if !m.shut_down => {
            m.shut_down = true;
            m.wake_ready()
        }
        Op::Unlock | Op::Lockdown | Op::Kill => Woken::default(),
        Op::Sleep(kind) => {
            match kind {
                Kind::Gate if !m.gate_may_proceed() => m.gate = true,
                Kind::Drain if !m.drain_may_proceed() => m.drain = true,
                Kind::Done if !m.done_may_proceed() => m.done = true,
                _ => {}
            }
            Woken::default()
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut state = State::NEW;
    let mut model = Model {
        locked: true,
        ..Model::default()
    };
    for op in ops {
        if matches!(op, Op::Leave) && model.guests == 0 {
            continue; // only a visit that started can end
        }
        let (next, wake) = step(state, op);
        let expected = model_step(&mut model, op);
        assert_eq!(decode(next), model, "after {op:?} from {state:?}");
        assert_eq!(woken(wake), expected, "wake-ups of {op:?} from {state:?}");
        assert_eq!(next.check_invariants(), Ok(()), "after {op:?}: {next:?}");
        assert_eq!(next.0 & !fortress_gate::internals::FLAGS, model.guests << fortress_gate::internals::COUNT_SHIFT);
        state = next;
    }
});
