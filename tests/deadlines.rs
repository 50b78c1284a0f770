//! Deadlines, children and future-fed tokens: every constructor of `Abort`, waits
//! (threads and tokio tasks) cut short at a deadline, the rules (an abort only cuts a
//! *wait* short; Shutdown beats Aborted) with deadline tokens, and the select pattern
//! for async users.
//!
//! Timing: a wait cut short by a deadline must not return before the deadline, and
//! must return within [`LATE`] of it, half of the [`WAIT`] deadline: a lost wake-up
//! and a timer that sleeps twice too long both fail (see `benches/lateness.rs` for
//! how late it really is). The
//! timed tests wait for the waiter to announce itself in the state word, so the
//! sleeping path is what runs, but also accept that it returned first: on a loaded
//! machine a thread may not run at all before its deadline.
//!
//! The shared timer's bookkeeping (`timer_entries`) is checked in
//! `tests/deadline_leak.rs`, alone in its binary: tests here run in parallel and share
//! the one timer.

mod common;

/// The layout of the fortresses under test (read by `common::fortress`).
/// `tests/sharded.rs` and `tests/read_mostly.rs` run this file again in their layouts.
#[allow(dead_code)]
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::Word;

use common::{
    fired, race, runtime, unlocked, until, until_asleep, until_asleep_or, until_pending,
    until_pending_or, within, Either, Sleepers, HANG,
};
use fortress_gate::{Abort, Error, Fortress, Worker};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long the timed waits here wait: long enough for the waiter to be asleep well
/// before its deadline.
const WAIT: Duration = Duration::from_millis(200);

/// The most a wait may return after its deadline: half the deadline, so a timer that
/// slept twice as long as it should fails. Checked only where time means something:
/// not under Miri, nor where CI sets `FORTRESS_NO_TIMING` (ThreadSanitizer).
const LATE: Duration = Duration::from_millis(WAIT.as_millis() as u64 / 2);

/// Whether lateness is checked in this run (see [`LATE`]).
fn timing_checked() -> bool {
    !cfg!(miri) && std::env::var_os("FORTRESS_NO_TIMING").is_none()
}

/// A deadline nobody in these tests lives to see.
const HOUR: Duration = Duration::from_secs(3600);

/// Checks that a wait cut short at `deadline` returned at `returned`: not before the
/// deadline, and not later than [`LATE`] after it.
fn assert_returned_promptly_after(deadline: Instant, returned: Instant) {
    assert!(
        returned >= deadline,
        "returned {:?} before its deadline",
        deadline - returned
    );
    let late = returned - deadline;
    assert!(
        late < LATE || !timing_checked(),
        "returned {late:?} after its deadline"
    );
}

/// Tokens whose deadline has passed, made every way there is.
fn expired() -> Vec<Abort> {
    let now = Instant::now();
    let passed = Abort::after(Duration::from_millis(1));
    until("a 1 ms deadline to pass", || passed.is_aborted());
    vec![
        Abort::after(Duration::ZERO),
        Abort::at(now),
        Abort::new().with_deadline(now),
        Abort::never().with_deadline(now),
        Abort::after(Duration::ZERO).child(),
        Abort::at(Instant::now() + HOUR).with_deadline(now),
        passed,
    ]
}

/// A fortress, unlocked, with one owned visit inside.
fn occupied() -> (Fortress, fortress_gate::OwnedVisit) {
    let fortress = unlocked();
    let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
    (fortress, visit)
}

/// Runs `fut` on this thread: polls it once, then again only after its waker has been
/// called. Nothing else polls it (unlike `common::block_within`, whose timeout polls
/// once more at its own deadline and so hides a lost wake-up). `None` if it is still
/// pending after [`HANG`]: the wake-up it waited for never came.
fn block_on_wakes<F: Future>(fut: F) -> Option<F::Output> {
    struct Unpark {
        woken: AtomicBool,
        thread: thread::Thread,
    }
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.woken.store(true, SeqCst);
            self.thread.unpark();
        }
    }
    let unpark = Arc::new(Unpark {
        woken: AtomicBool::new(false),
        thread: thread::current(),
    });
    let waker = Waker::from(Arc::clone(&unpark));
    let mut fut = pin!(fut);
    let start = Instant::now();
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(&waker)) {
            return Some(out);
        }
        // A wake during the poll left the flag set: poll again at once.
        while !unpark.woken.swap(false, SeqCst) {
            thread::park_timeout(HANG.checked_sub(start.elapsed())?);
        }
    }
}

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

