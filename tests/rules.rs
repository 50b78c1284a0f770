//! The fortress's rules, one named test each, on paths that need no second thread to sleep.

mod common;

/// The layout of the fortresses under test (read by `common::fortress`).
/// `tests/sharded.rs` and `tests/read_mostly.rs` run this file again in their layouts.
#[allow(dead_code)]
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::Word;

use common::{fired, unlocked};

use fortress_gate::{is_fortress_error, Abort, BoxError, Error, Fortress, Worker};
use std::panic::{catch_unwind, AssertUnwindSafe};

#[test]
fn starts_locked() {
    let fortress = common::fortress();
    assert!(fortress.is_locked());
    assert_eq!(fortress.guests(), 0);
    assert!(fortress.guest().try_enter().is_none());
    // A visit to a locked fortress has to wait, so a fired token cuts it short.
    assert_eq!(fortress.guest().visit(|| (), &fired()), Err(Error::Aborted));
}

#[test]
fn unlock_admits_visits_and_returns_their_value() {
    let fortress = unlocked();
    assert!(!fortress.is_locked());
    let got: Result<u32, Error> = fortress.guest().visit(|| 41 + 1, &Abort::never());
    assert_eq!(got, Ok(42));
    assert_eq!(fortress.guests(), 0, "the visit ended");
}

#[test]
fn closure_errors_travel_inside_the_result() {
    let fortress = unlocked();
    let got = fortress
        .guest()
        .visit(|| "x".parse::<u8>(), &Abort::never())
        .unwrap();
    assert!(got.is_err());
}

#[test]
fn abort_does_not_stop_a_visit_that_need_not_wait() {
    let fortress = unlocked();
    assert_eq!(fortress.guest().visit(|| 7, &fired()), Ok(7));
}

#[test]
fn abort_does_not_stop_a_lockdown_of_an_empty_fortress() {
    let fortress = unlocked();
    let guard = fortress.guard();
    assert_eq!(guard.lockdown(&fired()), Ok(()));
    assert!(fortress.is_locked());
}

#[test]
fn unlock_and_lockdown_are_idempotent() {
    let fortress = unlocked();
    let guard = fortress.guard();
    guard.unlock().unwrap();
    assert!(!fortress.is_locked());
    guard.lockdown(&Abort::never()).unwrap();
    guard.lockdown(&Abort::never()).unwrap();
    assert!(fortress.is_locked());
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn lockdown_closes_the_gate_before_it_waits() {
    let fortress = unlocked();
    let guard = fortress.guard();
    let guest = fortress.guest();
    let inside = guest.enter(&Abort::never()).unwrap();
    assert_eq!(guard.lockdown(&fired()), Err(Error::Aborted));
    assert!(fortress.is_locked());
    assert!(inside.lockdown_pending());
    assert!(
        guest.try_enter().is_none(),
        "no new visit while the lockdown is pending"
    );
    assert_eq!(fortress.guests(), 1, "the visit inside goes on");
    drop(inside);
}

#[test]
fn aborted_lockdown_still_locks_and_a_later_unlock_readmits_at_once() {
    let fortress = unlocked();
    let guard = fortress.guard();
    let guest = fortress.guest();
    let inside = guest.enter(&Abort::never()).unwrap();
    assert_eq!(guard.lockdown(&fired()), Err(Error::Aborted));
    assert_eq!(guest.visit(|| (), &fired()), Err(Error::Aborted));
    guard.unlock().unwrap();
    assert_eq!(guest.visit(|| 1, &fired()), Ok(1));
    assert!(!inside.lockdown_pending());
    drop(inside);
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn try_enter_never_waits() {
    let fortress = common::fortress();
    let guest = fortress.guest();
    assert!(guest.try_enter().is_none());
    assert_eq!(fortress.guests(), 0, "a refused try_enter leaves no trace");
    fortress.guard().unlock().unwrap();
    let a = guest.try_enter().expect("open");
    let b = guest.try_enter().expect("guests are concurrent");
    assert_eq!(fortress.guests(), 2);
    drop((a, b));
    fortress.kill();
    assert!(guest.try_enter().is_none());
}

#[test]
fn lockdown_pending_reports_the_closed_gate() {
    let fortress = unlocked();
    let guard = fortress.guard();
    let guest = fortress.guest();
    let visit = guest.enter(&Abort::never()).unwrap();
    let owned = guest.enter_owned(&Abort::never()).unwrap();
    assert!(!visit.lockdown_pending() && !owned.lockdown_pending());
    let _ = guard.lockdown(&fired());
    assert!(visit.lockdown_pending() && owned.lockdown_pending());
}

#[test]
fn killed_fortress_answers_shutdown_everywhere() {
    let fortress = common::fortress();
    let (guard, guest) = (fortress.guard(), fortress.guest());
    guard.unlock().unwrap();
    fortress.kill();
    fortress.kill(); // idempotent
    assert_eq!(guard.unlock(), Err(Error::Shutdown));
    assert_eq!(guard.lockdown(&Abort::never()), Err(Error::Shutdown));
    assert_eq!(guest.visit(|| (), &Abort::never()), Err(Error::Shutdown));
    assert_eq!(guest.enter(&Abort::never()).map(drop), Err(Error::Shutdown));
    assert_eq!(
        guest.enter_owned(&Abort::never()).map(drop),
        Err(Error::Shutdown)
    );
    assert!(
        !fortress.is_locked(),
        "kill changes nothing but the shutdown flag"
    );
    assert_eq!(fortress.guests(), 0);
    fortress.wait().unwrap();
}

#[test]
fn shutdown_wins_over_abort_and_over_an_open_gate() {
    let fortress = unlocked();
    fortress.kill();
    assert_eq!(
        fortress.guest().visit(|| (), &fired()),
        Err(Error::Shutdown)
    );
    assert_eq!(fortress.guard().lockdown(&fired()), Err(Error::Shutdown));
}

#[test]
fn visits_already_running_survive_kill_and_wait_drains_them() {
    let fortress = unlocked();
    let guest = fortress.guest();
    let inside = guest.enter_owned(&Abort::never()).unwrap();
    fortress.kill();
    assert_eq!(fortress.guests(), 1);
    let waiter = fortress.clone();
    let waited = std::thread::spawn(move || waiter.wait().is_ok());
    common::until_asleep(&fortress, common::Sleepers::Done);
    assert!(!waited.is_finished(), "wait returned with a visit running");
    drop(inside);
    assert!(common::within("wait after the last visit", move || waited
        .join()
        .unwrap()));
}

#[test]
fn a_panicking_visit_ends_its_visit_and_propagates() {
    let fortress = unlocked();
    let guest = fortress.guest();
    let result = catch_unwind(AssertUnwindSafe(|| {
        guest.visit(|| panic!("collector crashed"), &Abort::never())
    }));
    let panic = result.expect_err("the panic propagates");
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"collector crashed"));
    assert_eq!(fortress.guests(), 0);
    // Nothing is poisoned: the guard locks down at once, and guests visit again.
    fortress.guard().lockdown(&fired()).unwrap();
    fortress.guard().unlock().unwrap();
    assert_eq!(guest.visit(|| 3, &Abort::never()), Ok(3));
}

