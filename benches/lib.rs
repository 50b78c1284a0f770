//! The benchmarks live in `fortress.rs`; this library target is empty.
