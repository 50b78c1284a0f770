//! The crate's rules in async form (`enter_async`, `enter_owned_async`, `visit_async`,
//! `lockdown_async`, `wait_async`), threads and tasks waiting on one fortress at once,
//! a thousand tasks at one gate, and the futures' `Send`-ness and fast path.
//!
//! Each test that needs a task to really wait first makes sure it has returned
//! `Pending` (its flag is in the state word, or `announce_pending` counted it), so the
//! pending path is what runs. Every wait is bounded: a bug fails the test instead of
//! hanging it. Cancel-by-drop and the stress test live in `tests/async_cancel.rs`.

mod common;

/// The layout of the fortresses under test (read by `common::fortress`).
/// `tests/sharded.rs` and `tests/read_mostly.rs` run this file again in their layouts.
#[allow(dead_code)]
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::Word;

use common::{
    announce_pending, block_within, fired, join, poll_noop, poll_with, recv_within, runtime,
    unlocked, until, until_asleep, until_pending, within, CountingWaker, Sleepers,
};
use fortress_gate::internals::{snapshot, Kind, State, Waiters};
use fortress_gate::{Abort, Error, Fortress, OwnedVisit, Worker};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::task::Poll;
use std::thread;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Long enough for a task that should stay pending to have finished if it were
/// wrongly woken; a wrong pass only makes a test weaker, never flaky.
const SETTLE: Duration = Duration::from_millis(20);

/// A fortress, unlocked, with one owned visit inside.
fn occupied() -> (Fortress, OwnedVisit) {
    let fortress = unlocked();
    let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
    (fortress, visit)
}

/// Spawns `enter_async` on `rt` as a task that drops the visit at once.
fn spawn_enter(
    rt: &tokio::runtime::Runtime,
    fortress: &Fortress,
    abort: &Abort,
) -> JoinHandle<Result<(), Error>> {
    let (guest, abort) = (fortress.guest(), abort.clone());
    rt.spawn(async move { guest.enter_async(&abort).await.map(drop) })
}

/// Spawns `lockdown_async` on `rt`.
fn spawn_lockdown(
    rt: &tokio::runtime::Runtime,
    fortress: &Fortress,
    abort: &Abort,
) -> JoinHandle<Result<(), Error>> {
    let (guard, abort) = (fortress.guard(), abort.clone());
    rt.spawn(async move { guard.lockdown_async(&abort).await })
}

/// The first poll of `fut`, which must be ready.
fn ready_at_first_poll<F: Future>(what: &str, fut: F) -> F::Output {
    match poll_noop(pin!(fut)) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("{what}: pending at its first poll"),
    }
}

// ----- An abort only cuts a wait short -----

#[test]
fn async_visits_to_an_unlocked_fortress_run_even_with_a_fired_token() {
    let rt = runtime();
    let fortress = unlocked();
    let guest = fortress.guest();
    let abort = fired();
    let got = block_within(&rt, "visits", async {
        (
            guest.visit_async(async { 7 }, &abort).await,
            guest.visit_async(async { fortress.guests() }, &abort).await,
            guest
                .enter_async(&abort)
                .await
                .map(|v| v.lockdown_pending()),
            guest
                .enter_owned_async(&abort)
                .await
                .map(|v| v.lockdown_pending()),
        )
    });
    assert_eq!(got, (Ok(7), Ok(1), Ok(false), Ok(false)));
    assert_eq!(fortress.guests(), 0, "every visit ended");
}

#[test]
fn an_async_lockdown_of_an_empty_fortress_returns_ok_with_a_fired_token() {
    let rt = runtime();
    let fortress = unlocked();
    let guard = fortress.guard();
    let abort = fired();
    assert_eq!(
        block_within(&rt, "lockdown", guard.lockdown_async(&abort)),
        Ok(())
    );
    assert!(fortress.is_locked());
    assert_eq!(fortress.guests(), 0);
    // A visit that has ended does not make the next lockdown wait either.
    guard.unlock().unwrap();
    fortress.guest().visit(|| (), &Abort::never()).unwrap();
    assert_eq!(
        ready_at_first_poll("lockdown", guard.lockdown_async(&abort)),
        Ok(())
    );
    assert!(fortress.is_locked());
}