// ----- The constructors -----

#[test]
fn after_is_not_fired_and_its_deadline_is_that_far_from_now() {
    let before = Instant::now();
    let abort = Abort::after(HOUR);
    let after = Instant::now();
    assert!(!abort.is_aborted());
    let deadline = abort.deadline().expect("after sets a deadline");
    assert!(before + HOUR <= deadline && deadline <= after + HOUR);
}

#[test]
fn after_zero_is_born_fired() {
    let abort = Abort::after(Duration::ZERO);
    assert!(abort.is_aborted());
    assert!(abort.deadline().is_some());
    // A visit to a locked fortress would wait, so it is cut short at once.
    let fortress = common::fortress();
    assert_eq!(fortress.guest().visit(|| (), &abort), Err(Error::Aborted));
}

#[test]
fn at_keeps_the_exact_instant_as_its_deadline() {
    let at = Instant::now() + HOUR;
    let abort = Abort::at(at);
    assert_eq!(abort.deadline(), Some(at));
    assert!(!abort.is_aborted());
    assert_eq!(
        abort.clone().deadline(),
        Some(at),
        "clones share the deadline"
    );
}

#[test]
fn at_an_instant_already_past_is_born_fired() {
    let abort = Abort::at(Instant::now());
    assert!(abort.is_aborted());
}

#[test]
fn a_deadline_token_reads_as_fired_once_its_deadline_passes_even_with_no_wait() {
    let abort = Abort::after(Duration::from_millis(20));
    assert!(!abort.is_aborted());
    until("the deadline to pass", || {
        Instant::now() >= abort.deadline().unwrap()
    });
    assert!(abort.is_aborted());
}

#[test]
fn plain_tokens_have_no_deadline_and_a_child_inherits_its_parents() {
    assert_eq!(Abort::new().deadline(), None);
    assert_eq!(Abort::never().deadline(), None);
    assert_eq!(Abort::new().child().deadline(), None);
    let at = Instant::now() + HOUR;
    let parent = Abort::at(at);
    assert_eq!(parent.child().deadline(), Some(at));
    assert_eq!(
        parent.child().child().deadline(),
        Some(at),
        "and a grandchild"
    );
}

#[test]
fn a_child_fires_when_its_parent_fires_or_when_fired_itself() {
    let parent = Abort::new();
    let (a, b) = (parent.child(), parent.child());
    a.abort();
    assert!(a.is_aborted());
    assert!(!b.is_aborted(), "siblings are independent");
    parent.abort();
    assert!(b.is_aborted());
    assert!(
        parent.child().is_aborted(),
        "a child of a fired token is born fired"
    );
    // A child of a token that never fires is a plain new token.
    let orphan = Abort::never().child();
    assert!(!orphan.is_aborted());
    orphan.abort();
    assert!(orphan.is_aborted());
}

#[test]
fn with_deadline_keeps_the_earliest_deadline_of_the_chain() {
    let now = Instant::now();
    let (near, far) = (now + Duration::from_secs(60), now + HOUR);
    assert_eq!(Abort::at(far).with_deadline(near).deadline(), Some(near));
    assert_eq!(Abort::at(near).with_deadline(far).deadline(), Some(near));
    assert_eq!(Abort::new().with_deadline(far).deadline(), Some(far));
    assert_eq!(Abort::never().with_deadline(far).deadline(), Some(far));
    let deep = Abort::at(far).child().with_deadline(near).child();
    assert_eq!(deep.deadline(), Some(near), "through every generation");
    assert!(!deep.is_aborted());
}

#[test]
fn with_deadline_fires_with_its_parent_and_never_fires_it() {
    let parent = Abort::new();
    let child = parent.with_deadline(Instant::now() + HOUR);
    child.abort();
    assert!(child.is_aborted() && !parent.is_aborted());
    let child = parent.with_deadline(Instant::now() + HOUR);
    parent.abort();
    assert!(child.is_aborted());
    assert!(fired().with_deadline(Instant::now() + HOUR).is_aborted());
}

#[test]
fn from_future_fires_when_its_future_completes() {
    let ready = Abort::from_future(std::future::ready(()));
    until("a ready future fires its token", || ready.is_aborted());

    let cancel = CancellationToken::new();
    let abort = Abort::from_future(cancel.clone().cancelled_owned());
    assert!(!abort.is_aborted());
    assert_eq!(abort.deadline(), None);
    cancel.cancel();
    until(
        "the source thread polls the future and fires the token",
        || abort.is_aborted(),
    );
}

