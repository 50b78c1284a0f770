//! Exercises every fast path with nobody waiting: visits, `enter`/drop, `try_enter`,
//! lockdown + unlock, and a lockdown of a fortress with a visit that is aborted
//! without waiting. None of it should make a system call; check with
//!
//!     cargo build --release --example uncontended
//!     strace -f -c -e trace=futex target/release/examples/uncontended
//!
//! which should report no futex calls at all. With `--sharded` it runs the same on
//! `Fortress::sharded()`; under `valgrind --tool=callgrind` the two runs count the
//! instructions of each design's fast paths.

use fortress_gate::{Abort, Error, Fortress};
use std::hint::black_box;

fn main() -> Result<(), Error> {
    const N: u64 = 1_000_000;
    let fortress = match std::env::args().any(|arg| arg == "--sharded") {
        true => Fortress::sharded(),
        false => Fortress::new(),
    };
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