#[test]
fn pending_async_entries_return_aborted_when_their_token_fires_and_never_enter() {
    let rt = runtime();
    let fortress = common::fortress();
    let abort = Abort::new();
    let pending = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for which in 0..3 {
        let (guest, token, pending, ran) = (
            fortress.guest(),
            abort.clone(),
            pending.clone(),
            ran.clone(),
        );
        tasks.push(rt.spawn(async move {
            let wait = async {
                match which {
                    0 => guest.enter_async(&token).await.map(drop),
                    1 => guest.enter_owned_async(&token).await.map(drop),
                    _ => {
                        let visit = async { ran.store(true, SeqCst) };
                        guest.visit_async(visit, &token).await
                    }
                }
            };
            announce_pending(wait, &pending).await
        }));
    }
    until("three pending entries", || pending.load(SeqCst) == 3);
    assert!(snapshot(&fortress).has(Waiters::Gate, Kind::Task));
    assert!(tasks.iter().all(|t| !t.is_finished()));
    abort.abort();
    for task in tasks {
        assert_eq!(join(&rt, "aborted entry", task), Err(Error::Aborted));
    }
    assert!(!ran.load(SeqCst), "the visit's future never ran");
    assert_eq!(fortress.guests(), 0);
    assert!(fortress.is_locked());
    // The aborted waits left nothing behind: the gate still works.
    fortress.guard().unlock().unwrap();
    let guest = fortress.guest();
    assert_eq!(
        block_within(&rt, "visit", guest.visit_async(async { 5 }, &abort)),
        Ok(5)
    );
}

