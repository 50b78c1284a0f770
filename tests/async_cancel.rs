//! Cancel by drop: a pending `enter_async`, `visit_async`, `lockdown_async` or
//! `wait_async` that is dropped (by hand, by `JoinHandle::abort`, by a timeout) leaves
//! nothing behind and takes no wake-up from anybody else; a dropped lockdown leaves the
//! gate closed. Then a cancel-safety stress test: random races of async waits against
//! unlocks and lockdowns from tasks and threads, with random timeouts and drops.
//!
//! Every wait is bounded (`within`, `block_within`, `join`, a timeout or a deadline
//! token), so a lost wake-up fails the test instead of hanging it.

mod common;

/// The layout of the fortresses under test (read by `common::fortress`).
/// `tests/sharded.rs` and `tests/read_mostly.rs` run this file again in their layouts.
#[allow(dead_code)]
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::Word;

use common::{
    announce_pending, block_within, fired, join, poll_noop, poll_once_then_drop, poll_with,
    runtime, unlocked, until, until_asleep, until_pending, within, CountingWaker, Sleepers,
    XorShift,
};
use fortress_gate::internals::{snapshot, Kind, State, Waiters};
use fortress_gate::{Abort, Error, Fortress, OwnedVisit, Worker};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use tokio::task::{yield_now, JoinHandle};
use tokio::time::{sleep, timeout};

/// Long enough for a task that should stay pending to have finished if it were
/// wrongly woken; a wrong pass only makes a test weaker, never flaky.
const SETTLE: Duration = Duration::from_millis(20);

/// A fortress, unlocked, with one owned visit inside.
fn occupied() -> (Fortress, OwnedVisit) {
    let fortress = unlocked();
    let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
    (fortress, visit)
}

/// A task that enters and leaves at once, counted in `pending` once it waits.
fn spawn_counted_enter(
    rt: &tokio::runtime::Runtime,
    fortress: &Fortress,
    pending: &Arc<AtomicUsize>,
) -> JoinHandle<Result<(), Error>> {
    let (guest, pending) = (fortress.guest(), pending.clone());
    rt.spawn(async move {
        let never = Abort::never();
        announce_pending(guest.enter_async(&never), &pending)
            .await
            .map(drop)
    })
}

/// A thread that visits, waiting with no deadline (its join is bounded).
fn spawn_thread_visit(fortress: &Fortress) -> thread::JoinHandle<Result<u8, Error>> {
    let guest = fortress.guest();
    thread::spawn(move || guest.visit(|| 9, &Abort::never()))
}

/// Awaits a task that was aborted by its `JoinHandle`: it must have been cancelled.
fn assert_cancelled<T>(rt: &tokio::runtime::Runtime, what: &str, task: JoinHandle<T>) {
    match block_within(rt, what, task) {
        Err(e) if e.is_cancelled() => {}
        Err(e) => std::panic::resume_unwind(e.into_panic()),
        Ok(_) => panic!("{what}: finished though it should have been waiting"),
    }
}

// ----- Dropped entries -----

#[test]
fn a_dropped_pending_enter_async_leaves_no_guest_and_is_never_woken() {
    let fortress = common::fortress();
    let guest = fortress.guest();
    let abort = Abort::new();
    let (waker, wakes) = CountingWaker::new();
    let mut entry = Box::pin(guest.enter_async(&abort));
    assert!(poll_with(entry.as_mut(), &waker).is_pending());
    assert!(snapshot(&fortress).has(Waiters::Gate, Kind::Task));
    assert_eq!(fortress.guests(), 0);
    drop(entry);
    assert_eq!(
        fortress.guests(),
        0,
        "a dropped entry leaves no guest behind"
    );
    // Its registrations went with it: neither the token nor the gate wakes it.
    abort.abort();
    fortress.guard().unlock().unwrap();
    assert_eq!(wakes.wakes(), 0, "a dropped future was woken");
    assert_eq!(fortress.guests(), 0);
    assert_eq!(snapshot(&fortress), State::OPEN, "unlock cleared the flag");
}

