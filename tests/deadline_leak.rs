//! The shared deadline timer leaks nothing: a token enters it only when a wait first
//! registers with it, leaves it when it fires, and leaves it when it is dropped before
//! its deadline.
//!
//! One test alone in its own binary: the timer is shared by the whole process, so a
//! test running in parallel would move `timer_entries()` under this one.

mod common;

/// The layout of the fortresses under test (read by `common::fortress`).
/// `tests/sharded.rs` and `tests/read_mostly.rs` run this file again in their layouts.
#[allow(dead_code)]
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::Word;

use common::{fired, runtime, unlocked, within};
use fortress_gate::internals::timer_entries;
use fortress_gate::{Abort, Error, Fortress};
use std::time::{Duration, Instant};

const HOUR: Duration = Duration::from_secs(3600);

/// How many one-hour tokens go through a wait and are dropped.
const TOKENS: usize = if cfg!(miri) { 100 } else { 10_000 };

/// How many are kept alive at once to see that they really enter the timer.
const ALIVE: usize = 100;

#[test]
fn deadline_tokens_dropped_before_their_deadline_leave_nothing_in_the_timer() {
    let base = timer_entries();
    let hour = || Instant::now() + HOUR;

    // Calls that need not wait never put their token in the timer.
    let open = unlocked();
    let abort = Abort::at(hour());
    assert_eq!(open.guest().visit(|| (), &abort), Ok(()));
    assert_eq!(open.guard().lockdown(&abort), Ok(()));
    assert_eq!(
        timer_entries(),
        base,
        "a call that did not wait armed the timer"
    );
    // Neither does making tokens.
    let idle: Vec<Abort> = (0..ALIVE).map(|_| Abort::at(hour()).child()).collect();
    assert_eq!(timer_entries(), base);
    drop(idle);

    // A wait at a locked gate registers, so its token enters the timer; the token's
    // fired parent then cuts the wait short at once.
    let locked = Fortress::new();
    let guest = locked.guest();
    let parent = fired();
    let alive: Vec<Abort> = (0..ALIVE)
        .map(|_| {
            let abort = parent.with_deadline(hour());
            assert_eq!(guest.visit(|| (), &abort), Err(Error::Aborted));
            abort
        })
        .collect();
    assert_eq!(
        timer_entries(),
        base + ALIVE,
        "the waits did not put their tokens in the timer"
    );
    // A second wait with the same token does not enter it twice.
    for abort in &alive {
        assert_eq!(guest.visit(|| (), abort), Err(Error::Aborted));
    }
    assert_eq!(timer_entries(), base + ALIVE);
    drop(alive);
    assert_eq!(timer_entries(), base, "dropped tokens stayed in the timer");

    // Many more, each dropped after its wait: visits at a locked gate, lockdowns with a
    // visit inside, and async enters, the deadline on the child or on the parent.
    let (busy, visit) = {
        let fortress = unlocked();
        let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
        (fortress, visit)
    };
    let guard = busy.guard();
    let rt = runtime();
    for i in 0..TOKENS {
        let abort = match i % 2 {
            0 => parent.with_deadline(hour()),
            _ => Abort::at(hour()).child(),
        };
        if i % 2 == 1 {
            // Nothing fired in this chain yet: fire the child itself, as another
            // token's abort would.
            abort.abort();
        }
        let result = match i % 3 {
            0 => guest.visit(|| (), &abort),
            1 => guard.lockdown(&abort),
            _ => rt.block_on(guest.enter_async(&abort)).map(drop),
        };
        assert_eq!(result, Err(Error::Aborted));
        assert_eq!(
            timer_entries(),
            base + 1,
            "token {i} did not enter the timer"
        );
        drop(abort);
    }
    assert_eq!(
        timer_entries(),
        base,
        "{TOKENS} dropped tokens left entries in the timer"
    );

    // A token whose deadline passes leaves the timer when it fires, though it lives.
    let soon = Abort::after(Duration::from_millis(20));
    let locked2 = Fortress::new();
    let (guest2, token) = (locked2.guest(), soon.clone());
    let result = within("visit until the deadline", move || {
        guest2.visit(|| (), &token)
    });
    assert_eq!(result, Err(Error::Aborted));
    assert_eq!(
        timer_entries(),
        base,
        "a fired deadline stayed in the timer"
    );
    drop(soon);
    assert_eq!(timer_entries(), base);
    drop(visit);
}