#[test]
fn a_pending_lockdown_async_returns_aborted_when_its_token_fires_and_the_gate_stays_closed() {
    let rt = runtime();
    let (fortress, visit) = occupied();
    let abort = Abort::new();
    let lockdown = spawn_lockdown(&rt, &fortress, &abort);
    until_pending(&fortress, Sleepers::Drain);
    assert!(!lockdown.is_finished());
    abort.abort();
    assert_eq!(join(&rt, "aborted lockdown", lockdown), Err(Error::Aborted));
    assert!(fortress.is_locked(), "an aborted lockdown still locks");
    assert_eq!(fortress.guests(), 1, "the visit inside goes on");
    assert!(visit.lockdown_pending());
    assert!(fortress.guest().try_enter().is_none());
    drop(visit);
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn async_waits_with_a_token_fired_before_the_call_return_aborted_at_their_first_poll() {
    let fortress = common::fortress(); // locked: an entry would wait
    let guest = fortress.guest();
    let abort = fired();
    let ran = AtomicBool::new(false);
    assert_eq!(
        ready_at_first_poll("enter", guest.enter_async(&abort)).map(drop),
        Err(Error::Aborted)
    );
    assert_eq!(
        ready_at_first_poll("enter_owned", guest.enter_owned_async(&abort)).map(drop),
        Err(Error::Aborted)
    );
    let visit = guest.visit_async(async { ran.store(true, SeqCst) }, &abort);
    assert_eq!(ready_at_first_poll("visit", visit), Err(Error::Aborted));
    assert!(!ran.load(SeqCst), "the visit's future is never polled");
    assert_eq!(fortress.guests(), 0);

    let (busy, inside) = occupied(); // a lockdown would wait for `inside`
    assert_eq!(
        ready_at_first_poll("lockdown", busy.guard().lockdown_async(&abort)),
        Err(Error::Aborted)
    );
    assert!(busy.is_locked(), "it closed the gate before giving up");
    assert_eq!(busy.guests(), 1);
    drop(inside);
}

#[test]
fn a_pending_wait_whose_condition_holds_by_its_next_poll_succeeds_though_its_token_fired_too() {
    // The state decides first: by its next poll the wait need not wait any longer,
    // so the token that fired meanwhile does not turn it into `Aborted`.
    let fortress = common::fortress();
    let guest = fortress.guest();
    let abort = Abort::new();
    let mut enter = pin!(guest.enter_async(&abort));
    assert!(poll_noop(enter.as_mut()).is_pending());
    fortress.guard().unlock().unwrap();
    abort.abort();
    match poll_noop(enter.as_mut()) {
        Poll::Ready(Ok(visit)) => drop(visit),
        other => panic!("the gate was open: {:?}", other.map(|r| r.map(drop))),
    }

    let (busy, inside) = occupied();
    let guard = busy.guard();
    let abort = Abort::new();
    let mut lockdown = pin!(guard.lockdown_async(&abort));
    assert!(poll_noop(lockdown.as_mut()).is_pending());
    drop(inside);
    abort.abort();
    assert_eq!(poll_noop(lockdown.as_mut()), Poll::Ready(Ok(())));
    assert_eq!(snapshot(&busy), State::CLOSED);
}

// ----- An aborted lockdown still locks -----

#[test]
fn an_aborted_lockdown_async_still_locks_the_visits_inside_go_on_and_unlock_reopens() {
    let rt = runtime();
    let (fortress, inside) = occupied();
    let (guard, guest) = (fortress.guard(), fortress.guest());
    let abort = fired();
    assert_eq!(
        block_within(&rt, "lockdown", guard.lockdown_async(&abort)),
        Err(Error::Aborted)
    );
    assert!(fortress.is_locked());
    assert!(inside.lockdown_pending());
    assert_eq!(fortress.guests(), 1, "the visit inside goes on");
    assert!(guest.try_enter().is_none(), "new visits wait");
    assert_eq!(
        block_within(&rt, "enter", guest.enter_async(&abort)).map(drop),
        Err(Error::Aborted)
    );
    // The gate stays closed after the visit inside has left...
    drop(inside);
    assert!(fortress.is_locked());
    assert!(guest.try_enter().is_none());
    // ...until a guard unlocks it.
    guard.unlock().unwrap();
    assert_eq!(
        block_within(&rt, "visit", guest.visit_async(async { 3 }, &abort)),
        Ok(3)
    );
    assert_eq!(fortress.guests(), 0);
}

// ----- Repeating a call changes nothing -----

#[test]
fn repeated_async_lockdowns_unlocks_kills_and_waits_return_at_once_and_change_nothing() {
    let fortress = unlocked();
    let guard = fortress.guard();
    for _ in 0..2 {
        assert_eq!(
            ready_at_first_poll("lockdown", guard.lockdown_async(&Abort::never())),
            Ok(())
        );
        assert_eq!(snapshot(&fortress), State::CLOSED);
    }
    for _ in 0..2 {
        guard.unlock().unwrap();
        assert_eq!(snapshot(&fortress), State::OPEN);
    }
    for _ in 0..2 {
        fortress.kill();
        assert!(snapshot(&fortress).shut_down());
        assert!(!fortress.is_locked(), "kill leaves the lock state alone");
        ready_at_first_poll("wait", fortress.wait_async());
    }
}

// ----- Shutdown -----

#[test]
fn kill_wakes_pending_entries_and_lockdowns_with_shutdown() {
    let rt = runtime();
    let locked = common::fortress();
    let (busy, inside) = occupied();
    let pending = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicBool::new(false));
    let mut entries = Vec::new();
    for which in 0..3 {
        let (guest, pending, ran) = (locked.guest(), pending.clone(), ran.clone());
        entries.push(rt.spawn(async move {
            let never = Abort::never();
            let wait = async {
                match which {
                    0 => guest.enter_async(&never).await.map(drop),
                    1 => guest.enter_owned_async(&never).await.map(drop),
                    _ => {
                        let visit = async { ran.store(true, SeqCst) };
                        guest.visit_async(visit, &never).await
                    }
                }
            };
            announce_pending(wait, &pending).await
        }));
    }
    let lockdown = spawn_lockdown(&rt, &busy, &Abort::never());
    until("three pending entries", || pending.load(SeqCst) == 3);
    until_pending(&busy, Sleepers::Drain);
    assert!(!lockdown.is_finished());
    locked.kill();
    busy.kill();
    for entry in entries {
        assert_eq!(
            join(&rt, "entry woken by kill", entry),
            Err(Error::Shutdown)
        );
    }
    assert_eq!(
        join(&rt, "lockdown woken by kill", lockdown),
        Err(Error::Shutdown)
    );
    assert!(!ran.load(SeqCst));
    assert_eq!(locked.guests(), 0);
    assert_eq!(busy.guests(), 1, "a running visit is not interrupted");
    drop(inside);
    block_within(&rt, "wait", busy.wait_async());
}