#[test]
fn a_visit_moved_to_another_thread_ends_there() {
    let fortress = unlocked();
    let guest = fortress.guest();
    let visit = guest.enter(&Abort::never()).unwrap();
    let observer = &fortress;
    std::thread::scope(|s| {
        s.spawn(move || {
            assert_eq!(observer.guests(), 1);
            drop(visit);
        });
    });
    assert_eq!(fortress.guests(), 0);
    let owned = guest.enter_owned(&Abort::never()).unwrap();
    drop(guest); // the owned visit outlives its guest
    std::thread::spawn(move || drop(owned)).join().unwrap();
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn errors_display_as_in_go_and_are_fortress_errors() {
    assert_eq!(Error::Aborted.to_string(), "fortress operation aborted");
    assert_eq!(Error::Shutdown.to_string(), "fortress worker shutting down");
    assert!(is_fortress_error(&Error::Aborted));
    let boxed: BoxError = Box::new(Error::Shutdown);
    assert!(is_fortress_error(&*boxed));
    let other: BoxError = "disk full".into();
    assert!(!is_fortress_error(&*other));

    #[derive(Debug)]
    struct Context(Box<dyn std::error::Error + 'static>);
    impl std::fmt::Display for Context {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("while reading the charm")
        }
    }
    impl std::error::Error for Context {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.0)
        }
    }
    let twice = Context(Box::new(Context(Box::new(Error::Aborted))));
    assert!(is_fortress_error(&twice), "found through the source chain");
    assert!(!is_fortress_error(&Context(Box::new(std::fmt::Error))));
}

#[test]
fn handles_are_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    check::<Fortress>();
    check::<fortress_gate::Guard>();
    check::<fortress_gate::Guest>();
    check::<Abort>();
    fn send<T: Send + Sync>() {}
    send::<fortress_gate::Visit<'static>>();
    send::<fortress_gate::OwnedVisit>();
}

#[test]
fn debug_decodes_the_state_word() {
    let fortress = unlocked();
    let guest = fortress.guest();
    let _visit = guest.enter(&Abort::never()).unwrap();
    let shown = format!("{fortress:?}");
    assert!(
        shown.starts_with("Fortress(State { locked: false, shut_down: false, guests: 1"),
        "{shown}"
    );
    assert!(format!("{:?}", fortress.guard()).starts_with("Guard(State {"));
    assert_eq!(format!("{:?}", Abort::never()), "Abort::never()");
    assert_eq!(
        format!("{:?}", fired()),
        "Abort { aborted: true, deadline: None }"
    );
}

#[test]
fn abort_never_never_fires() {
    let never = Abort::never();
    never.abort();
    assert!(!never.is_aborted());
    let token = Abort::new();
    let clone = token.clone();
    assert!(!token.is_aborted());
    clone.abort();
    assert!(token.is_aborted(), "clones share one token");
}