#[test]
fn from_future_can_still_be_fired_by_hand() {
    let abort = Abort::from_future(std::future::pending());
    assert!(!abort.is_aborted());
    abort.abort();
    assert!(abort.is_aborted());
}

#[test]
fn from_future_drops_its_future_with_the_last_clone_of_the_token() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let abort = Abort::from_future(async move {
        let _flag = flag;
        std::future::pending::<()>().await
    });
    let clone = abort.clone();
    drop(abort);
    assert!(!dropped.load(SeqCst), "a clone still holds the token");
    drop(clone);
    // Dropped at once, or by the source thread right after a poll it was in.
    until("the future is dropped with its token", || {
        dropped.load(SeqCst)
    });
}

#[test]
fn from_future_drops_its_future_once_it_completes() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(dropped.clone());
    let cancel = CancellationToken::new();
    let cancelled = cancel.clone().cancelled_owned();
    let abort = Abort::from_future(async move {
        let _flag = flag;
        cancelled.await
    });
    assert!(!dropped.load(SeqCst));
    cancel.cancel();
    until("the token fires", || abort.is_aborted());
    assert!(
        dropped.load(SeqCst),
        "the completed future is dropped before it fires"
    );
}

// ----- Sleeping threads cut short at a deadline -----

#[test]
fn a_visit_sleeping_at_a_locked_gate_returns_aborted_promptly_after_its_deadline() {
    let fortress = common::fortress();
    let abort = Abort::after(WAIT);
    let deadline = abort.deadline().unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let (guest, token, flag) = (fortress.guest(), abort.clone(), ran.clone());
    let visit = thread::spawn(move || {
        let result = guest.visit(|| flag.store(true, SeqCst), &token);
        (result, Instant::now())
    });
    until_asleep_or(&fortress, Sleepers::Gate, || visit.is_finished());
    let (result, returned) = within("visit past its deadline", move || visit.join().unwrap());
    assert_eq!(result, Err(Error::Aborted));
    assert_returned_promptly_after(deadline, returned);
    assert!(!ran.load(SeqCst), "the visit never ran");
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn a_lockdown_sleeping_with_a_visit_inside_returns_aborted_promptly_after_its_deadline() {
    let (fortress, visit) = occupied();
    let abort = Abort::after(WAIT);
    let deadline = abort.deadline().unwrap();
    let (guard, token) = (fortress.guard(), abort.clone());
    let lockdown = thread::spawn(move || (guard.lockdown(&token), Instant::now()));
    until_asleep_or(&fortress, Sleepers::Drain, || lockdown.is_finished());
    let (result, returned) = within("lockdown past its deadline", move || {
        lockdown.join().unwrap()
    });
    assert_eq!(result, Err(Error::Aborted));
    assert_returned_promptly_after(deadline, returned);
    drop(visit);
}

#[test]
fn a_lockdown_aborted_by_its_deadline_still_leaves_the_gate_closed() {
    let (fortress, visit) = occupied();
    let guard = fortress.guard();
    let lockdown = within("lockdown with a deadline", move || {
        guard.lockdown(&Abort::after(Duration::from_millis(50)))
    });
    assert_eq!(lockdown, Err(Error::Aborted));
    assert!(fortress.is_locked(), "an aborted lockdown still locks");
    assert!(visit.lockdown_pending());
    assert_eq!(fortress.guests(), 1, "the visit inside goes on");
    let guest = fortress.guest();
    assert!(guest.try_enter().is_none(), "no new visit gets in");
    assert_eq!(guest.visit(|| (), &fired()), Err(Error::Aborted));
    drop(visit);
    fortress.guard().unlock().unwrap();
    assert_eq!(guest.visit(|| 5, &Abort::never()), Ok(5));
}

#[test]
fn one_deadline_cuts_short_every_wait_that_uses_it() {
    let abort = Abort::after(WAIT);
    let deadline = abort.deadline().unwrap();
    let locked = common::fortress();
    let (busy, visit) = occupied();
    let mut waits = Vec::new();
    for _ in 0..2 {
        let (guest, token) = (locked.guest(), abort.clone());
        waits.push(thread::spawn(move || {
            (guest.visit(|| (), &token), Instant::now())
        }));
    }
    let (guard, token) = (busy.guard(), abort.clone());
    waits.push(thread::spawn(move || {
        (guard.lockdown(&token), Instant::now())
    }));
    until_asleep_or(&locked, Sleepers::Gate, || {
        waits[..2].iter().all(|w| w.is_finished())
    });
    until_asleep_or(&busy, Sleepers::Drain, || waits[2].is_finished());
    within("every wait on the token", move || {
        for wait in waits {
            let (result, returned) = wait.join().unwrap();
            assert_eq!(result, Err(Error::Aborted));
            assert_returned_promptly_after(deadline, returned);
        }
    });
    drop(visit);
}

#[test]
fn abort_wakes_a_wait_long_before_the_tokens_deadline() {
    let fortress = common::fortress();
    let abort = Abort::after(HOUR);
    let (guest, token) = (fortress.guest(), abort.clone());
    let visit = thread::spawn(move || guest.visit(|| (), &token));
    until_asleep(&fortress, Sleepers::Gate);
    abort.abort();
    assert_eq!(
        within("visit aborted by hand", move || visit.join().unwrap()),
        Err(Error::Aborted)
    );
}

#[test]
fn a_wait_ends_normally_before_its_deadline_when_the_gate_opens() {
    let fortress = common::fortress();
    let abort = Abort::after(HOUR);
    let (guest, token) = (fortress.guest(), abort.clone());
    let visit = thread::spawn(move || guest.visit(|| 9, &token));
    until_asleep(&fortress, Sleepers::Gate);
    fortress.guard().unlock().unwrap();
    assert_eq!(within("visit", move || visit.join().unwrap()), Ok(9));
    assert!(!abort.is_aborted());
}

// ----- Children and deadlines along the chain -----

#[test]
fn a_child_sleeping_in_a_wait_wakes_aborted_when_its_parent_is_fired() {
    let fortress = common::fortress();
    let parent = Abort::new();
    let child = parent.child();
    let guest = fortress.guest();
    let visit = thread::spawn(move || guest.visit(|| (), &child));
    until_asleep(&fortress, Sleepers::Gate);
    parent.abort();
    assert_eq!(
        within("child's visit", move || visit.join().unwrap()),
        Err(Error::Aborted)
    );
}

#[test]
fn a_child_sleeping_in_a_wait_wakes_aborted_when_its_parents_deadline_passes() {
    let (fortress, visit) = occupied();
    let parent = Abort::after(WAIT);
    let deadline = parent.deadline().unwrap();
    let child = parent.child();
    let guard = fortress.guard();
    let lockdown = thread::spawn(move || (guard.lockdown(&child), Instant::now()));
    until_asleep_or(&fortress, Sleepers::Drain, || lockdown.is_finished());
    let (result, returned) = within("child's lockdown", move || lockdown.join().unwrap());
    assert_eq!(result, Err(Error::Aborted));
    assert_returned_promptly_after(deadline, returned);
    drop(visit);
}

#[test]
fn a_with_deadline_child_wakes_at_its_own_deadline_before_its_parents() {
    let fortress = common::fortress();
    let parent = Abort::after(HOUR);
    let child = parent.with_deadline(Instant::now() + WAIT);
    let deadline = child.deadline().unwrap();
    let guest = fortress.guest();
    let visit = thread::spawn(move || (guest.visit(|| (), &child), Instant::now()));
    until_asleep_or(&fortress, Sleepers::Gate, || visit.is_finished());
    let (result, returned) = within("child's visit", move || visit.join().unwrap());
    assert_eq!(result, Err(Error::Aborted));
    assert_returned_promptly_after(deadline, returned);
    assert!(
        !parent.is_aborted(),
        "the child's deadline is the child's alone"
    );
}

#[test]
fn firing_a_child_never_fires_its_parent() {
    let fortress = common::fortress();
    let parent = Abort::after(HOUR);
    let (guest, token) = (fortress.guest(), parent.clone());
    let visit = thread::spawn(move || guest.visit(|| 3, &token));
    until_asleep(&fortress, Sleepers::Gate);

    // One child fired by hand, one by its own deadline.
    let child = parent.child();
    child.abort();
    let timed = parent.with_deadline(Instant::now() + Duration::from_millis(20));
    let guest = fortress.guest();
    assert_eq!(
        within("timed child's visit", move || guest.visit(|| (), &timed)),
        Err(Error::Aborted)
    );
    assert!(child.is_aborted());
    assert!(!parent.is_aborted());
    assert!(!parent.child().is_aborted(), "a new sibling is not fired");

    thread::sleep(Duration::from_millis(20));
    assert!(
        !visit.is_finished(),
        "the parent's wait was woken by a child"
    );
    fortress.guard().unlock().unwrap();
    assert_eq!(
        within("parent's visit", move || visit.join().unwrap()),
        Ok(3)
    );
}

// ----- Rule 1 and precedence, with deadline tokens -----

#[test]
fn a_visit_to_an_open_fortress_succeeds_past_its_deadline() {
    let fortress = unlocked();
    let guest = fortress.guest();
    for abort in expired() {
        assert!(abort.is_aborted());
        assert_eq!(guest.visit(|| 1, &abort), Ok(1), "{abort:?}");
        drop(guest.enter(&abort).expect("enter need not wait"));
        drop(
            guest
                .enter_owned(&abort)
                .expect("enter_owned need not wait"),
        );
    }
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn a_lockdown_of_an_empty_fortress_succeeds_past_its_deadline() {
    let fortress = unlocked();
    let guard = fortress.guard();
    for abort in expired() {
        assert_eq!(guard.lockdown(&abort), Ok(()), "{abort:?}");
        assert!(fortress.is_locked());
        guard.unlock().unwrap();
    }
}

#[test]
fn async_calls_that_need_not_wait_succeed_past_their_deadline() {
    let fortress = unlocked();
    let (guard, guest) = (fortress.guard(), fortress.guest());
    let rt = runtime();
    for abort in expired() {
        rt.block_on(async {
            drop(guest.enter_async(&abort).await.expect("open: no wait"));
            assert_eq!(guest.visit_async(async { 2 }, &abort).await, Ok(2));
            assert_eq!(guard.lockdown_async(&abort).await, Ok(()));
            guard.unlock().unwrap();
        });
    }
}

#[test]
fn a_killed_fortress_answers_shutdown_even_with_an_expired_deadline() {
    let rt = runtime();
    for open in [true, false] {
        let fortress = if open { unlocked() } else { common::fortress() };
        fortress.kill();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        for abort in expired() {
            assert_eq!(guest.visit(|| (), &abort), Err(Error::Shutdown));
            assert_eq!(guest.enter(&abort).map(drop), Err(Error::Shutdown));
            assert_eq!(guard.lockdown(&abort), Err(Error::Shutdown));
            rt.block_on(async {
                assert_eq!(
                    guest.enter_async(&abort).await.map(drop),
                    Err(Error::Shutdown)
                );
                assert_eq!(guard.lockdown_async(&abort).await, Err(Error::Shutdown));
            });
        }
    }
}

#[test]
fn a_killed_fortress_with_a_visit_inside_answers_shutdown_to_a_lockdown_past_its_deadline() {
    let (fortress, visit) = occupied();
    fortress.kill();
    for abort in expired() {
        assert_eq!(fortress.guard().lockdown(&abort), Err(Error::Shutdown));
    }
    drop(visit);
    within("wait", move || fortress.wait().unwrap());
}

// ----- Pending async tasks cut short at a deadline -----

#[test]
fn a_pending_enter_async_returns_aborted_promptly_after_its_deadline() {
    let rt = runtime();
    let fortress = common::fortress();
    let abort = Abort::after(WAIT);
    let deadline = abort.deadline().unwrap();
    let (guest, token) = (fortress.guest(), abort.clone());
    let task = rt.spawn(async move {
        let result = guest.enter_async(&token).await.map(drop);
        (result, Instant::now())
    });
    until_pending_or(&fortress, Sleepers::Gate, || task.is_finished());
    let (result, returned) = within("pending enter", move || rt.block_on(task).unwrap());
    assert_eq!(result, Err(Error::Aborted));
    assert_returned_promptly_after(deadline, returned);
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn a_pending_lockdown_async_returns_aborted_promptly_after_its_deadline() {
    let rt = runtime();
    let (fortress, visit) = occupied();
    let abort = Abort::after(WAIT);
    let deadline = abort.deadline().unwrap();
    let (guard, token) = (fortress.guard(), abort.clone());
    let task = rt.spawn(async move { (guard.lockdown_async(&token).await, Instant::now()) });
    until_pending_or(&fortress, Sleepers::Drain, || task.is_finished());
    let (result, returned) = within("pending lockdown", move || rt.block_on(task).unwrap());
    assert_eq!(result, Err(Error::Aborted));
    assert_returned_promptly_after(deadline, returned);
    assert!(fortress.is_locked(), "the gate stays closed");
    assert_eq!(fortress.guests(), 1);
    drop(visit);
}

#[test]
fn aborted_awaited_alone_wakes_its_task_at_the_deadline() {
    // Nothing else waits on the token, so only `aborted()` itself can put the deadline
    // in the timer; the executor polls only when woken, so nothing else looks at the
    // clock for it.
    let abort = Abort::after(WAIT);
    let deadline = abort.deadline().unwrap();
    let completed = block_on_wakes(abort.aborted()).map(|()| Instant::now());
    let returned = completed
        .unwrap_or_else(|| panic!("aborted() was never woken: still pending after {HANG:?}"));
    assert_returned_promptly_after(deadline, returned);
    assert!(abort.is_aborted());
}

// ----- Tokens fed by a future: `CancellationToken` -----

#[test]
fn cancelling_a_cancellation_token_from_another_thread_wakes_a_sleeping_visit() {
    let fortress = common::fortress();
    let cancel = CancellationToken::new();
    let abort = Abort::from_future(cancel.clone().cancelled_owned());
    let guest = fortress.guest();
    let visit = thread::spawn(move || guest.visit(|| (), &abort));
    until_asleep(&fortress, Sleepers::Gate);
    thread::spawn(move || cancel.cancel()).join().unwrap();
    assert_eq!(
        within("visit after cancel", move || visit.join().unwrap()),
        Err(Error::Aborted)
    );
}

#[test]
fn cancelling_a_cancellation_token_wakes_a_pending_enter_async() {
    let rt = runtime();
    let fortress = common::fortress();
    let cancel = CancellationToken::new();
    let abort = Abort::from_future(cancel.clone().cancelled_owned());
    let guest = fortress.guest();
    let task = rt.spawn(async move { guest.enter_async(&abort).await.map(drop) });
    until_pending(&fortress, Sleepers::Gate);
    thread::spawn(move || cancel.cancel()).join().unwrap();
    assert_eq!(
        within("enter after cancel", move || rt.block_on(task).unwrap()),
        Err(Error::Aborted)
    );
}

/// The select pattern for async users who already hold a `CancellationToken`: race
/// the fortress's future against `token.cancelled()` and drop the loser. Dropping a
/// pending `enter_async` leaves nothing behind. (The alternative is to pass
/// `Abort::from_future(token.cancelled_owned())` as the abort token.)
#[test]
fn a_pending_enter_async_raced_against_a_cancellation_token_gives_way_to_cancel() {
    let rt = runtime();
    let fortress = common::fortress();
    let cancel = CancellationToken::new();
    let (guest, token) = (fortress.guest(), cancel.clone());
    let task = rt.spawn(async move {
        match race(guest.enter_async(&Abort::never()), token.cancelled()).await {
            Either::Left(visit) => Either::Left(visit.map(drop)),
            Either::Right(()) => Either::Right("cancelled"),
        }
    });
    until_pending(&fortress, Sleepers::Gate);
    thread::spawn(move || cancel.cancel()).join().unwrap();
    assert_eq!(
        within("raced enter", move || rt.block_on(task).unwrap()),
        Either::Right("cancelled")
    );
    assert_eq!(
        fortress.guests(),
        0,
        "the dropped enter left no guest behind"
    );

    // The dropped wait left nothing that keeps the gate from working.
    fortress.guard().unlock().unwrap();
    let rt = runtime();
    let (guest, cancelled) = (fortress.guest(), CancellationToken::new());
    cancelled.cancel();
    let entered = rt.block_on(async {
        // The gate is open: the visit wins even though the token is cancelled.
        match race(guest.enter_async(&Abort::never()), cancelled.cancelled()).await {
            Either::Left(visit) => visit.map(|visit| visit.lockdown_pending()),
            Either::Right(()) => panic!("cancel won over an open gate"),
        }
    });
    assert_eq!(entered, Ok(false));
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn a_pending_enter_async_raced_against_a_cancellation_token_enters_when_the_gate_opens() {
    let rt = runtime();
    let fortress = common::fortress();
    let cancel = CancellationToken::new();
    let (guest, token) = (fortress.guest(), cancel.clone());
    let task = rt.spawn(async move {
        match race(
            guest.visit_async(async { 8 }, &Abort::never()),
            token.cancelled(),
        )
        .await
        {
            Either::Left(result) => Either::Left(result),
            Either::Right(()) => Either::Right("cancelled"),
        }
    });
    until_pending(&fortress, Sleepers::Gate);
    fortress.guard().unlock().unwrap();
    assert_eq!(
        within("raced visit", move || rt.block_on(task).unwrap()),
        Either::Left(Ok(8))
    );
    assert!(!cancel.is_cancelled());
}