#[test]
fn after_kill_every_async_call_returns_shutdown_at_its_first_poll() {
    for open in [true, false] {
        let fortress = if open { unlocked() } else { common::fortress() };
        fortress.kill();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        for abort in [Abort::never(), Abort::new(), fired()] {
            let ran = AtomicBool::new(false);
            assert_eq!(
                ready_at_first_poll("enter", guest.enter_async(&abort)).map(drop),
                Err(Error::Shutdown)
            );
            assert_eq!(
                ready_at_first_poll("enter_owned", guest.enter_owned_async(&abort)).map(drop),
                Err(Error::Shutdown)
            );
            let visit = guest.visit_async(async { ran.store(true, SeqCst) }, &abort);
            assert_eq!(ready_at_first_poll("visit", visit), Err(Error::Shutdown));
            assert!(!ran.load(SeqCst));
            assert_eq!(
                ready_at_first_poll("lockdown", guard.lockdown_async(&abort)),
                Err(Error::Shutdown)
            );
            assert_eq!(guard.unlock(), Err(Error::Shutdown));
            assert!(guest.try_enter().is_none());
        }
        assert_eq!(
            fortress.is_locked(),
            !open,
            "kill leaves the lock state alone"
        );
        assert_eq!(fortress.guests(), 0);
        ready_at_first_poll("wait", fortress.wait_async());
    }
}

#[test]
fn wait_async_completes_once_killed_with_no_visit_inside_and_not_before() {
    let rt = runtime();
    // Alive and empty: not done.
    let alive = unlocked();
    let waited = rt.block_on(async {
        tokio::time::timeout(SETTLE, alive.wait_async())
            .await
            .is_ok()
    });
    assert!(
        !waited,
        "wait_async completed on a fortress that was never killed"
    );

    let (fortress, visit) = occupied();
    let worker = fortress.clone();
    let waiter = rt.spawn(async move { worker.wait_async().await });
    until_pending(&fortress, Sleepers::Done);
    // Lockdowns and unlocks do not end it.
    let guard = fortress.guard();
    assert_eq!(guard.lockdown(&fired()), Err(Error::Aborted));
    guard.unlock().unwrap();
    thread::sleep(SETTLE);
    assert!(!waiter.is_finished(), "completed before kill");
    fortress.kill();
    thread::sleep(SETTLE);
    assert!(!waiter.is_finished(), "completed with a visit still inside");
    drop(visit);
    join(&rt, "wait after the last visit", waiter);
    // Once done, a new wait is ready at once.
    ready_at_first_poll("wait", fortress.wait_async());
    // And the alive fortress's wait completes once it is killed.
    alive.kill();
    block_within(&rt, "wait", alive.wait_async());
}

// ----- Several guards -----

#[test]
fn a_pending_lockdown_async_keeps_waiting_when_another_guard_unlocks() {
    let rt = runtime();
    let (fortress, visit) = occupied();
    let other = fortress.guard();
    let lockdown = spawn_lockdown(&rt, &fortress, &Abort::never());
    until_pending(&fortress, Sleepers::Drain);
    other.unlock().unwrap();
    drop(visit); // empty, but open: the pending lockdown's condition does not hold
    thread::sleep(SETTLE);
    assert!(
        !lockdown.is_finished(),
        "returned though the fortress was never locked and empty"
    );
    // Another guard locks the empty fortress down: now both lockdowns hold.
    other.lockdown(&Abort::never()).unwrap();
    assert_eq!(join(&rt, "pending lockdown", lockdown), Ok(()));
    assert!(fortress.is_locked());
}

#[test]
fn pending_lockdown_tasks_of_two_guards_both_complete_when_the_last_visit_leaves() {
    let rt = runtime();
    let (fortress, visit) = occupied();
    let second = fortress.guest().enter_owned(&Abort::never()).unwrap();
    let pending = Arc::new(AtomicUsize::new(0));
    let lockdowns: Vec<_> = (0..2)
        .map(|_| {
            let (guard, pending) = (fortress.guard(), pending.clone());
            rt.spawn(async move {
                announce_pending(guard.lockdown_async(&Abort::never()), &pending).await
            })
        })
        .collect();
    until("both lockdowns pending", || pending.load(SeqCst) == 2);
    drop(visit);
    thread::sleep(SETTLE);
    assert!(
        lockdowns.iter().all(|l| !l.is_finished()),
        "a lockdown completed with a visit inside"
    );
    drop(second);
    for lockdown in lockdowns {
        assert_eq!(join(&rt, "lockdown", lockdown), Ok(()));
    }
    assert_eq!(snapshot(&fortress), State::CLOSED);
}

// ----- A panic ends the visit -----

