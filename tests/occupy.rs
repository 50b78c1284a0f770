//! `occupy`: a visit held open for a worker's whole life (mirrors Go's occupy tests).

mod common;

/// The layout of the fortresses under test (read by `common::fortress`).
/// `tests/sharded.rs` and `tests/read_mostly.rs` run this file again in their layouts.
#[allow(dead_code)]
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::Word;

use common::{fired, unlocked, until_asleep, within, SharedSleeper, Sleeper, Sleepers};
use fortress_gate::{is_fortress_error, occupy, Abort, Error, Occupied, OccupyError, Worker};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::thread;

#[derive(Debug, PartialEq)]
struct NoCharm;

fn never_started() -> Result<Sleeper, NoCharm> {
    panic!("start must not be called")
}

#[test]
fn occupy_of_a_locked_fortress_is_aborted_and_never_starts() {
    let fortress = common::fortress();
    let got = occupy(&fortress.guest(), never_started, &fired());
    assert_eq!(got.err(), Some(OccupyError::Fortress(Error::Aborted)));
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn occupy_waiting_at_the_gate_is_cut_short_by_abort() {
    let fortress = common::fortress();
    let abort = Abort::new();
    let (guest, token) = (fortress.guest(), abort.clone());
    let waiting = thread::spawn(move || occupy(&guest, never_started, &token).err());
    until_asleep(&fortress, Sleepers::Gate);
    abort.abort();
    let got = within("occupy", move || waiting.join().unwrap());
    assert_eq!(got, Some(OccupyError::Fortress(Error::Aborted)));
}

#[test]
fn occupy_of_a_killed_fortress_is_shutdown_and_never_starts() {
    let fortress = unlocked();
    fortress.kill();
    let got = occupy(&fortress.guest(), never_started, &Abort::never());
    assert_eq!(got.err(), Some(OccupyError::Fortress(Error::Shutdown)));
}

#[test]
fn start_error_passes_through_and_the_guard_can_lock_down_at_once() {
    let fortress = unlocked();
    let got = occupy(
        &fortress.guest(),
        || Err::<Sleeper, _>(std::io::Error::other("no charm")),
        &Abort::never(),
    );
    let Err(OccupyError::Start(err)) = got else {
        panic!("expected the start error")
    };
    assert_eq!(err.to_string(), "no charm");
    assert_eq!(fortress.guests(), 0);
    let aborted = Abort::new();
    aborted.abort();
    assert_eq!(
        fortress.guard().lockdown(&aborted),
        Ok(()),
        "no visit left open"
    );
}

#[test]
fn a_started_worker_blocks_lockdown_until_it_completes() {
    let fortress = unlocked();
    let worker = occupy(
        &fortress.guest(),
        || Ok::<_, Error>(Sleeper::default()),
        &Abort::never(),
    )
    .unwrap();
    assert!(worker.is_visiting());
    assert_eq!(fortress.guests(), 1);
    let guard = fortress.guard();
    let lockdown = thread::spawn(move || guard.lockdown(&Abort::never()));
    until_asleep(&fortress, Sleepers::Drain);
    worker.kill();
    assert!(!lockdown.is_finished() || fortress.guests() == 0);
    worker.wait().unwrap(); // the worker completes: the visit ends
    assert!(!worker.is_visiting());
    assert_eq!(within("lockdown", move || lockdown.join().unwrap()), Ok(()));
    worker.wait().unwrap(); // waiting again is harmless and ends nothing twice
    assert_eq!(
        worker.waits.load(SeqCst),
        2,
        "Deref reaches the inner worker"
    );
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn dropping_the_occupied_worker_ends_the_visit() {
    let fortress = unlocked();
    let worker: Occupied<Sleeper> = occupy(
        &fortress.guest(),
        || Ok::<_, Error>(Sleeper::default()),
        &Abort::never(),
    )
    .unwrap();
    assert_eq!(fortress.guests(), 1);
    drop(worker);
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn abort_during_a_slow_start_kills_and_waits_for_the_new_worker() {
    let fortress = unlocked();
    let abort = Abort::new();
    let started = Arc::new(AtomicBool::new(false));
    let (token, flag) = (abort.clone(), started.clone());
    let worker = Arc::new(Sleeper::default());
    let probe = worker.clone();
    let got = occupy(
        &fortress.guest(),
        move || {
            flag.store(true, SeqCst);
            token.abort(); // the caller gives up while the worker starts
            Ok::<_, Error>(SharedSleeper(worker))
        },
        &abort,
    );
    assert!(started.load(SeqCst));
    assert_eq!(
        got.err().map(|e| e.to_string()),
        Some("could not occupy the fortress".into())
    );
    assert!(
        *probe.killed.lock().unwrap(),
        "the orphan worker was killed"
    );
    assert_eq!(probe.waits.load(SeqCst), 1, "and waited for");
    assert_eq!(fortress.guests(), 0, "and its visit ended");
}

#[test]
fn occupy_woken_by_the_gate_opening_starts_the_worker_though_the_token_fired_before_its_visit_began(
) {
    // Rule U6: occupy reads the token once its visit has begun. Here it sleeps at the
    // locked gate; the gate opens, then the token fires. The state decides first, so the
    // wait ends by the gate opening, and a token that had fired by the time the visit
    // began cut no wait short: the worker starts and is returned. (A token read before
    // the visit began would not have fired yet; read again once `start` has returned, it
    // would have, and the new worker would be killed and the answer `Aborted`.)
    //
    // `start` waits for the token, so it has always fired by the time `start` returns.
    // If the occupying thread wakes and begins its visit between the unlock and the
    // abort, the token fires while `start` runs, and `Aborted` is right then: that
    // interleaving is rare, and a few tries give the other one (the first, most often).
    let tries = 20;
    let mut outcomes = Vec::new();
    for _ in 0..tries {
        let fortress = common::fortress();
        let abort = Abort::new();
        let (guest, token) = (fortress.guest(), abort.clone());
        let worker = Arc::new(Sleeper::default());
        let probe = Arc::clone(&worker);
        let occupying = thread::spawn(move || {
            let fired_at_start = AtomicBool::new(false);
            let start = || {
                fired_at_start.store(token.is_aborted(), SeqCst);
                common::until("the token to fire", || token.is_aborted());
                Ok::<_, NoCharm>(SharedSleeper(worker))
            };
            let got = occupy(&guest, start, &token).map(|occupied| {
                let killed = occupied.0.was_killed();
                occupied.kill();
                occupied.wait().unwrap();
                killed
            });
            (fired_at_start.load(SeqCst), got)
        });
        until_asleep(&fortress, Sleepers::Gate);
        fortress.guard().unlock().unwrap();
        abort.abort();
        let (fired_at_start, got) = within("occupy", move || occupying.join().unwrap());
        match got {
            Ok(killed) => {
                assert!(fired_at_start, "the token fired after start began, yet Ok");
                assert!(!killed, "the worker returned was killed");
            }
            Err(ref err) => {
                assert_eq!(*err, OccupyError::Fortress(Error::Aborted));
                assert!(probe.was_killed(), "the orphan worker was not killed");
            }
        }
        assert_eq!(fortress.guests(), 0);
        let started = got.is_ok() && fired_at_start;
        outcomes.push((fired_at_start, got));
        if started {
            return;
        }
    }
    panic!(
        "in {tries} tries, occupy never started the worker when the token fired after the \
         gate opened (fired at start, result): {outcomes:?}"
    );
}

#[test]
fn a_worker_thread_holds_the_fortress_open_for_its_whole_life() {
    let fortress = unlocked();
    let (tx, rx) = mpsc::channel();
    let guest = fortress.guest();
    let inner = Arc::new(Sleeper::default());
    let handle = inner.clone();
    // The worker runs on its own thread, which owns it and waits for it there.
    let runner = thread::spawn(move || {
        let worker = occupy(
            &guest,
            move || Ok::<_, Error>(SharedSleeper(handle)),
            &Abort::never(),
        )
        .unwrap();
        tx.send(()).unwrap();
        worker.wait()
    });
    rx.recv().unwrap();
    assert_eq!(fortress.guests(), 1);
    let guard = fortress.guard();
    let lockdown = thread::spawn(move || guard.lockdown(&Abort::never()));
    until_asleep(&fortress, Sleepers::Drain);
    assert!(!lockdown.is_finished(), "the worker's visit is still open");
    inner.kill(); // another part of the program stops the worker
    within("runner", move || runner.join().unwrap()).unwrap();
    assert_eq!(within("lockdown", move || lockdown.join().unwrap()), Ok(()));
}

#[test]
fn occupy_errors_are_fortress_errors_through_their_source() {
    let aborted: OccupyError<std::io::Error> = OccupyError::Fortress(Error::Aborted);
    assert!(is_fortress_error(&aborted));
    assert_eq!(aborted.to_string(), "could not occupy the fortress");
    let start = OccupyError::Start(std::io::Error::other("disk"));
    assert!(!is_fortress_error(&start));
    assert_eq!(start.to_string(), "the occupying worker failed to start");
    let source = std::error::Error::source(&start).unwrap();
    assert_eq!(source.to_string(), "disk");
}
