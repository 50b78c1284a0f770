//! Drives the state word through the pure functions that `gate.rs` calls, in the order
//! it calls them, and compares every step with a reference model written longhand:
//! plain bools and a count, who may proceed, which flags each operation leaves, and
//! which waiters it must wake.
//!
//! Only the sequencing of `gate.rs` around those functions is repeated here (its fast
//! paths, the shutdown refusal inside its `update` closures, `leave` = `fetch_sub` then
//! settle if `last_out_wakes`); each such spot names the function it follows.
#![no_main]

use arbitrary::Arbitrary;
use fortress_gate::internals::{Decision, Kind, State, Waiters, Wake, MAX_GUESTS, ONE_GUEST};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Op {
    /// A guest's optimistic `fetch_add`: it is in, or it stays counted until it backs
    /// out with a `Leave`, as any other guest can do meanwhile.
    Knock,
    /// A guest leaves: a visit that ends, or a refused guest backing out (skipped when
    /// nobody is inside).
    Leave,
    Unlock,
    Lockdown,
    Kill,
    /// A waiter looks at the word: it proceeds (a guest claims its place), answers
    /// `Shutdown`, or flags itself and sleeps.
    Look {
        group: Group,
        task: bool,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Group {
    Gate,
    Drain,
    Done,
}

const GROUPS: [Group; 3] = [Group::Gate, Group::Drain, Group::Done];

impl Group {
    fn real(self) -> Waiters {
        match self {
            Group::Gate => Waiters::Gate,
            Group::Drain => Waiters::Drain,
            Group::Done => Waiters::Done,
        }
    }
}

fn kind(task: bool) -> Kind {
    if task {
        Kind::Task
    } else {
        Kind::Thread
    }
}

/// What an operation answered.
#[derive(Debug, PartialEq)]
enum Answer {
    Ok,
    Shutdown,
    /// A knock that got in, or one that must back out.
    In,
    Bounced,
    /// A lockdown closed the gate; `true` if nobody was inside.
    Closed {
        drained: bool,
    },
    Decided(Decision),
    /// One guest too many: the process aborts.
    TooMany,
}

/// Per (group, kind): a waiter flag, or a wake-up.
type Flags = [[bool; 2]; 3];

/// The reference: the fortress in plain fields. `flags[group][task]`: such waiters may
/// be asleep.
#[derive(Debug, Default, PartialEq)]
struct Model {
    locked: bool,
    shut_down: bool,
    guests: u64,
    flags: Flags,
}

impl Model {
    /// What a waiter of `group` does. Shutdown comes first, except for `wait`, which
    /// waits for it.
    fn decide(&self, group: Group) -> Decision {
        let empty = self.guests == 0;
        let proceed = match group {
            Group::Done if self.shut_down && empty => true,
            Group::Done => false,
            _ if self.shut_down => return Decision::Shutdown,
            Group::Gate => !self.locked,
            Group::Drain => self.locked && empty,
        };
        if proceed {
            Decision::Proceed
        } else {
            Decision::Wait
        }
    }

    /// Wakes whoever is flagged in these groups.
    fn wake(&mut self, groups: &[Group]) -> Flags {
        let mut woken = Flags::default();
        for &g in groups {
            woken[g as usize] = std::mem::take(&mut self.flags[g as usize]);
        }
        woken
    }

    fn step(&mut self, op: Op) -> (Answer, Flags) {
        let nobody = Flags::default();
        match op {
            Op::Knock if self.guests == MAX_GUESTS => (Answer::TooMany, nobody),
            Op::Knock => {
                // Counted either way; a new guest never lets anyone proceed.
                self.guests += 1;
                let admitted = !self.locked && !self.shut_down;
                let answer = if admitted {
                    Answer::In
                } else {
                    Answer::Bounced
                };
                (answer, nobody)
            }
            Op::Leave => {
                self.guests -= 1;
                let woken = match self.guests {
                    // The last one out frees a lockdown if the gate is closed, and
                    // `wait` if the fortress is killed.
                    0 if self.locked && self.shut_down => self.wake(&[Group::Drain, Group::Done]),
                    0 if self.locked => self.wake(&[Group::Drain]),
                    0 if self.shut_down => self.wake(&[Group::Done]),
                    _ => nobody,
                };
                (Answer::Ok, woken)
            }
            Op::Unlock | Op::Lockdown if self.shut_down => (Answer::Shutdown, nobody),
            Op::Unlock => {
                self.locked = false;
                (Answer::Ok, self.wake(&[Group::Gate]))
            }
            Op::Lockdown => {
                self.locked = true;
                let drained = self.guests == 0;
                let woken = if drained {
                    self.wake(&[Group::Drain])
                } else {
                    nobody
                };
                (Answer::Closed { drained }, woken)
            }
            Op::Kill if self.shut_down => (Answer::Ok, nobody),
            Op::Kill => {
                self.shut_down = true;
                let woken = if self.guests == 0 {
                    self.wake(&[Group::Gate, Group::Drain, Group::Done])
                } else {
                    self.wake(&[Group::Gate, Group::Drain])
                };
                (Answer::Ok, woken)
            }
            Op::Look { group, task } => {
                let decision = self.decide(group);
                match decision {
                    Decision::Proceed if group == Group::Gate && self.guests == MAX_GUESTS => {
                        return (Answer::TooMany, nobody)
                    }
                    Decision::Proceed if group == Group::Gate => self.guests += 1,
                    Decision::Wait => self.flags[group as usize][task as usize] = true,
                    _ => {}
                }
                (Answer::Decided(decision), nobody)
            }
        }
    }

    /// No flag for waiters that would not wait: nobody would ever wake them.
    fn check(&self) {
        for g in GROUPS {
            if self.flags[g as usize] != [false; 2] {
                assert_eq!(
                    self.decide(g),
                    Decision::Wait,
                    "model: stale {g:?} flag: {self:?}"
                );
            }
        }
    }
}

fn decode(s: State) -> Model {
    Model {
        locked: s.locked(),
        shut_down: s.shut_down(),
        guests: s.guests(),
        flags: GROUPS.map(|g| [false, true].map(|task| s.has(g.real(), kind(task)))),
    }
}

fn woken(w: Wake) -> Flags {
    GROUPS.map(|g| [false, true].map(|task| w.wakes(g.real(), kind(task))))
}

/// `op` on the real word as `gate.rs` performs it: the new word, the answer, and whom
/// it wakes.
fn gate(s: State, op: Op) -> (State, Answer, Wake) {
    let nobody = Wake::default();
    let transition = |new: State, answer| (new, answer, s.woken_by(new));
    match op {
        // `try_enter`: judged on the value the `fetch_add` replaced; `back_out` aborts on
        // overflow.
        Op::Knock if s.admits() => (s.with_guest(), Answer::In, nobody),
        Op::Knock if s.overflowed() => (s, Answer::TooMany, nobody),
        Op::Knock => (s.with_guest(), Answer::Bounced, nobody),
        // `leave`: the `fetch_sub`, then `leave_contended` if the old value says so.
        Op::Leave => {
            let left = s.without_guest();
            let new = if s.last_out_wakes() {
                left.settled()
            } else {
                left
            };
            (new, Answer::Ok, left.woken_by(new))
        }
        // `unlock`: the fast compare-exchange, else `unlock_slow`.
        Op::Unlock if s == State::CLOSED => (State::OPEN, Answer::Ok, nobody),
        Op::Unlock if s.shut_down() => (s, Answer::Shutdown, nobody),
        Op::Unlock => transition(s.unlocked(), Answer::Ok),
        // `close`: the fast compare-exchange, else `close_slow`.
        Op::Lockdown if s == State::OPEN => {
            (State::CLOSED, Answer::Closed { drained: true }, nobody)
        }
        Op::Lockdown if s.shut_down() => (s, Answer::Shutdown, nobody),
        Op::Lockdown => {
            let new = s.locked_down();
            transition(
                new,
                Answer::Closed {
                    drained: new.guests() == 0,
                },
            )
        }
        // `kill`.
        Op::Kill if s.shut_down() => (s, Answer::Ok, nobody),
        Op::Kill => transition(s.killed(), Answer::Ok),
        // `look`, and `claim_place` for a guest that may go in.
        Op::Look { group, task } => {
            let (waiters, kind) = (group.real(), kind(task));
            let decision = s.decide(waiters);
            let new = match decision {
                Decision::Proceed if waiters == Waiters::Gate && s.overflowed() => {
                    return (s, Answer::TooMany, nobody)
                }
                Decision::Proceed if waiters == Waiters::Gate => s.with_guest(),
                Decision::Wait if !s.has(waiters, kind) => s.with_waiter(waiters, kind),
                _ => s,
            };
            (new, Answer::Decided(decision), nobody)
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Script {
    /// Start with all but two places taken by forgotten visits, to reach the overflow
    /// guard.
    crowded: bool,
    ops: Vec<Op>,
}

fuzz_target!(|script: Script| {
    let forgotten = if script.crowded { MAX_GUESTS - 2 } else { 0 };
    let mut state = State(State::NEW.0 + forgotten * ONE_GUEST);
    let mut model = Model {
        locked: true,
        guests: forgotten,
        ..Model::default()
    };
    assert_eq!(decode(state), model, "a new fortress");
    for op in script.ops {
        if op == Op::Leave && model.guests == forgotten {
            continue; // only a guest inside can leave
        }
        let (new, answer, wake) = gate(state, op);
        let (expected, expected_woken) = model.step(op);
        assert_eq!(answer, expected, "{op:?} on {state:?}");
        if answer == Answer::TooMany {
            return;
        }
        assert_eq!(decode(new), model, "{op:?} on {state:?} gave {new:?}");
        assert_eq!(
            woken(wake),
            expected_woken,
            "wake-ups of {op:?} on {state:?}"
        );
        assert_eq!(
            wake.is_empty(),
            expected_woken == Flags::default(),
            "{wake:?}"
        );
        model.check();
        assert_eq!(
            new.check_invariants(),
            Ok(()),
            "{op:?} on {state:?} gave {new:?}"
        );
        state = new;
    }
});