async fn explode(release: tokio::sync::oneshot::Receiver<()>) -> u8 {
    let _ = release.await;
    panic!("visit panicked on purpose")
}

#[test]
fn a_visit_async_whose_future_panics_ends_the_visit_and_a_pending_lockdown_completes() {
    let rt = runtime();
    let fortress = unlocked();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel();
    let guest = fortress.guest();
    let visitor = rt.spawn(async move {
        let visit = async move {
            entered_tx.send(()).unwrap();
            explode(release_rx).await
        };
        guest.visit_async(visit, &Abort::never()).await
    });
    recv_within(&entered_rx, "the visit started");
    assert_eq!(fortress.guests(), 1);
    let lockdown = spawn_lockdown(&rt, &fortress, &Abort::never());
    until_pending(&fortress, Sleepers::Drain);
    assert!(!lockdown.is_finished());
    release_tx.send(()).unwrap();
    let panic = block_within(&rt, "the panicking visit", visitor)
        .expect_err("the panic reaches the JoinHandle");
    assert!(panic.is_panic());
    assert_eq!(
        panic.into_panic().downcast_ref::<&str>(),
        Some(&"visit panicked on purpose")
    );
    assert_eq!(join(&rt, "lockdown after the panic", lockdown), Ok(()));
    assert_eq!(fortress.guests(), 0);
    // Nothing is poisoned.
    fortress.guard().unlock().unwrap();
    let guest = fortress.guest();
    assert_eq!(
        block_within(
            &rt,
            "visit",
            guest.visit_async(async { 4 }, &Abort::never())
        ),
        Ok(4)
    );
}

// ----- Guards go first -----

#[test]
fn once_lockdown_async_has_closed_the_gate_a_new_enter_async_waits_for_the_next_unlock() {
    let rt = runtime();
    let (fortress, visit) = occupied();
    let guest = fortress.guest();
    let lockdown = spawn_lockdown(&rt, &fortress, &Abort::never());
    until_pending(&fortress, Sleepers::Drain);
    // Guests keep arriving while one is inside; none gets in.
    assert!(guest.try_enter().is_none());
    let never = Abort::never();
    let mut probe = pin!(guest.enter_async(&never));
    assert!(poll_noop(probe.as_mut()).is_pending());
    let late = spawn_enter(&rt, &fortress, &Abort::never());
    until_pending(&fortress, Sleepers::Gate);
    drop(visit);
    assert_eq!(join(&rt, "lockdown", lockdown), Ok(()));
    thread::sleep(SETTLE);
    assert!(
        !late.is_finished(),
        "the late guest waits for the next unlock"
    );
    assert!(poll_noop(probe.as_mut()).is_pending());
    fortress.guard().unlock().unwrap();
    assert_eq!(join(&rt, "late entry", late), Ok(()));
    match poll_noop(probe.as_mut()) {
        Poll::Ready(Ok(visit)) => drop(visit),
        other => panic!(
            "the probe did not enter after unlock: {:?}",
            other.map(drop)
        ),
    }
    assert_eq!(fortress.guests(), 0);
}

// ----- Which answer comes is fixed -----

#[test]
fn shutdown_beats_aborted_when_kill_and_abort_both_reach_a_pending_wait() {
    let rt = runtime();
    let rounds = if cfg!(miri) { 2 } else { 20 };
    for _ in 0..rounds {
        let locked = common::fortress();
        let (busy, inside) = occupied();
        let abort = Abort::new();
        // Tasks, woken by whichever comes first.
        let entry = spawn_enter(&rt, &locked, &abort);
        let lockdown = spawn_lockdown(&rt, &busy, &abort);
        // And futures polled by hand, which look only after both have happened.
        let guest = locked.guest();
        let guard = busy.guard();
        let mut enter = pin!(guest.enter_async(&abort));
        let mut close = pin!(guard.lockdown_async(&abort));
        assert!(poll_noop(enter.as_mut()).is_pending());
        assert!(poll_noop(close.as_mut()).is_pending());
        until_pending(&locked, Sleepers::Gate);
        until_pending(&busy, Sleepers::Drain);
        locked.kill();
        busy.kill();
        abort.abort();
        assert_eq!(join(&rt, "entry", entry), Err(Error::Shutdown));
        assert_eq!(join(&rt, "lockdown", lockdown), Err(Error::Shutdown));
        assert_eq!(
            poll_noop(enter.as_mut()).map(|r| r.map(drop)),
            Poll::Ready(Err(Error::Shutdown))
        );
        assert_eq!(poll_noop(close.as_mut()), Poll::Ready(Err(Error::Shutdown)));
        drop(inside);
    }
}

