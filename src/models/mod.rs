//! Model checking: every file here is a unit test compiled only in a model build.
//!
//! * `loom_*`: small scenarios whose every interleaving loom explores (within a
//!   preemption bound each states): the core gate (`loom_core`, which also holds the
//!   helpers the others share), async waits, deadlines and sources, the sharded slots,
//!   the exclusive phase (`loom_phase`), the per-thread counts of the read-mostly
//!   layout (`loom_read_mostly`) and the value a fortress holds, read in visits
//!   and written in phases (`loom_value`).
//!   Run with `RUSTFLAGS="--cfg loom" cargo test --release --lib loom_`.
//! * `shuttle`: larger crowds of threads and tasks under shuttle's random and PCT
//!   schedules. Run with `RUSTFLAGS="--cfg shuttle" cargo test --release --lib shuttle_`.

#[cfg(all(loom, feature = "async"))]
mod loom_async;
#[cfg(loom)]
mod loom_core;
#[cfg(loom)]
mod loom_deadline;
#[cfg(loom)]
mod loom_phase;
#[cfg(all(loom, feature = "read-mostly"))]
mod loom_read_mostly;
#[cfg(loom)]
mod loom_sharded;
#[cfg(loom)]
mod loom_value;
#[cfg(all(shuttle, not(loom), feature = "async"))]
mod shuttle_models;
