//! Nothing lingers: a wait that ended leaves no waiter flag in the state word, so the
//! fast paths of `lockdown`, `unlock` and a visit are back at once.

mod common;

/// The layout of the fortresses under test (read by `common::fortress`).
/// `tests/sharded.rs` and `tests/read_mostly.rs` run this file again in their layouts.
#[allow(dead_code)]
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::Word;

use common::{fortress, unlocked, until_asleep, within, Sleepers};
use fortress_gate::internals::{snapshot, WAITERS};
use fortress_gate::{Abort, Error, Fortress, Worker};
use std::thread;
use std::time::Duration;

/// Long enough that the wait sleeps (past the spin), short enough for a test.
fn soon() -> Abort {
    Abort::after(Duration::from_millis(30))
}

fn flags(fortress: &Fortress) -> u64 {
    snapshot(fortress).0 & WAITERS
}

/// Fault 3 of 0.3: an aborted `wait_with` left its thread flag on a live fortress
/// for good, so every lockdown + unlock (2.8x) and every visit (1.3x) took the slow
/// path until `kill`.
#[test]
fn an_aborted_wait_with_leaves_no_flag_on_a_live_fortress() {
    let fortress = unlocked();
    assert_eq!(fortress.wait_with(&soon()), Err(Error::Aborted));
    assert_eq!(flags(&fortress), 0, "{fortress:?}");
}

#[test]
fn an_aborted_wait_at_the_gate_leaves_no_flag_before_any_unlock() {
    let fortress = fortress(); // locked
    assert_eq!(fortress.guest().visit(|| (), &soon()), Err(Error::Aborted));
    assert_eq!(flags(&fortress), 0, "{fortress:?}");
}

#[test]
fn an_aborted_lockdown_leaves_no_flag_and_the_visit_inside_leaves_by_the_fast_path() {
    let fortress = unlocked();
    let inside = fortress.guest().enter_owned(&Abort::never()).unwrap();
    assert_eq!(fortress.guard().lockdown(&soon()), Err(Error::Aborted));
    assert_eq!(flags(&fortress), 0, "{fortress:?}");
    drop(inside);
    assert_eq!(flags(&fortress), 0, "{fortress:?}");
}

#[test]
fn a_waiter_that_gives_up_leaves_the_flag_for_one_that_still_waits() {
    let fortress = unlocked();
    let f = fortress.clone();
    let stayer = thread::spawn(move || f.wait_with(&Abort::never()));
    until_asleep(&fortress, Sleepers::Done);
    assert_eq!(fortress.wait_with(&soon()), Err(Error::Aborted));
    assert_ne!(
        flags(&fortress),
        0,
        "the other still sleeps: its flag stays"
    );
    fortress.kill();
    assert_eq!(
        within("the waiter that stayed", move || stayer.join().unwrap()),
        Ok(())
    );
    assert_eq!(flags(&fortress), 0);
}

#[test]
fn many_aborted_waits_of_every_thread_kind_leave_no_flag() {
    let fortress = unlocked();
    let rounds = if cfg!(miri) { 2 } else { 20 };
    for _ in 0..rounds {
        let inside = fortress.guest().enter_owned(&Abort::never()).unwrap();
        assert_eq!(fortress.wait_with(&soon()), Err(Error::Aborted));
        assert_eq!(fortress.guard().lockdown(&soon()), Err(Error::Aborted));
        assert_eq!(fortress.guest().visit(|| (), &soon()), Err(Error::Aborted));
        assert_eq!(
            fortress.guard().exclusive(&soon()).map(drop),
            Err(Error::Aborted)
        );
        drop(inside);
        fortress.guard().unlock().unwrap();
    }
    assert_eq!(flags(&fortress), 0, "{fortress:?}");
}
