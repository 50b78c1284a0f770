//! The integration suite again, against a sharded fortress (three guest slots, so that
//! two threads may share a slot and others not): same handles, same rules. Each file is
//! also its own test binary for the single state word.
// Each included file brings its own copy of `common`, as it does in its own binary.
#![allow(clippy::duplicate_mod)]

/// The layout of the fortresses under test (read by `common::fortress`).
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::Shards(3);

#[path = "async_cancel.rs"]
mod async_cancel;
#[path = "async_rules.rs"]
mod async_rules;
#[path = "deadlines.rs"]
mod deadlines;
#[path = "exclusive.rs"]
mod exclusive;
#[path = "lingers.rs"]
mod lingers;
#[path = "occupy.rs"]
mod occupy;
#[path = "phase.rs"]
mod phase;
#[path = "rules.rs"]
mod rules;
#[path = "services.rs"]
mod services;
#[path = "stress.rs"]
mod stress;
#[path = "wakeups.rs"]
mod wakeups;
