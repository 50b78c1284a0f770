//! The manifold: starting fortresses and handing out guards and guests (mirrors Go's
//! manifold tests).

use fortress_gate::{manifold, Abort, BoxError, Error, Guard, Guest, Worker};

struct NotAFortress;

impl Worker for NotAFortress {
    fn kill(&self) {}
    fn wait(&self) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn start_gives_a_locked_fortress_and_output_fills_guard_and_guest() {
    let manifold = manifold();
    let worker = manifold.start().unwrap();
    let mut guard: Option<Guard> = None;
    let mut guest: Option<Guest> = None;
    manifold.output(worker.as_ref(), &mut guard).unwrap();
    manifold.output(worker.as_ref(), &mut guest).unwrap();
    let (guard, guest) = (guard.unwrap(), guest.unwrap());
    assert!(guest.try_enter().is_none(), "a new fortress is locked");
    guard.unlock().unwrap();
    assert_eq!(guest.visit(|| 5, &Abort::never()), Ok(5));
    worker.kill();
    worker.wait().unwrap();
    assert_eq!(guest.visit(|| 5, &Abort::never()), Err(Error::Shutdown));
}

#[test]
fn output_from_a_worker_that_is_not_a_fortress_fails_and_leaves_out_alone() {
    let manifold = manifold();
    let other = manifold.start().unwrap();
    let mut out: Option<Guard> = None;
    manifold.output(other.as_ref(), &mut out).unwrap();
    let err = manifold.output(&NotAFortress, &mut out).unwrap_err();
    assert!(
        err.to_string().starts_with("in should be a fortress"),
        "{err}"
    );
    // `out` still holds the guard of `other`.
    out.unwrap().unlock().unwrap();
    let mut guest: Option<Guest> = None;
    manifold.output(other.as_ref(), &mut guest).unwrap();
    assert!(guest.unwrap().try_enter().is_some());
}

#[test]
fn output_into_an_unsupported_target_fails_and_leaves_it_alone() {
    let manifold = manifold();
    let worker = manifold.start().unwrap();
    let mut wrong: Option<String> = Some("keep".into());
    let err = manifold.output(worker.as_ref(), &mut wrong).unwrap_err();
    assert_eq!(
        err.to_string(),
        "out should be a &mut Option<Guard> or a &mut Option<Guest>"
    );
    assert_eq!(wrong.as_deref(), Some("keep"));
    let mut bare_guard_is_wrong_too = 0u8;
    assert!(manifold
        .output(worker.as_ref(), &mut bare_guard_is_wrong_too)
        .is_err());
}

#[test]
fn two_workers_from_one_manifold_are_independent_fortresses() {
    let manifold = manifold();
    let (a, b) = (manifold.start().unwrap(), manifold.start().unwrap());
    let (mut guard_a, mut guest_b): (Option<Guard>, Option<Guest>) = (None, None);
    manifold.output(a.as_ref(), &mut guard_a).unwrap();
    manifold.output(b.as_ref(), &mut guest_b).unwrap();
    guard_a.unwrap().unlock().unwrap();
    assert!(
        guest_b.as_ref().unwrap().try_enter().is_none(),
        "b is still locked"
    );
    a.kill();
    let mut guard_b: Option<Guard> = None;
    manifold.output(b.as_ref(), &mut guard_b).unwrap();
    assert_eq!(guard_b.unwrap().unlock(), Ok(()), "killing a left b alive");
}
