//! Cancellation leaves no trace: after a thousand waits that ended in every way but
//! success (aborted threads, dropped futures), once one slow pass has cleared their
//! flags, the fast paths make no system call. Check with
//!
//!     cargo build --release --example after_cancels
//!     strace -f -e trace=futex,write -o trace.txt target/release/examples/after_cancels
//!
//! and count the futex calls after the line `quiet phase` is written: there should be
//! none. (The cancels themselves sleep and wake, so they do make futex calls.)

use fortress_gate::internals::{snapshot, WAITERS};
use fortress_gate::{Abort, Error, Fortress, Worker};
use std::future::Future;
use std::hint::black_box;
use std::io::Write;
use std::pin::pin;
use std::task::{Context, Waker};
use std::thread;
use std::time::Duration;

const CANCELS: usize = 1_000;

/// Polls `fut` once with a waker that does nothing, then drops it.
fn poll_and_drop<F: Future>(fut: F) {
    let mut fut = pin!(fut);
    let _ = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
}

fn main() -> Result<(), Error> {
    let fortress = Fortress::new();
    let (guard, guest) = (fortress.guard(), fortress.guest());
    let never = Abort::never();

    // Cancels of every kind, on a locked fortress with a visit held inside.
    guard.unlock()?;
    let inside = guest.enter_owned(&never)?;
    guard.lockdown(&Abort::after(Duration::ZERO)).unwrap_err(); // closes the gate
    for i in 0..CANCELS {
        let abort = Abort::new();
        match i % 4 {
            0 => poll_and_drop(guest.enter_async(&abort)),
            1 => poll_and_drop(guard.lockdown_async(&abort)),
            2 => poll_and_drop(fortress.wait_async()),
            _ => {
                // A thread that really sleeps at the gate, then is aborted.
                let (guest, token) = (guest.clone(), abort.clone());
                let visitor = thread::spawn(move || guest.visit(|| (), &token));
                thread::sleep(Duration::from_micros(50));
                abort.abort();
                assert_eq!(visitor.join().unwrap(), Err(Error::Aborted));
            }
        }
    }
    drop(inside);
    // One slow pass: it clears whatever flags the cancels left (and may wake nobody).
    guard.unlock()?;
    guard.lockdown(&never)?;
    guard.unlock()?;
    let flags = snapshot(&fortress).0 & WAITERS;
    assert_eq!(flags, 0, "waiter flags outlived the waits that set them");

    eprintln!("quiet phase");
    let _ = std::io::stderr().flush();
    const N: u64 = 1_000_000;
    let mut sum = 0u64;
    for i in 0..N {
        sum += guest.visit(|| black_box(i), &never)?;
        guard.lockdown(&never)?;
        guard.unlock()?;
    }
    eprintln!("end of the quiet phase");
    println!(
        "{CANCELS} cancels, then {N} visits and lockdown/unlock cycles (checksum {sum}); \
         no waiter flag left after the slow pass"
    );
    fortress.kill();
    Ok(())
}
