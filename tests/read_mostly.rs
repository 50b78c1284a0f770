//! The integration suite again, against a read-mostly fortress (per-thread counts, the
//! heavy barrier on every guard's close): same handles, same rules. Each file is also
//! its own test binary for the single state word. CI runs this binary a second time with
//! `FORTRESS_GATE_READ_MOSTLY=fallback`, where the same fortresses keep their guests on
//! the word. Under Miri only the rules and the stress run here (the value tests run every
//! layout in their own binary): the rest is the same replay, too slow to interpret.
// Each included file brings its own copy of `common`, as it does in its own binary.
#![allow(clippy::duplicate_mod)]

/// The layout of the fortresses under test (read by `common::fortress`).
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::ReadMostly;

#[cfg(not(miri))]
#[path = "async_cancel.rs"]
mod async_cancel;
#[cfg(not(miri))]
#[path = "async_rules.rs"]
mod async_rules;
#[cfg(not(miri))]
#[path = "deadlines.rs"]
mod deadlines;
#[cfg(not(miri))]
#[path = "exclusive.rs"]
mod exclusive;
#[cfg(not(miri))]
#[path = "lingers.rs"]
mod lingers;
#[cfg(not(miri))]
#[path = "occupy.rs"]
mod occupy;
#[cfg(not(miri))]
#[path = "phase.rs"]
mod phase;
#[path = "rules.rs"]
mod rules;
#[cfg(not(miri))]
#[path = "services.rs"]
mod services;
#[path = "stress.rs"]
mod stress;
#[cfg(not(miri))]
#[path = "trust.rs"]
mod trust;
#[cfg(not(miri))]
#[path = "wakeups.rs"]
mod wakeups;