// ----- Wake-ups -----

#[test]
fn a_woken_enter_async_that_finds_the_gate_closed_again_is_woken_by_the_next_unlock() {
    let fortress = common::fortress();
    let (guard, guest) = (fortress.guard(), fortress.guest());
    let never = Abort::never();
    let (waker, wakes) = CountingWaker::new();
    let mut enter = pin!(guest.enter_async(&never));
    for round in 1..=3 {
        assert!(poll_with(enter.as_mut(), &waker).is_pending());
        guard.unlock().unwrap();
        assert_eq!(wakes.wakes(), round, "unlock woke the pending entry");
        // Closed again before the entry polls: it must wait, and be woken again.
        guard.lockdown(&Abort::never()).unwrap();
    }
    assert!(poll_with(enter.as_mut(), &waker).is_pending());
    guard.unlock().unwrap();
    assert_eq!(wakes.wakes(), 4);
    match poll_with(enter.as_mut(), &waker) {
        Poll::Ready(Ok(visit)) => drop(visit),
        other => panic!("not admitted: {:?}", other.map(|r| r.map(drop))),
    }
    assert_eq!(snapshot(&fortress), State::OPEN);
}

// ----- Threads and tasks on one fortress -----

#[test]
fn one_unlock_wakes_both_a_blocked_thread_and_a_pending_task() {
    let rt = runtime();
    let fortress = common::fortress();
    let guest = fortress.guest();
    let thread_visit = thread::spawn(move || guest.visit(|| 1, &Abort::never()));
    let guest = fortress.guest();
    let task_visit = rt.spawn(async move { guest.visit_async(async { 2 }, &Abort::never()).await });
    until_asleep(&fortress, Sleepers::Gate);
    until_pending(&fortress, Sleepers::Gate);
    assert!(!thread_visit.is_finished() && !task_visit.is_finished());
    fortress.guard().unlock().unwrap();
    assert_eq!(
        within("thread visit", move || thread_visit.join().unwrap()),
        Ok(1)
    );
    assert_eq!(join(&rt, "task visit", task_visit), Ok(2));
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn a_lockdown_task_waits_for_a_threads_visit() {
    let rt = runtime();
    let fortress = unlocked();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let guest = fortress.guest();
    let visitor = thread::spawn(move || {
        guest.visit(
            move || {
                entered_tx.send(()).unwrap();
                recv_within(&release_rx, "release");
            },
            &Abort::never(),
        )
    });
    recv_within(&entered_rx, "the thread's visit started");
    let lockdown = spawn_lockdown(&rt, &fortress, &Abort::never());
    until_pending(&fortress, Sleepers::Drain);
    thread::sleep(SETTLE);
    assert!(!lockdown.is_finished(), "completed with the thread inside");
    assert!(fortress.is_locked());
    release_tx.send(()).unwrap();
    within("visitor", move || visitor.join().unwrap()).unwrap();
    assert_eq!(join(&rt, "lockdown", lockdown), Ok(()));
    assert_eq!(snapshot(&fortress), State::CLOSED);
}

#[test]
fn a_thread_lockdown_waits_for_a_tasks_visit() {
    let rt = runtime();
    let fortress = unlocked();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let guest = fortress.guest();
    let visitor = rt.spawn(async move {
        let visit = async move {
            entered_tx.send(()).unwrap();
            release_rx.await.is_ok()
        };
        guest.visit_async(visit, &Abort::never()).await
    });
    recv_within(&entered_rx, "the task's visit started");
    let guard = fortress.guard();
    let lockdown = thread::spawn(move || guard.lockdown(&Abort::never()));
    until_asleep(&fortress, Sleepers::Drain);
    thread::sleep(SETTLE);
    assert!(!lockdown.is_finished(), "returned with the task inside");
    release_tx.send(()).unwrap();
    assert_eq!(join(&rt, "visitor", visitor), Ok(true));
    assert_eq!(
        within("thread lockdown", move || lockdown.join().unwrap()),
        Ok(())
    );
    assert_eq!(snapshot(&fortress), State::CLOSED);
}

// ----- Many tasks -----

#[test]
fn one_unlock_admits_a_thousand_tasks_waiting_at_a_closed_gate() {
    let tasks = if cfg!(miri) { 16 } else { 1000 };
    let rt = runtime();
    let fortress = common::fortress();
    let pending = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let (guest, pending, ran) = (fortress.guest(), pending.clone(), ran.clone());
            rt.spawn(async move {
                let visit = async {
                    ran.fetch_add(1, SeqCst);
                    i
                };
                announce_pending(guest.visit_async(visit, &Abort::never()), &pending).await
            })
        })
        .collect();
    until("every task pending", || pending.load(SeqCst) == tasks);
    assert_eq!(ran.load(SeqCst), 0, "no visit runs while locked");
    assert_eq!(fortress.guests(), 0, "pending guests are not inside");
    fortress.guard().unlock().unwrap();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(join(&rt, "admitted task", handle), Ok(i));
    }
    assert_eq!(ran.load(SeqCst), tasks);
    assert_eq!(fortress.guests(), 0);
    assert_eq!(snapshot(&fortress), State::OPEN, "no waiter flag left");
}