#[test]
fn a_dropped_pending_enter_async_steals_no_wake_up_from_other_tasks_and_threads() {
    let rt = runtime();
    let fortress = common::fortress();
    let pending = Arc::new(AtomicUsize::new(0));
    // Others wait at the gate: a task and a thread.
    let task = spawn_counted_enter(&rt, &fortress, &pending);
    let visitor = spawn_thread_visit(&fortress);
    // Two entries that give up: one polled here and dropped, one a task aborted
    // through its JoinHandle.
    let guest = fortress.guest();
    let never = Abort::never();
    let mut dropped = Box::pin(guest.enter_async(&never));
    assert!(poll_noop(dropped.as_mut()).is_pending());
    let aborted = spawn_counted_enter(&rt, &fortress, &pending);
    until("both tasks pending", || pending.load(SeqCst) == 2);
    until_asleep(&fortress, Sleepers::Gate);
    drop(dropped);
    aborted.abort();
    assert_cancelled(&rt, "aborted entry", aborted);
    assert_eq!(fortress.guests(), 0);
    thread::sleep(SETTLE);
    assert!(!task.is_finished() && !visitor.is_finished());
    fortress.guard().unlock().unwrap();
    assert_eq!(join(&rt, "waiting task", task), Ok(()));
    assert_eq!(
        within("waiting thread", move || visitor.join().unwrap()),
        Ok(9)
    );
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn dropping_a_woken_but_unpolled_enter_async_loses_nothing_for_others() {
    let rt = runtime();
    for relock in [false, true] {
        let fortress = common::fortress();
        let guard = fortress.guard();
        let guest = fortress.guest();
        let never = Abort::never();
        let (waker, wakes) = CountingWaker::new();
        let mut woken = Box::pin(guest.enter_async(&never));
        assert!(poll_with(woken.as_mut(), &waker).is_pending());
        let pending = Arc::new(AtomicUsize::new(0));
        let task = spawn_counted_enter(&rt, &fortress, &pending);
        let visitor = spawn_thread_visit(&fortress);
        until("the task pending", || pending.load(SeqCst) == 1);
        until_asleep(&fortress, Sleepers::Gate);
        guard.unlock().unwrap();
        assert_eq!(wakes.wakes(), 1, "unlock wakes the pending future");
        if relock {
            // The gate closes again before the others may have got in: they wait
            // again (or have entered and left), the woken future still unpolled.
            let relock = guard.clone();
            let locked = within("relock", move || relock.lockdown(&Abort::never()));
            assert_eq!(locked, Ok(()));
        }
        drop(woken);
        if relock {
            guard.unlock().unwrap();
        }
        assert_eq!(join(&rt, "task", task), Ok(()));
        assert_eq!(within("thread", move || visitor.join().unwrap()), Ok(9));
        assert_eq!(fortress.guests(), 0);
        assert_eq!(wakes.wakes(), 1, "woken once, then dropped");
    }
}

#[test]
fn the_waker_slot_a_dropped_enter_async_freed_serves_the_next_waiter() {
    let fortress = common::fortress();
    let guest = fortress.guest();
    let never = Abort::never();
    let (first_waker, first) = CountingWaker::new();
    let (second_waker, second) = CountingWaker::new();
    let mut entry = Box::pin(guest.enter_async(&never));
    assert!(poll_with(entry.as_mut(), &first_waker).is_pending());
    drop(entry);
    let mut next = Box::pin(guest.enter_async(&never));
    assert!(poll_with(next.as_mut(), &second_waker).is_pending());
    fortress.guard().unlock().unwrap();
    assert_eq!((first.wakes(), second.wakes()), (0, 1));
    match poll_with(next.as_mut(), &second_waker) {
        std::task::Poll::Ready(Ok(visit)) => drop(visit),
        other => panic!("woken but not admitted: {:?}", other.map(|r| r.map(drop))),
    }
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn a_dropped_pending_visit_async_never_runs_its_future() {
    let fortress = common::fortress();
    let guest = fortress.guest();
    let ran = AtomicBool::new(false);
    let never = Abort::never();
    let mut visit = Box::pin(guest.visit_async(async { ran.store(true, SeqCst) }, &never));
    assert!(poll_noop(visit.as_mut()).is_pending());
    drop(visit);
    fortress.guard().unlock().unwrap();
    assert!(!ran.load(SeqCst));
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn dropping_a_visit_async_inside_its_visit_ends_the_visit_and_a_pending_lockdown_completes() {
    let rt = runtime();
    let fortress = unlocked();
    let guest = fortress.guest();
    let never = Abort::never();
    let mut visit = Box::pin(guest.visit_async(std::future::pending::<()>(), &never));
    assert!(poll_noop(visit.as_mut()).is_pending());
    assert_eq!(fortress.guests(), 1, "the future waits inside its visit");
    let guard = fortress.guard();
    let lockdown = rt.spawn(async move { guard.lockdown_async(&Abort::never()).await });
    until_pending(&fortress, Sleepers::Drain);
    thread::sleep(SETTLE);
    assert!(!lockdown.is_finished());
    drop(visit);
    assert_eq!(fortress.guests(), 0);
    assert_eq!(join(&rt, "lockdown", lockdown), Ok(()));
    assert_eq!(snapshot(&fortress), State::CLOSED);
}

// ----- Dropped lockdowns -----

#[test]
fn a_dropped_pending_lockdown_async_leaves_the_gate_closed() {
    let rt = runtime();
    let (fortress, inside) = occupied();
    let (guard, guest) = (fortress.guard(), fortress.guest());
    let (waker, wakes) = CountingWaker::new();
    let abort = Abort::new();
    let mut lockdown = Box::pin(guard.lockdown_async(&abort));
    assert!(poll_with(lockdown.as_mut(), &waker).is_pending());
    drop(lockdown);
    assert!(fortress.is_locked(), "a dropped lockdown still locks");
    assert!(inside.lockdown_pending());
    assert_eq!(fortress.guests(), 1, "the visit inside goes on");
    assert!(guest.try_enter().is_none());
    assert_eq!(
        block_within(&rt, "enter", guest.enter_async(&fired())).map(drop),
        Err(Error::Aborted)
    );
    abort.abort();
    drop(inside);
    assert_eq!(wakes.wakes(), 0, "a dropped lockdown was woken");
    // Closed and empty, and no flag is left standing for the dropped lockdown.
    assert_eq!(snapshot(&fortress), State::CLOSED);
    assert!(guest.try_enter().is_none(), "still closed after the drain");
    guard.unlock().unwrap();
    assert_eq!(
        block_within(
            &rt,
            "visit",
            guest.visit_async(async { 1 }, &Abort::never())
        ),
        Ok(1)
    );
}

#[test]
fn a_lockdown_async_dropped_before_its_first_poll_does_not_close_the_gate() {
    let (fortress, inside) = occupied();
    let guard = fortress.guard();
    drop(guard.lockdown_async(&Abort::never()));
    assert!(!fortress.is_locked(), "the gate closes at the first poll");
    assert!(!inside.lockdown_pending());
    drop(inside);
    assert_eq!(snapshot(&fortress), State::OPEN);
}

#[test]
fn a_later_lockdown_completes_after_a_pending_lockdown_async_was_dropped() {
    let rt = runtime();
    let (fortress, inside) = occupied();
    let guard = fortress.guard();
    let never = Abort::never();
    let mut dropped = Box::pin(guard.lockdown_async(&never));
    assert!(poll_noop(dropped.as_mut()).is_pending());
    drop(dropped);
    let pending = Arc::new(AtomicUsize::new(0));
    let (guard, counter) = (fortress.guard(), pending.clone());
    let later =
        rt.spawn(
            async move { announce_pending(guard.lockdown_async(&Abort::never()), &counter).await },
        );
    let thread_guard = fortress.guard();
    let thread_lockdown = thread::spawn(move || thread_guard.lockdown(&Abort::never()));
    until("the later lockdown pending", || pending.load(SeqCst) == 1);
    until_asleep(&fortress, Sleepers::Drain);
    drop(inside);
    assert_eq!(join(&rt, "later lockdown", later), Ok(()));
    assert_eq!(
        within("thread lockdown", move || thread_lockdown.join().unwrap()),
        Ok(())
    );
    assert_eq!(snapshot(&fortress), State::CLOSED);
}

// ----- Dropped waits for shutdown, and aborted tasks -----

#[test]
fn a_dropped_pending_wait_async_is_never_woken_and_a_later_one_completes() {
    let rt = runtime();
    let fortress = unlocked();
    let (waker, wakes) = CountingWaker::new();
    let mut wait = Box::pin(fortress.wait_async());
    assert!(poll_with(wait.as_mut(), &waker).is_pending());
    drop(wait);
    let worker = fortress.clone();
    let later = rt.spawn(async move { worker.wait_async().await });
    until_pending(&fortress, Sleepers::Done);
    fortress.kill();
    join(&rt, "later wait", later);
    assert_eq!(wakes.wakes(), 0, "a dropped wait was woken");
}

#[test]
fn aborting_tokio_tasks_pending_in_async_waits_cancels_them_and_leaves_the_fortresses_working() {
    let rt = runtime();
    let locked = common::fortress();
    let (busy, inside) = occupied();
    let pending = Arc::new(AtomicUsize::new(0));
    let entry = spawn_counted_enter(&rt, &locked, &pending);
    let (guard, counter) = (busy.guard(), pending.clone());
    let lockdown =
        rt.spawn(
            async move { announce_pending(guard.lockdown_async(&Abort::never()), &counter).await },
        );
    let (worker, counter) = (locked.clone(), pending.clone());
    let wait = rt.spawn(async move { announce_pending(worker.wait_async(), &counter).await });
    until("three tasks pending", || pending.load(SeqCst) == 3);
    entry.abort();
    lockdown.abort();
    wait.abort();
    assert_cancelled(&rt, "entry", entry);
    assert_cancelled(&rt, "lockdown", lockdown);
    assert_cancelled(&rt, "wait", wait);
    assert_eq!(locked.guests(), 0);
    assert!(
        busy.is_locked(),
        "the cancelled lockdown had closed the gate"
    );
    assert_eq!(busy.guests(), 1);
    drop(inside);
    // Both fortresses still work.
    let guard = busy.guard();
    assert_eq!(
        block_within(&rt, "lockdown", guard.lockdown_async(&fired())),
        Ok(())
    );
    locked.guard().unlock().unwrap();
    let guest = locked.guest();
    assert_eq!(
        block_within(&rt, "visit", guest.visit_async(async { 2 }, &fired())),
        Ok(2)
    );
    locked.kill();
    block_within(&rt, "wait", locked.wait_async());
}

// ----- Cancel-safety stress -----

/// Rounds of the stress tests; fewer under Miri, which is slow.
const ROUNDS: u64 = if cfg!(miri) { 12 } else { 2000 };

/// A token that gives up after `tiny`: a deadline token, except under Miri, where a
/// token that has already fired stands in. (The crate's deadline timer is a thread
/// that lives as long as the process, and Miri fails a test binary that exits with a
/// thread still running.)
fn give_up_after(tiny: Duration) -> Abort {
    if cfg!(miri) {
        fired()
    } else {
        Abort::after(tiny)
    }
}

/// The answer of a wait that uses `Abort::never()` on a fortress nobody kills.
fn must_be_ok<T>(what: &str, result: Result<T, Error>) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e} though nothing can abort it"))
}

/// A token-bounded wait may be aborted, never shut down.
fn ok_or_aborted<T>(what: &str, result: Result<T, Error>) -> Option<T> {
    match result {
        Ok(out) => Some(out),
        Err(Error::Aborted) => None,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// One random action of a task in the stress test. Every wait ends: by a timeout, by
/// a token that fires, or by a drop after one poll.
async fn task_action(fortress: Fortress, seed: u64) {
    let mut rng = XorShift::new(seed);
    let (guard, guest) = (fortress.guard(), fortress.guest());
    let never = Abort::never();
    let tiny = rng.micros(300);
    match rng.below(10) {
        0 => {
            if let Ok(entered) = timeout(tiny, guest.enter_async(&never)).await {
                let visit = must_be_ok("enter", entered);
                if rng.below(2) == 0 {
                    yield_now().await;
                }
                drop(visit);
            }
        }
        1 => {
            if let Some(entered) = poll_once_then_drop(guest.enter_owned_async(&never)).await {
                drop(must_be_ok("enter_owned", entered));
            }
        }
        2 => {
            if let Ok(visited) = timeout(tiny, guest.visit_async(yield_now(), &never)).await {
                must_be_ok("visit", visited);
            }
        }
        3 => {
            // A token that another task fires a moment later.
            let abort = Abort::new();
            let token = abort.clone();
            let firer = tokio::spawn(async move {
                sleep(tiny).await;
                token.abort();
            });
            drop(ok_or_aborted("enter", guest.enter_async(&abort).await));
            firer.await.unwrap();
        }
        4 => {
            let abort = give_up_after(tiny);
            drop(ok_or_aborted(
                "enter",
                guest.enter_owned_async(&abort).await,
            ));
        }
        5 => {
            if let Ok(locked) = timeout(tiny, guard.lockdown_async(&never)).await {
                must_be_ok("lockdown", locked);
                if rng.below(2) == 0 {
                    yield_now().await;
                }
                must_be_ok("unlock", guard.unlock());
            }
        }
        6 => {
            if let Some(locked) = poll_once_then_drop(guard.lockdown_async(&never)).await {
                must_be_ok("lockdown", locked);
            }
        }
        7 => {
            let abort = give_up_after(tiny);
            ok_or_aborted("lockdown", guard.lockdown_async(&abort).await);
        }
        _ => must_be_ok("unlock", guard.unlock()),
    }
}

/// One random action of the blocking thread in the stress test.
fn thread_action(fortress: &Fortress, rng: &mut XorShift) {
    let (guard, guest) = (fortress.guard(), fortress.guest());
    let never = Abort::never();
    let tiny = rng.micros(300);
    match rng.below(6) {
        0 => must_be_ok("unlock", guard.unlock()),
        1 => drop(ok_or_aborted(
            "lockdown",
            guard.lockdown(&give_up_after(tiny)),
        )),
        2 => drop(ok_or_aborted(
            "visit",
            guest.visit(|| (), &give_up_after(tiny)),
        )),
        3 => {
            // A future polled once on this thread, then dropped.
            if let std::task::Poll::Ready(entered) =
                poll_noop(std::pin::pin!(guest.enter_async(&never)))
            {
                drop(must_be_ok("enter", entered));
            }
        }
        4 => {
            if let std::task::Poll::Ready(locked) =
                poll_noop(std::pin::pin!(guard.lockdown_async(&never)))
            {
                must_be_ok("lockdown", locked);
            }
        }
        _ => thread::yield_now(),
    }
}

/// At the end of a stress test, with every waiter gone: nobody inside, a visit
/// succeeds after unlock, a lockdown returns `Ok` at once, and no flag is left over.
fn assert_clean(rt: &tokio::runtime::Runtime, fortress: &Fortress) {
    assert_eq!(fortress.guests(), 0, "{fortress:?}");
    assert_eq!(snapshot(fortress).check_invariants(), Ok(()));
    let (guard, guest) = (fortress.guard(), fortress.guest());
    guard.unlock().unwrap();
    assert!(!snapshot(fortress).locked());
    assert_eq!(
        guest.visit(|| 1, &fired()),
        Ok(1),
        "open: no wait, no abort"
    );
    assert_eq!(
        block_within(rt, "final visit", guest.visit_async(async { 2 }, &fired())),
        Ok(2)
    );
    assert_eq!(
        block_within(rt, "final lockdown", guard.lockdown_async(&fired())),
        Ok(())
    );
    assert_eq!(
        snapshot(fortress),
        State::CLOSED,
        "locked, empty, no waiter flag"
    );
    guard.unlock().unwrap();
    assert_eq!(snapshot(fortress), State::OPEN);
}

#[test]
fn random_races_of_async_waits_against_unlocks_lockdowns_and_cancellation_leave_the_fortress_clean()
{
    let rt = runtime();
    let fortress = unlocked();
    let stop = Arc::new(AtomicBool::new(false));
    // A thread that keeps unlocking, locking down and visiting, as blocking callers do.
    let blocking = {
        let (fortress, stop) = (fortress.clone(), stop.clone());
        thread::spawn(move || {
            let mut rng = XorShift::new(u64::MAX);
            let mut actions = 0u64;
            while !stop.load(SeqCst) {
                thread_action(&fortress, &mut rng);
                actions += 1;
            }
            actions
        })
    };
    for round in 0..ROUNDS {
        let mut rng = XorShift::new(round);
        let tasks: Vec<_> = (0..4)
            .map(|_| rt.spawn(task_action(fortress.clone(), rng.next_u64())))
            .collect();
        if rng.below(4) == 0 {
            // Cancel one task wherever it is: pending, woken, or done.
            tasks[rng.below(4) as usize].abort();
        }
        for task in tasks {
            match block_within(&rt, "stress task", task) {
                Ok(()) => {}
                Err(e) if e.is_cancelled() => {}
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
    }
    stop.store(true, SeqCst);
    let actions = within("blocking thread", move || blocking.join().unwrap());
    assert!(actions > 0, "the blocking thread never ran");
    assert_clean(&rt, &fortress);
}

/// Counts one visit in `inside` from its creation until it is dropped.
struct Inside<'a>(&'a AtomicUsize);

impl<'a> Inside<'a> {
    fn new(inside: &'a AtomicUsize) -> Inside<'a> {
        inside.fetch_add(1, SeqCst);
        Inside(inside)
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// The body of a visit in the exclusivity stress test: counted in `inside` while it
/// lasts, including when it is dropped halfway (a timeout or a task abort), since
/// dropping it happens inside the visit too.
async fn counted_visit(inside: &AtomicUsize, rng: &mut XorShift) {
    let _counted = Inside::new(inside);
    if rng.below(2) == 0 {
        yield_now().await;
    }
}

/// A guest task of the exclusivity stress test: enters by every async way, with
/// random timeouts, drops and task aborts, until `stop`.
async fn visitor(
    fortress: Fortress,
    seed: u64,
    inside: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let mut rng = XorShift::new(seed);
    let guest = fortress.guest();
    let never = Abort::never();
    let mut visits = 0;
    while !stop.load(SeqCst) {
        let tiny = rng.micros(300);
        match rng.below(4) {
            0 => {
                if let Ok(entered) = timeout(tiny, guest.enter_async(&never)).await {
                    let visit = must_be_ok("enter", entered);
                    counted_visit(&inside, &mut rng).await;
                    drop(visit);
                    visits += 1;
                }
            }
            1 => {
                if let Some(entered) = poll_once_then_drop(guest.enter_owned_async(&never)).await {
                    let visit = must_be_ok("enter_owned", entered);
                    counted_visit(&inside, &mut rng).await;
                    drop(visit);
                    visits += 1;
                }
            }
            2 => {
                let mut inner = rng.clone();
                let visit = guest.visit_async(counted_visit(&inside, &mut inner), &never);
                if let Ok(visited) = timeout(tiny, visit).await {
                    must_be_ok("visit", visited);
                    visits += 1;
                }
            }
            _ => {
                let (guest, inside, seed) = (guest.clone(), inside.clone(), rng.next_u64());
                let task = tokio::spawn(async move {
                    let visit = must_be_ok("enter", guest.enter_async(&Abort::never()).await);
                    counted_visit(&inside, &mut XorShift::new(seed)).await;
                    drop(visit);
                });
                if rng.below(2) == 0 {
                    yield_now().await;
                }
                task.abort();
                match task.await {
                    Ok(()) => visits += 1,
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            }
        }
        yield_now().await;
    }
    visits
}

/// What the one guard checks while it holds the fortress: nobody is inside, and
/// nobody gets in.
async fn assert_exclusive(fortress: &Fortress, inside: &AtomicUsize) {
    assert!(fortress.is_locked());
    for _ in 0..2 {
        assert_eq!(
            inside.load(SeqCst),
            0,
            "a visit runs during the exclusive phase"
        );
        assert!(fortress.guest().try_enter().is_none());
        yield_now().await;
    }
}

#[test]
fn a_lockdown_async_that_returns_ok_has_the_fortress_to_itself_while_waits_around_it_are_cancelled()
{
    let rt = runtime();
    let fortress = unlocked();
    let inside = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let visitors: Vec<_> = (0..3)
        .map(|i| {
            rt.spawn(visitor(
                fortress.clone(),
                1000 + i,
                inside.clone(),
                stop.clone(),
            ))
        })
        .collect();
    let blocking = {
        let (fortress, inside, stop) = (fortress.clone(), inside.clone(), stop.clone());
        thread::spawn(move || {
            let mut rng = XorShift::new(7);
            let mut visits = 0u64;
            while !stop.load(SeqCst) {
                let give_up = give_up_after(rng.micros(300));
                let visited = fortress.guest().visit(
                    || {
                        let _counted = Inside::new(&inside);
                        thread::yield_now();
                    },
                    &give_up,
                );
                visits += u64::from(ok_or_aborted("thread visit", visited).is_some());
            }
            visits
        })
    };
    // The one guard: only it closes and opens the gate, so once it has closed it, the
    // gate stays closed until it unlocks, whatever became of the lockdown future.
    let (guard_fortress, guard_inside) = (fortress.clone(), inside.clone());
    let lockdowns = block_within(&rt, "the guard", async move {
        let (fortress, inside) = (guard_fortress, guard_inside);
        let guard = fortress.guard();
        let never = Abort::never();
        let mut rng = XorShift::new(42);
        let mut completed = 0u64;
        for _ in 0..ROUNDS {
            let tiny = rng.micros(300);
            let done = match rng.below(3) {
                0 => match timeout(tiny, guard.lockdown_async(&never)).await {
                    Ok(result) => {
                        must_be_ok("lockdown", result);
                        true
                    }
                    Err(_) => false,
                },
                1 => match poll_once_then_drop(guard.lockdown_async(&never)).await {
                    Some(result) => {
                        must_be_ok("lockdown", result);
                        true
                    }
                    None => false,
                },
                _ => {
                    let give_up = give_up_after(tiny);
                    ok_or_aborted("lockdown", guard.lockdown_async(&give_up).await).is_some()
                }
            };
            assert!(
                fortress.is_locked(),
                "a lockdown gave up and left the gate open"
            );
            if done {
                completed += 1;
                assert_exclusive(&fortress, &inside).await;
            } else if rng.below(2) == 0 {
                // Finish the lockdown that gave up: the gate never reopened meanwhile.
                must_be_ok("lockdown", guard.lockdown_async(&never).await);
                completed += 1;
                assert_exclusive(&fortress, &inside).await;
            }
            must_be_ok("unlock", guard.unlock());
            if rng.below(2) == 0 {
                sleep(tiny).await;
            } else {
                yield_now().await;
            }
        }
        completed
    });
    stop.store(true, SeqCst);
    let mut visits = 0;
    for task in visitors {
        visits += join(&rt, "visitor", task);
    }
    visits += within("blocking visitor", move || blocking.join().unwrap());
    assert!(lockdowns > 0, "no lockdown ever completed");
    assert!(visits > 0, "no visit ever got in");
    assert_eq!(inside.load(SeqCst), 0);
    assert_clean(&rt, &fortress);
}

#[test]
fn a_pending_enter_async_flags_the_gate_for_tasks_only_and_unlock_clears_the_flag() {
    // What `until_pending` relies on: a task's first Pending flags the gate.
    let rt = runtime();
    let fortress = common::fortress();
    assert!(!snapshot(&fortress).has(Waiters::Gate, Kind::Task));
    let pending = Arc::new(AtomicUsize::new(0));
    let task = spawn_counted_enter(&rt, &fortress, &pending);
    until("pending", || pending.load(SeqCst) == 1);
    assert!(snapshot(&fortress).has(Waiters::Gate, Kind::Task));
    assert!(!snapshot(&fortress).has(Waiters::Gate, Kind::Thread));
    fortress.guard().unlock().unwrap();
    assert_eq!(join(&rt, "task", task), Ok(()));
    assert!(!snapshot(&fortress).has(Waiters::Gate, Kind::Task));
}
