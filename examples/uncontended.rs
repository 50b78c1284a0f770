//! Exercises every fast path with nobody waiting: visits, `enter`/drop, `try_enter`,
//! lockdown + unlock, and a lockdown of a fortress with a visit that is aborted
//! without waiting. None of it should make a system call; check with
//!
//!     cargo build --release --example uncontended
//!     strace -f -c -e trace=futex target/release/examples/uncontended
//!
//! which should report no futex calls at all. With `--sharded` it runs the same on
//! `Fortress::sharded()`, with `--read-mostly` on a `Layout::ReadMostly` fortress
//! (whose lockdowns call membarrier, not futex); under `valgrind --tool=callgrind` the
//! runs count the instructions of each design's fast paths, and with `--visits-only`
//! only the visit loops run (CI's instruction-count gate, `.ci/callgrind`).

use fortress_gate::{Abort, Error, Fortress, Layout};
use std::hint::black_box;

fn main() -> Result<(), Error> {
    const N: u64 = 1_000_000;
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().any(|arg| arg == name);
    let layout = match (flag("--sharded"), flag("--read-mostly")) {
        (true, _) => Layout::Sharded,
        (_, true) => Layout::ReadMostly,
        _ => Layout::Word,
    };
    let fortress = Fortress::holding_with((), layout);
    let (guard, guest) = (fortress.guard(), fortress.guest());
    let never = Abort::never();
    let fired = Abort::new();
    fired.abort();

    guard.unlock()?;
    let mut sum = 0u64;
    for i in 0..N {
        sum += guest.visit(|| black_box(i), &never)?;
        drop(black_box(guest.enter(&never)?));
        drop(black_box(guest.try_enter()));
    }
    if flag("--visits-only") {
        let barrier = fortress_gate::read_mostly_barrier().filter(|_| layout == Layout::ReadMostly);
        println!(
            "{N} visits, {N} enter/drop, {N} try_enter on {layout:?}, barrier {barrier:?} (checksum {sum})"
        );
        return Ok(());
    }
    for _ in 0..N {
        guard.lockdown(&never)?;
        guard.unlock()?;
    }
    // Guests bouncing off a closed gate, and a lockdown that must not wait.
    let inside = guest.enter(&never)?;
    for _ in 0..N / 10 {
        assert_eq!(guard.lockdown(&fired), Err(Error::Aborted));
        assert!(guest.try_enter().is_none());
        guard.unlock()?;
    }
    drop(inside);
    println!(
        "{} visits, {} enter/drop, {} try_enter, {} lockdown/unlock cycles, {} aborted lockdowns (checksum {sum})",
        N, N, N, N, N / 10
    );
    Ok(())
}