// ----- The futures -----

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[test]
fn the_async_futures_are_send_and_run_as_tokio_tasks() {
    let rt = runtime();
    let fortress = unlocked();
    let never = Abort::never();
    // The futures themselves, never polled.
    let (guard, guest) = (fortress.guard(), fortress.guest());
    drop(assert_send(guest.enter_async(&never)));
    drop(assert_send(guest.enter_owned_async(&never)));
    drop(assert_send(guest.visit_async(async {}, &never)));
    drop(assert_send(guard.lockdown_async(&never)));
    drop(assert_send(fortress.wait_async()));
    assert!(!fortress.is_locked(), "an unpolled lockdown does nothing");
    // And on tokio's worker threads, with a visit held across an await.
    let worker = fortress.clone();
    let task = rt.spawn(async move {
        let never = Abort::never();
        let (guard, guest) = (worker.guard(), worker.guest());
        let visit = guest.enter_async(&never).await?;
        tokio::task::yield_now().await;
        let owned = guest.enter_owned_async(&never).await?;
        tokio::task::yield_now().await;
        let inside = worker.guests();
        drop((visit, owned));
        let value = guest.visit_async(tokio::task::yield_now(), &never).await;
        guard.lockdown_async(&never).await?;
        let locked = worker.is_locked();
        guard.unlock()?;
        worker.kill();
        worker.wait_async().await;
        Ok::<_, Error>((inside, value, locked))
    });
    assert_eq!(join(&rt, "task", task), Ok((2, Ok(()), true)));
    assert!(snapshot(&fortress).shut_down());
}

#[test]
fn enter_async_at_an_open_gate_is_ready_at_its_first_poll_and_flags_nothing() {
    let fortress = unlocked();
    let guest = fortress.guest();
    let never = Abort::never();
    let visit = ready_at_first_poll("enter", guest.enter_async(&never)).unwrap();
    assert_eq!(fortress.guests(), 1);
    let owned = ready_at_first_poll("enter_owned", guest.enter_owned_async(&never)).unwrap();
    assert_eq!(fortress.guests(), 2);
    let n = ready_at_first_poll(
        "visit",
        guest.visit_async(async { fortress.guests() }, &never),
    );
    assert_eq!(n, Ok(3));
    drop((visit, owned));
    assert_eq!(
        snapshot(&fortress),
        State::OPEN,
        "nothing waited, nothing flagged"
    );
    // With a token that has fired, too: no wait, so no abort.
    drop(ready_at_first_poll("enter", guest.enter_async(&fired())).unwrap());
    assert_eq!(snapshot(&fortress), State::OPEN);
}

// ----- The helpers cannot pass a lost wake-up -----

#[test]
#[should_panic(expected = "still pending after")]
fn block_within_fails_a_future_that_nobody_woke_though_it_would_be_ready_if_polled_again() {
    // A timeout polls its future once more when the time is up: a future whose wake-up
    // was lost would then complete late, and the test would pass.
    let rt = runtime();
    let mut polled = false;
    let forgotten = std::future::poll_fn(move |_| {
        if std::mem::replace(&mut polled, true) {
            Poll::Ready(())
        } else {
            Poll::Pending // and nothing will wake it
        }
    });
    common::block_within_for(
        &rt,
        Duration::from_millis(50),
        "a future nobody wakes",
        forgotten,
    );
}
