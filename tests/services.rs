//! The services around the gate:
//!
//! * scoped lockdowns (`Guard::exclusive`, `exclusive_owned`, `exclusive_async`,
//!   `exclusive_owned_async`) back out when they give up: a call that is aborted, or a
//!   future dropped between its first poll and its completion, reopens the gate its own
//!   close shut, unless another guard operation came since; plain lockdowns still
//!   leave the gate closed;
//! * an `OwnedExclusive` is `Send + 'static` and unlocks before it lets its guard go;
//! * a fortress that nobody can open any more (its last `Fortress` and `Guard` are
//!   gone while it is locked) is killed, so nobody waits for it forever;
//! * `Fortress::wait_with`, `Abort::aborted` and `Abort::NEVER`;
//! * the cooperative budget of async entries, and the reuse of task slots and token
//!   registrations.
//!
//! Every wait is bounded (`within`, `block_within`, `join`, a timeout), so a lost
//! wake-up or a missing kill fails the test instead of hanging it.

mod common;

/// The layout of the fortresses under test (read by `common::fortress`).
/// `tests/sharded.rs` and `tests/read_mostly.rs` run this file again in their layouts.
#[allow(dead_code)]
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::Word;

use common::{
    announce_pending, block_within, fired, join, poll_noop, poll_with, race, recv_within, runtime,
    unlocked, until, until_asleep, until_pending, within, CountingWaker, Either, Sleepers, HANG,
};
use fortress_gate::internals::{links, snapshot, task_slots, State, Waiters, SHUTS};
use fortress_gate::{Abort, Error, Fortress, Guard, Guest, OwnedExclusive, OwnedVisit, Worker};
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::task::{Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Long enough for a wait that should go on to have ended if it were wrongly woken; a
/// wrong pass only makes a test weaker, never flaky.
const SETTLE: Duration = Duration::from_millis(20);

// ----- Helpers -----

/// The four scoped lockdowns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Exclusive,
    ExclusiveOwned,
    ExclusiveAsync,
    ExclusiveOwnedAsync,
}

const FORMS: [Form; 4] = [
    Form::Exclusive,
    Form::ExclusiveOwned,
    Form::ExclusiveAsync,
    Form::ExclusiveOwnedAsync,
];

const ASYNC_FORMS: [Form; 2] = [Form::ExclusiveAsync, Form::ExclusiveOwnedAsync];

/// What a scoped lockdown returned (an `Exclusive` or an `OwnedExclusive`), held only
/// for its drop.
type Held<'a> = Box<dyn Send + 'a>;

/// A scoped lockdown's future, as the crate returns it (nothing wraps it, so it is
/// created at once and dropping it unpolled drops the crate's future unpolled).
type Scoped<'a> = Pin<Box<dyn Future<Output = Result<Held<'a>, Error>> + Send + 'a>>;

/// The future of an async form.
fn scoped_future<'a>(form: Form, guard: &'a Guard, abort: &'a Abort) -> Scoped<'a> {
    match form {
        Form::ExclusiveAsync => {
            let mut fut = Box::pin(guard.exclusive_async(abort));
            Box::pin(poll_fn(move |cx| {
                fut.as_mut()
                    .poll(cx)
                    .map(|r| r.map(|held| Box::new(held) as Held<'a>))
            }))
        }
        Form::ExclusiveOwnedAsync => {
            let mut fut = Box::pin(guard.exclusive_owned_async(abort));
            Box::pin(poll_fn(move |cx| {
                fut.as_mut()
                    .poll(cx)
                    .map(|r| r.map(|held| Box::new(held) as Held<'a>))
            }))
        }
        blocking => panic!("{blocking:?} has no future"),
    }
}

/// Runs the scoped lockdown `form` to its end on this thread: the async forms under
/// [`block_on`].
fn scoped<'a>(form: Form, guard: &'a Guard, abort: &'a Abort) -> Result<Held<'a>, Error> {
    match form {
        Form::Exclusive => guard
            .exclusive(abort)
            .map(|held| Box::new(held) as Held<'a>),
        Form::ExclusiveOwned => guard
            .exclusive_owned(abort)
            .map(|held| Box::new(held) as Held<'a>),
        _ => block_on(scoped_future(form, guard, abort)),
    }
}

/// The owned forms, run to their end on this thread.
fn owned(form: Form, guard: &Guard, abort: &Abort) -> Result<OwnedExclusive, Error> {
    match form {
        Form::ExclusiveOwned => guard.exclusive_owned(abort),
        Form::ExclusiveOwnedAsync => block_on(guard.exclusive_owned_async(abort)),
        other => panic!("{other:?} is not an owned form"),
    }
}

/// A thread running a scoped lockdown.
type Locker = thread::JoinHandle<Result<(), Error>>;

/// A thread that runs the scoped lockdown `form` and drops what it returned.
fn spawn_scoped(form: Form, guard: &Guard, abort: &Abort) -> Locker {
    let (guard, abort) = (guard.clone(), abort.clone());
    thread::spawn(move || scoped(form, &guard, &abort).map(drop))
}

/// A thread that runs the scoped lockdown `form` with no abort, and on success sends
/// what its exclusive phase sees (locked, guests) before it drops the exclusive.
fn spawn_observed_scoped(form: Form, fortress: &Fortress) -> (Locker, mpsc::Receiver<(bool, u64)>) {
    let (tx, rx) = mpsc::channel();
    let (guard, observer) = (fortress.guard(), fortress.clone());
    let handle = thread::spawn(move || {
        let never = Abort::never();
        let held = scoped(form, &guard, &never)?;
        tx.send((observer.is_locked(), observer.guests())).unwrap();
        drop(held);
        Ok(())
    });
    (handle, rx)
}

/// Polls a future to its end on this thread, parking between polls.
fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = poll_with(fut.as_mut(), &waker) {
            return out;
        }
        thread::park();
    }
}

/// Joins a thread within [`HANG`]; a panic in it propagates.
fn join_thread<T: Send + 'static>(what: &str, handle: thread::JoinHandle<T>) -> T {
    within(what, move || match handle.join() {
        Ok(out) => out,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// A fortress, unlocked, with one owned visit inside.
fn occupied() -> (Fortress, OwnedVisit) {
    let fortress = unlocked();
    let visit = fortress.guest().enter_owned(&Abort::never()).unwrap();
    (fortress, visit)
}

/// Polls until a scoped lockdown has shut the gate with its own scope and waits (or
/// is pending) for the drain.
fn until_scoped_wait(fortress: &Fortress) {
    until("a scoped lockdown waiting for the drain", || {
        let s = snapshot(fortress);
        s.scope() != 0 && s.has_waiters(Waiters::Drain)
    });
}

/// Polls until some lockdown (thread or task) waits for the drain.
fn until_drain_wait(fortress: &Fortress) {
    until("a lockdown waiting for the drain", || {
        snapshot(fortress).has_waiters(Waiters::Drain)
    });
}

/// The gate is open: not locked, no scope left, and a new visit goes in at once (a
/// fired token: it must not wait).
fn assert_open(fortress: &Fortress, guest: &Guest, what: &str) {
    assert!(!fortress.is_locked(), "{what}: the gate is closed");
    assert_eq!(snapshot(fortress).scope(), 0, "{what}: a scope is left");
    assert_eq!(
        guest.visit(|| 7, &fired()),
        Ok(7),
        "{what}: a new visit does not go in"
    );
}

/// The gate is closed: locked, and no visit goes in.
fn assert_closed(fortress: &Fortress, guest: &Guest, what: &str) {
    assert!(fortress.is_locked(), "{what}: the gate is open");
    assert!(guest.try_enter().is_none(), "{what}: a visit went in");
    assert_eq!(
        guest.visit(|| (), &fired()),
        Err(Error::Aborted),
        "{what}: a visit did not have to wait"
    );
}

/// The state word without its history (how many scoped closes shut the open gate),
/// to compare with the states of a fresh fortress.
fn word(fortress: &Fortress) -> State {
    State(snapshot(fortress).0 & !SHUTS)
}

/// Polls a new entry future until it is pending and registered. Its first poll may
/// spend the thread's cooperative budget instead (it wakes its task and returns
/// `Pending` with nothing registered); the next one then waits for real.
fn pend<F: Future + ?Sized>(mut fut: Pin<&mut F>) {
    for _ in 0..2 {
        assert!(
            poll_noop(fut.as_mut()).is_pending(),
            "an entry did not wait"
        );
    }
}

/// Calls `seen` after every poll of `fut` that returned `Pending`.
async fn on_pending<F: Future>(fut: F, mut seen: impl FnMut()) -> F::Output {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        let poll = fut.as_mut().poll(cx);
        if poll.is_pending() {
            seen();
        }
        poll
    })
    .await
}

/// `Fortress::wait_with`, on its own thread within [`HANG`].
fn wait_with_within(fortress: &Fortress, abort: &Abort) -> Result<(), Error> {
    let (fortress, abort) = (fortress.clone(), abort.clone());
    within("wait_with", move || fortress.wait_with(&abort))
}

/// A thread that visits, waiting with no deadline (its join is bounded).
fn spawn_visitor(guest: &Guest) -> thread::JoinHandle<Result<u8, Error>> {
    let guest = guest.clone();
    thread::spawn(move || guest.visit(|| 9, &Abort::never()))
}

// ----- Scoped lockdowns back out when they give up -----

#[test]
fn a_scoped_lockdown_whose_token_fires_while_it_waits_reopens_the_gate_it_shut() {
    for form in FORMS {
        let what = format!("{form:?}");
        let (fortress, inside) = occupied();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let abort = Abort::new();
        let locker = spawn_scoped(form, &guard, &abort);
        until_scoped_wait(&fortress);
        assert_closed(&fortress, &guest, &what);
        assert!(inside.lockdown_pending(), "{what}");
        thread::spawn(move || abort.abort()).join().unwrap();
        assert_eq!(join_thread(&what, locker), Err(Error::Aborted), "{what}");
        assert_open(&fortress, &guest, &what);
        assert!(!inside.lockdown_pending(), "{what}");
        assert_eq!(fortress.guests(), 1, "{what}: the visit inside goes on");
        drop(inside);
        // A thread that gave up leaves no flag, and nothing else is left.
        assert_eq!(word(&fortress), State::OPEN, "{what}");
    }
}

#[test]
fn a_scoped_lockdown_with_a_fired_token_and_a_visit_inside_reopens_the_gate_it_shut() {
    for form in FORMS {
        let what = format!("{form:?}");
        let (fortress, inside) = occupied();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        assert_eq!(
            scoped(form, &guard, &fired()).map(drop),
            Err(Error::Aborted),
            "{what}: it had to wait, and the token had fired"
        );
        assert_open(&fortress, &guest, &what);
        assert!(!inside.lockdown_pending(), "{what}");
        drop(inside);
        assert_eq!(word(&fortress), State::OPEN, "{what}");
    }
}

#[test]
fn a_scoped_lockdown_that_need_not_wait_succeeds_with_a_fired_token_and_unlocks_when_dropped() {
    for form in FORMS {
        let what = format!("{form:?}");
        let fortress = unlocked();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let abort = fired();
        let held = scoped(form, &guard, &abort).expect("nobody inside: no wait");
        assert_closed(&fortress, &guest, &what);
        drop(held);
        assert_open(&fortress, &guest, &what);
    }
}

#[test]
fn a_scoped_lockdown_that_waited_for_the_drain_holds_the_gate_until_dropped() {
    for form in FORMS {
        let what = format!("{form:?}");
        let (fortress, inside) = occupied();
        let guest = fortress.guest();
        let (locker, seen) = spawn_observed_scoped(form, &fortress);
        until_scoped_wait(&fortress);
        thread::sleep(SETTLE);
        assert!(
            seen.try_recv().is_err(),
            "{what}: returned with a visit inside"
        );
        drop(inside);
        assert_eq!(recv_within(&seen, &what), (true, 0), "{what}");
        assert_eq!(join_thread(&what, locker), Ok(()), "{what}");
        assert_open(&fortress, &guest, &what);
    }
}

#[test]
fn a_scoped_lockdown_that_gives_up_on_a_gate_that_was_closed_already_leaves_it_closed() {
    for form in FORMS {
        let what = format!("{form:?}");
        let (fortress, inside) = occupied();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        assert_eq!(guard.lockdown(&fired()), Err(Error::Aborted));
        // A fired token: gives up at once.
        assert_eq!(
            scoped(form, &guard, &fired()).map(drop),
            Err(Error::Aborted),
            "{what}"
        );
        assert_closed(&fortress, &guest, &format!("{what}, fired token"));
        // A token that fires while it waits.
        let abort = Abort::new();
        let locker = spawn_scoped(form, &guard, &abort);
        until_drain_wait(&fortress);
        abort.abort();
        assert_eq!(join_thread(&what, locker), Err(Error::Aborted), "{what}");
        assert_closed(&fortress, &guest, &format!("{what}, token fired later"));
        // A future dropped while it waits.
        if ASYNC_FORMS.contains(&form) {
            let never = Abort::never();
            let mut pending = scoped_future(form, &guard, &never);
            assert!(poll_noop(pending.as_mut()).is_pending(), "{what}");
            drop(pending);
            assert_closed(&fortress, &guest, &format!("{what}, dropped"));
        }
        drop(inside);
        assert_closed(&fortress, &guest, &format!("{what}, drained"));
        guard.unlock().unwrap();
        assert_open(&fortress, &guest, &what);
    }
}

#[test]
fn a_scoped_lockdown_giving_up_after_another_guards_lockdown_leaves_the_gate_to_it() {
    for form in FORMS {
        let what = format!("{form:?}");
        let (fortress, inside) = occupied();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let abort = Abort::new();
        let ours = spawn_scoped(form, &guard, &abort);
        until_scoped_wait(&fortress);
        // Another guard locks down after our close: the scope is gone.
        let other = fortress.guard();
        let theirs = thread::spawn(move || other.lockdown(&Abort::never()));
        until("the other lockdown's close", || {
            snapshot(&fortress).scope() == 0
        });
        abort.abort();
        assert_eq!(join_thread(&what, ours), Err(Error::Aborted), "{what}");
        assert_closed(&fortress, &guest, &what);
        thread::sleep(SETTLE);
        assert!(!theirs.is_finished(), "{what}: the other lockdown returned");
        drop(inside);
        assert_eq!(
            join_thread("the other lockdown", theirs),
            Ok(()),
            "{what}: it completes normally when the visit leaves"
        );
        assert_eq!(word(&fortress), State::CLOSED, "{what}");
    }
}

#[test]
fn an_async_scoped_lockdown_dropped_after_another_guards_lockdown_leaves_the_gate_to_it() {
    let rt = runtime();
    for form in ASYNC_FORMS {
        let what = format!("{form:?}");
        let (fortress, inside) = occupied();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let never = Abort::never();
        let mut ours = scoped_future(form, &guard, &never);
        assert!(poll_noop(ours.as_mut()).is_pending(), "{what}");
        assert_ne!(snapshot(&fortress).scope(), 0, "{what}: it shut the gate");
        let other = fortress.guard();
        let theirs = rt.spawn(async move { other.lockdown_async(&Abort::never()).await });
        until("the other lockdown's close", || {
            snapshot(&fortress).scope() == 0
        });
        drop(ours);
        assert_closed(&fortress, &guest, &what);
        thread::sleep(SETTLE);
        assert!(!theirs.is_finished(), "{what}: the other lockdown returned");
        drop(inside);
        assert_eq!(join(&rt, "the other lockdown", theirs), Ok(()), "{what}");
        assert_eq!(word(&fortress), State::CLOSED, "{what}");
    }
}

#[test]
fn a_scoped_lockdown_that_gives_up_after_an_unlock_and_a_third_lockdown_does_not_reopen_the_gate() {
    for form in FORMS {
        let what = format!("{form:?}");
        let (fortress, inside) = occupied();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let abort = Abort::new();
        let ours = spawn_scoped(form, &guard, &abort);
        until_scoped_wait(&fortress);
        fortress.guard().unlock().unwrap();
        assert_open(
            &fortress,
            &guest,
            &format!("{what}, unlocked by another guard"),
        );
        thread::sleep(SETTLE);
        assert!(!ours.is_finished(), "{what}: an unlock ended the wait");
        assert_eq!(fortress.guard().lockdown(&fired()), Err(Error::Aborted));
        abort.abort();
        assert_eq!(join_thread(&what, ours), Err(Error::Aborted), "{what}");
        assert_closed(&fortress, &guest, &what);
        drop(inside);
        assert_closed(&fortress, &guest, &format!("{what}, drained"));
        guard.unlock().unwrap();
    }
}

#[test]
fn an_async_scoped_lockdown_dropped_after_an_unlock_and_a_third_lockdown_leaves_it_closed() {
    for form in ASYNC_FORMS {
        let what = format!("{form:?}");
        let (fortress, inside) = occupied();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let never = Abort::never();
        let mut ours = scoped_future(form, &guard, &never);
        assert!(poll_noop(ours.as_mut()).is_pending(), "{what}");
        fortress.guard().unlock().unwrap();
        assert!(poll_noop(ours.as_mut()).is_pending(), "{what}: still waits");
        assert_eq!(fortress.guard().lockdown(&fired()), Err(Error::Aborted));
        drop(ours);
        assert_closed(&fortress, &guest, &what);
        drop(inside);
        assert_closed(&fortress, &guest, &format!("{what}, drained"));
    }
}

#[test]
fn a_scoped_lockdown_that_gives_up_does_not_reopen_under_a_later_scoped_lockdown_that_waits() {
    for form in FORMS {
        let what = format!("{form:?}");
        let (fortress, inside) = occupied();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let abort = Abort::new();
        let ours = spawn_scoped(form, &guard, &abort);
        until_scoped_wait(&fortress);
        let our_scope = snapshot(&fortress).scope();
        fortress.guard().unlock().unwrap();
        // A third guard's exclusive shuts the gate again, with a scope of its own.
        let (theirs, seen) = spawn_observed_scoped(Form::Exclusive, &fortress);
        until("the third exclusive's close", || {
            let s = snapshot(&fortress);
            s.scope() != 0 && s.scope() != our_scope
        });
        let their_scope = snapshot(&fortress).scope();
        abort.abort();
        assert_eq!(join_thread(&what, ours), Err(Error::Aborted), "{what}");
        assert_closed(&fortress, &guest, &what);
        assert_eq!(snapshot(&fortress).scope(), their_scope, "{what}");
        thread::sleep(SETTLE);
        assert!(seen.try_recv().is_err(), "{what}: the third one returned");
        drop(inside);
        assert_eq!(
            recv_within(&seen, "the third exclusive"),
            (true, 0),
            "{what}"
        );
        assert_eq!(join_thread("the third exclusive", theirs), Ok(()));
        assert_open(&fortress, &guest, &what);
    }
}

/// The second scoped lockdown closed a gate that was closed already (so it has no
/// gate of its own to reopen), and its close is a guard operation after the first's
/// (so the first leaves the state to it): both give up, the gate stays closed.
#[test]
fn two_scoped_lockdowns_that_both_give_up_leave_the_gate_closed() {
    for form in FORMS {
        let what = format!("{form:?}");
        let (fortress, inside) = occupied();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let (first_abort, second_abort) = (Abort::new(), Abort::new());
        let first = spawn_scoped(form, &guard, &first_abort);
        until_scoped_wait(&fortress);
        let second = spawn_scoped(form, &fortress.guard(), &second_abort);
        until("the second close", || snapshot(&fortress).scope() == 0);
        first_abort.abort();
        assert_eq!(join_thread("first", first), Err(Error::Aborted), "{what}");
        second_abort.abort();
        assert_eq!(join_thread("second", second), Err(Error::Aborted), "{what}");
        assert_closed(&fortress, &guest, &what);
        drop(inside);
        guard.unlock().unwrap();
    }
}

#[test]
fn a_scoped_lockdown_that_a_kill_interrupts_leaves_the_fortress_shut_down_and_locked() {
    for form in FORMS {
        let what = format!("{form:?}");
        let (fortress, inside) = occupied();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let abort = Abort::new();
        let locker = spawn_scoped(form, &guard, &abort);
        until_scoped_wait(&fortress);
        fortress.kill();
        assert_eq!(join_thread(&what, locker), Err(Error::Shutdown), "{what}");
        abort.abort();
        let s = snapshot(&fortress);
        assert!(s.locked() && s.shut_down(), "{what}: {s:?}");
        assert_eq!(guest.visit(|| (), &fired()), Err(Error::Shutdown));
        drop(inside);
        assert_eq!(wait_with_within(&fortress, &Abort::never()), Ok(()));
        assert!(fortress.is_locked(), "{what}");
    }
}

#[test]
fn an_async_scoped_lockdown_dropped_after_a_kill_leaves_the_fortress_shut_down_and_locked() {
    for form in ASYNC_FORMS {
        for poll_again in [false, true] {
            let what = format!("{form:?}, polled after the kill: {poll_again}");
            let (fortress, inside) = occupied();
            let (guard, guest) = (fortress.guard(), fortress.guest());
            let abort = Abort::new();
            let mut pending = scoped_future(form, &guard, &abort);
            assert!(poll_noop(pending.as_mut()).is_pending(), "{what}");
            fortress.kill();
            abort.abort();
            if poll_again {
                match poll_noop(pending.as_mut()) {
                    Poll::Ready(Err(Error::Shutdown)) => {}
                    other => panic!("{what}: {:?}", other.map(|r| r.map(drop))),
                }
            }
            drop(pending);
            let s = snapshot(&fortress);
            assert!(s.locked() && s.shut_down(), "{what}: {s:?}");
            assert_eq!(guest.visit(|| (), &fired()), Err(Error::Shutdown));
            drop(inside);
            assert!(fortress.is_locked(), "{what}");
        }
    }
}

#[test]
fn an_exclusive_async_cut_short_by_a_tokio_timeout_reopens_the_gate_and_new_visits_go_in() {
    let rt = runtime();
    for form in ASYNC_FORMS {
        let what = format!("{form:?}");
        let (fortress, inside) = occupied();
        let (guard, guest, observer) = (fortress.guard(), fortress.guest(), fortress.clone());
        let task = rt.spawn(async move {
            let never = Abort::never();
            let mut locked_while_pending = false;
            let waited = tokio::time::timeout(
                Duration::from_millis(50),
                on_pending(scoped_future(form, &guard, &never), || {
                    locked_while_pending = observer.is_locked()
                }),
            )
            .await;
            (waited.map(|r| r.map(drop)).is_err(), locked_while_pending)
        });
        let (timed_out, locked_while_pending) = join(&rt, &what, task);
        assert!(timed_out, "{what}: a visit was inside, it had to wait");
        assert!(
            locked_while_pending,
            "{what}: it closed the gate while it waited"
        );
        assert_open(&fortress, &guest, &what);
        // Tasks go in too.
        assert_eq!(
            block_within(&rt, "visit", guest.visit_async(async { 3 }, &fired())),
            Ok(3),
            "{what}"
        );
        assert_eq!(fortress.guests(), 1, "{what}: the visit inside goes on");
        drop(inside);
        assert_eq!(word(&fortress), State::OPEN, "{what}");
    }
}

#[test]
fn an_exclusive_async_that_loses_a_select_style_race_reopens_the_gate() {
    let rt = runtime();
    for form in ASYNC_FORMS {
        let what = format!("{form:?}");
        let (fortress, inside) = occupied();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(async move {
            let never = Abort::never();
            let raced = match race(scoped_future(form, &guard, &never), rx).await {
                Either::Left(won) => Either::Left(won.map(drop)),
                Either::Right(_) => Either::Right("the other branch"),
            };
            raced
        });
        until_scoped_wait(&fortress);
        assert_closed(&fortress, &guest, &what);
        tx.send(()).unwrap();
        assert_eq!(join(&rt, &what, task), Either::Right("the other branch"));
        assert_open(&fortress, &guest, &what);
        drop(inside);
        assert_eq!(word(&fortress), State::OPEN, "{what}");
    }
}

#[test]
fn an_exclusive_async_in_a_tokio_task_whose_token_fires_from_another_thread_reopens_the_gate() {
    let rt = runtime();
    for form in ASYNC_FORMS {
        let what = format!("{form:?}");
        let (fortress, inside) = occupied();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let abort = Abort::new();
        let token = abort.clone();
        let task = rt.spawn(async move { scoped_future(form, &guard, &token).await.map(drop) });
        until_scoped_wait(&fortress);
        thread::spawn(move || abort.abort()).join().unwrap();
        assert_eq!(join(&rt, &what, task), Err(Error::Aborted), "{what}");
        assert_open(&fortress, &guest, &what);
        drop(inside);
    }
}

#[test]
fn an_exclusive_async_dropped_before_its_first_poll_changes_nothing() {
    for form in ASYNC_FORMS {
        let what = format!("{form:?}");
        let never = Abort::never();
        // On an open gate with a visit inside: it does not close it.
        let (fortress, inside) = occupied();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let before = snapshot(&fortress);
        drop(scoped_future(form, &guard, &never));
        assert_eq!(snapshot(&fortress), before, "{what}");
        assert_open(&fortress, &guest, &what);
        // While another scoped lockdown waits: it is no guard operation, so the
        // other's back-out still reopens the gate.
        let mut waiting = scoped_future(form, &guard, &never);
        assert!(poll_noop(waiting.as_mut()).is_pending(), "{what}");
        let before = snapshot(&fortress);
        assert_ne!(before.scope(), 0, "{what}");
        drop(scoped_future(form, &guard, &never));
        assert_eq!(snapshot(&fortress), before, "{what}");
        drop(waiting);
        assert_open(
            &fortress,
            &guest,
            &format!("{what}, after the other's back-out"),
        );
        // On a closed gate: it does not open it.
        assert_eq!(guard.lockdown(&fired()), Err(Error::Aborted));
        let before = snapshot(&fortress);
        drop(scoped_future(form, &guard, &never));
        assert_eq!(snapshot(&fortress), before, "{what}");
        drop(inside);
        assert_eq!(word(&fortress), State::CLOSED, "{what}");
    }
}

#[test]
fn an_exclusive_async_dropped_after_the_drain_but_before_its_next_poll_still_backs_out() {
    for form in ASYNC_FORMS {
        let what = format!("{form:?}");
        let (fortress, inside) = occupied();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let never = Abort::never();
        let (waker, wakes) = CountingWaker::new();
        let mut pending = scoped_future(form, &guard, &never);
        assert!(poll_with(pending.as_mut(), &waker).is_pending(), "{what}");
        drop(inside);
        assert_eq!(wakes.wakes(), 1, "{what}: the drain wakes it");
        assert!(fortress.is_locked(), "{what}");
        drop(pending); // it never completed
        assert_open(&fortress, &guest, &what);
        assert_eq!(word(&fortress), State::OPEN, "{what}");
    }
}

#[test]
fn a_completed_exclusive_async_holds_the_gate_until_its_exclusive_is_dropped() {
    for form in ASYNC_FORMS {
        let what = format!("{form:?}");
        let (fortress, inside) = occupied();
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let abort = Abort::new();
        let mut pending = scoped_future(form, &guard, &abort);
        assert!(poll_noop(pending.as_mut()).is_pending(), "{what}");
        drop(inside);
        let held = match poll_noop(pending.as_mut()) {
            Poll::Ready(Ok(held)) => held,
            other => panic!("{what}: {:?}", other.map(|r| r.map(drop))),
        };
        drop(pending);
        abort.abort(); // too late to matter
        assert_closed(&fortress, &guest, &what);
        assert_eq!(fortress.guests(), 0, "{what}");
        drop(held);
        assert_open(&fortress, &guest, &what);
    }
}

#[test]
fn a_plain_lockdown_that_gives_up_still_leaves_the_gate_closed() {
    let rt = runtime();
    // Aborted by a fired token.
    let (fortress, inside) = occupied();
    let (guard, guest) = (fortress.guard(), fortress.guest());
    assert_eq!(guard.lockdown(&fired()), Err(Error::Aborted));
    assert_closed(&fortress, &guest, "lockdown, fired token");
    drop(inside);
    // Aborted from another thread while it waits.
    let (fortress, inside) = occupied();
    let (guard, guest) = (fortress.guard(), fortress.guest());
    let abort = Abort::new();
    let (locker, token) = (guard.clone(), abort.clone());
    let lockdown = thread::spawn(move || locker.lockdown(&token));
    until_asleep(&fortress, Sleepers::Drain);
    abort.abort();
    assert_eq!(join_thread("lockdown", lockdown), Err(Error::Aborted));
    assert_closed(&fortress, &guest, "lockdown, token fired later");
    drop(inside);
    // An async lockdown aborted, and one dropped after its first poll.
    let (fortress, inside) = occupied();
    let (guard, guest) = (fortress.guard(), fortress.guest());
    assert_eq!(
        block_within(&rt, "lockdown_async", guard.lockdown_async(&fired())),
        Err(Error::Aborted)
    );
    assert_closed(&fortress, &guest, "lockdown_async, fired token");
    guard.unlock().unwrap();
    let never = Abort::never();
    let mut pending = Box::pin(guard.lockdown_async(&never));
    assert!(poll_noop(pending.as_mut()).is_pending());
    drop(pending);
    assert_closed(&fortress, &guest, "lockdown_async, dropped");
    drop(inside);
    assert_closed(&fortress, &guest, "drained");
}

// ----- OwnedExclusive -----

#[test]
fn an_owned_exclusive_is_send_static_and_debug_and_shows_its_value() {
    fn check<T: Send + 'static>() {}
    check::<OwnedExclusive>();
    let fortress = unlocked();
    let exclusive = fortress.guard().exclusive_owned(&fired()).unwrap();
    // As std's guards, it shows the value; its guard shows the state.
    assert_eq!(format!("{exclusive:?}"), "()");
    let shown = format!("{:?}", exclusive.guard());
    assert!(shown.starts_with("Guard(State { locked: true"), "{shown}");
    assert!(
        exclusive.guard().lockdown(&fired()).is_ok(),
        "closed and empty"
    );
}

#[test]
fn an_owned_exclusive_dropped_on_another_thread_unlocks_the_fortress() {
    for form in [Form::ExclusiveOwned, Form::ExclusiveOwnedAsync] {
        let what = format!("{form:?}");
        let fortress = unlocked();
        let guest = fortress.guest();
        let exclusive = owned(form, &fortress.guard(), &fired()).unwrap();
        assert_closed(&fortress, &guest, &what);
        let observer = fortress.clone();
        let seen = join_thread(
            &what,
            thread::spawn(move || {
                let locked = observer.is_locked();
                drop(exclusive);
                locked
            }),
        );
        assert!(seen, "{what}: still locked on the other thread");
        assert_open(&fortress, &guest, &what);
    }
}

#[test]
fn an_owned_exclusive_from_a_tokio_task_outlives_the_task_and_its_guard() {
    let rt = runtime();
    let fortress = unlocked();
    let guest = fortress.guest();
    let guard = fortress.guard();
    let task = rt.spawn(async move { guard.exclusive_owned_async(&Abort::never()).await });
    let exclusive = join(&rt, "exclusive_owned_async", task).unwrap();
    assert_closed(&fortress, &guest, "held after the task ended");
    let holder = rt.spawn(async move {
        tokio::task::yield_now().await;
        drop(exclusive);
    });
    join(&rt, "the holder", holder);
    assert_open(&fortress, &guest, "dropped in another task");
}

#[test]
fn an_owned_exclusive_with_the_last_guard_unlocks_before_it_lets_go_and_the_fortress_stays_open() {
    for form in [Form::ExclusiveOwned, Form::ExclusiveOwnedAsync] {
        let what = format!("{form:?}");
        let fortress = unlocked();
        let guest = fortress.guest();
        let guard = fortress.guard();
        let exclusive = owned(form, &guard, &fired()).unwrap();
        let visitor = spawn_visitor(&guest);
        until_asleep(&fortress, Sleepers::Gate);
        // Only the exclusive holds an opener now.
        drop(guard);
        drop(fortress);
        thread::sleep(SETTLE);
        assert!(
            !visitor.is_finished(),
            "{what}: the visitor stopped waiting"
        );
        assert!(guest.try_enter().is_none(), "{what}");
        thread::spawn(move || drop(exclusive)).join().unwrap();
        assert_eq!(
            join_thread("visitor", visitor),
            Ok(9),
            "{what}: unlocked, not killed"
        );
        assert_eq!(guest.visit(|| 1, &fired()), Ok(1), "{what}");
        assert!(guest.try_enter().is_some(), "{what}");
        let rt = runtime();
        assert_eq!(
            block_within(&rt, "enter", guest.enter_async(&fired())).map(drop),
            Ok(()),
            "{what}"
        );
    }
}

// ----- Nobody left to open it -----

#[test]
fn dropping_the_last_opener_of_a_locked_fortress_answers_waiting_threads_and_tasks_with_shutdown() {
    let rt = runtime();
    let fortress = common::fortress(); // locked
    let guest = fortress.guest();
    let guards = [fortress.guard(), fortress.guard().clone()];
    let threads: Vec<_> = (0..3).map(|_| spawn_visitor(&guest)).collect();
    let owned = {
        let guest = guest.clone();
        thread::spawn(move || guest.enter_owned(&Abort::never()).map(drop))
    };
    let pending = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let (guest, pending) = (guest.clone(), Arc::clone(&pending));
            rt.spawn(async move {
                let never = Abort::never();
                announce_pending(guest.enter_async(&never), &pending)
                    .await
                    .map(drop)
            })
        })
        .collect();
    until("three tasks pending", || pending.load(SeqCst) == 3);
    until_asleep(&fortress, Sleepers::Gate);
    // Openers go one by one: the waits go on while one is left.
    drop(fortress);
    let [first, last] = guards;
    drop(first);
    thread::sleep(SETTLE);
    assert!(
        threads.iter().all(|t| !t.is_finished()),
        "a thread stopped waiting"
    );
    assert!(
        tasks.iter().all(|t| !t.is_finished()),
        "a task stopped waiting"
    );
    drop(last);
    for thread in threads {
        assert_eq!(join_thread("visitor", thread), Err(Error::Shutdown));
    }
    assert_eq!(join_thread("enter_owned", owned), Err(Error::Shutdown));
    for task in tasks {
        assert_eq!(join(&rt, "entry", task), Err(Error::Shutdown));
    }
    // Later visits too.
    assert_eq!(guest.visit(|| (), &fired()), Err(Error::Shutdown));
    assert!(guest.try_enter().is_none());
    assert_eq!(
        block_within(&rt, "enter", guest.enter_async(&Abort::never())).map(drop),
        Err(Error::Shutdown)
    );
}

#[test]
fn dropping_the_last_opener_kills_a_fortress_left_closed_and_the_visit_inside_goes_on() {
    let (fortress, inside) = occupied();
    let guest = fortress.guest();
    assert_eq!(fortress.guard().lockdown(&fired()), Err(Error::Aborted));
    let visitor = spawn_visitor(&guest);
    let observer = fortress.guest();
    until_asleep(&fortress, Sleepers::Gate);
    drop(fortress); // guests, a visit inside and a visitor waiting: no opener
    assert_eq!(join_thread("visitor", visitor), Err(Error::Shutdown));
    assert_eq!(guest.visit(|| (), &fired()), Err(Error::Shutdown));
    assert!(
        inside.lockdown_pending(),
        "the visit inside goes on, the gate closed"
    );
    let shown = format!("{observer:?}");
    assert!(shown.contains("shut_down: true"), "{shown}");
    drop(inside);
}

#[test]
fn guests_and_their_visits_do_not_count_as_openers() {
    let fortress = common::fortress(); // locked
    let guest = fortress.guest();
    let guests: Vec<Guest> = (0..4).map(|_| fortress.guest()).collect();
    let visitor = spawn_visitor(&guest);
    until_asleep(&fortress, Sleepers::Gate);
    drop(fortress);
    assert_eq!(join_thread("visitor", visitor), Err(Error::Shutdown));
    for guest in &guests {
        assert_eq!(guest.visit(|| (), &fired()), Err(Error::Shutdown));
    }
}

#[test]
fn the_last_opener_can_be_a_guard_and_the_fortress_lives_until_it_goes() {
    let rt = runtime();
    // A guard outlives its fortress handle: it can still open the gate.
    let fortress = common::fortress(); // locked
    let guest = fortress.guest();
    let guard = fortress.guard();
    let visitor = spawn_visitor(&guest);
    until_asleep(&fortress, Sleepers::Gate);
    drop(fortress);
    thread::sleep(SETTLE);
    assert!(!visitor.is_finished(), "the guard can still open it");
    guard.unlock().unwrap();
    assert_eq!(join_thread("visitor", visitor), Ok(9));
    guard.lockdown(&fired()).unwrap();
    drop(guard);
    assert_eq!(guest.visit(|| (), &fired()), Err(Error::Shutdown));

    // When that guard goes, a thread and a task waiting are answered.
    let fortress = common::fortress(); // locked
    let guest = fortress.guest();
    let guard = fortress.guard();
    let pending = Arc::new(AtomicUsize::new(0));
    let task = {
        let (guest, pending) = (guest.clone(), Arc::clone(&pending));
        rt.spawn(async move {
            let never = Abort::never();
            announce_pending(guest.enter_async(&never), &pending)
                .await
                .map(drop)
        })
    };
    let visitor = spawn_visitor(&guest);
    until("the task pending", || pending.load(SeqCst) == 1);
    until_asleep(&fortress, Sleepers::Gate);
    drop(fortress);
    thread::sleep(SETTLE);
    assert!(
        !visitor.is_finished() && !task.is_finished(),
        "a guard is left"
    );
    drop(guard);
    assert_eq!(join_thread("visitor", visitor), Err(Error::Shutdown));
    assert_eq!(join(&rt, "task", task), Err(Error::Shutdown));
}

#[test]
fn dropping_the_last_opener_of_an_open_fortress_leaves_it_open_for_its_guests() {
    let rt = runtime();
    let (fortress, inside) = occupied();
    let guest = fortress.guest();
    let guard = fortress.guard();
    drop(fortress);
    drop(guard);
    assert_eq!(guest.visit(|| 1, &fired()), Ok(1));
    assert_eq!(join_thread("visitor", spawn_visitor(&guest)), Ok(9));
    assert!(guest.try_enter().is_some());
    assert_eq!(
        block_within(
            &rt,
            "visit",
            guest.visit_async(async { 2 }, &Abort::never())
        ),
        Ok(2)
    );
    let later = guest.enter_owned(&fired()).unwrap();
    assert!(!inside.lockdown_pending());
    drop(inside);
    drop(later);
    assert_eq!(guest.visit(|| 3, &fired()), Ok(3));
}

// ----- Fortress::wait_with -----

#[test]
fn wait_with_answers_aborted_when_its_token_fires_before_the_fortress_is_killed() {
    let fortress = unlocked();
    let abort = Abort::new();
    let (worker, token) = (fortress.clone(), abort.clone());
    let waiter = thread::spawn(move || worker.wait_with(&token));
    until_asleep(&fortress, Sleepers::Done);
    thread::sleep(SETTLE);
    assert!(!waiter.is_finished(), "returned before kill or abort");
    abort.abort();
    assert_eq!(join_thread("wait_with", waiter), Err(Error::Aborted));
    assert!(!snapshot(&fortress).shut_down());
}

#[test]
fn wait_with_a_fired_token_on_a_live_fortress_answers_aborted() {
    let fortress = unlocked();
    assert_eq!(wait_with_within(&fortress, &fired()), Err(Error::Aborted));
    let soon = Abort::after(Duration::from_millis(20));
    assert_eq!(wait_with_within(&fortress, &soon), Err(Error::Aborted));
}

#[test]
fn wait_with_answers_aborted_when_its_token_fires_while_a_killed_fortress_still_has_a_visit() {
    let (fortress, inside) = occupied();
    fortress.kill();
    let abort = Abort::new();
    let (worker, token) = (fortress.clone(), abort.clone());
    let waiter = thread::spawn(move || worker.wait_with(&token));
    until_asleep(&fortress, Sleepers::Done);
    thread::sleep(SETTLE);
    assert!(!waiter.is_finished(), "returned with a visit inside");
    abort.abort();
    assert_eq!(join_thread("wait_with", waiter), Err(Error::Aborted));
    assert_eq!(
        wait_with_within(&fortress, &fired()),
        Err(Error::Aborted),
        "must wait"
    );
    drop(inside);
    assert_eq!(
        wait_with_within(&fortress, &fired()),
        Ok(()),
        "no wait needed now"
    );
}

#[test]
fn wait_with_returns_ok_once_the_fortress_is_killed_and_the_last_visit_has_left() {
    let (fortress, inside) = occupied();
    let abort = Abort::new();
    let (worker, token) = (fortress.clone(), abort.clone());
    let waiter = thread::spawn(move || worker.wait_with(&token));
    until_asleep(&fortress, Sleepers::Done);
    fortress.kill();
    thread::sleep(SETTLE);
    assert!(!waiter.is_finished(), "returned with a visit inside");
    drop(inside);
    assert_eq!(join_thread("wait_with", waiter), Ok(()));
    abort.abort();
    assert_eq!(wait_with_within(&fortress, &abort), Ok(()));
}

#[test]
fn wait_with_a_fired_token_on_a_killed_empty_fortress_is_ok_without_waiting() {
    let fortress = unlocked();
    fortress.kill();
    assert_eq!(wait_with_within(&fortress, &fired()), Ok(()));
    assert_eq!(
        wait_with_within(&fortress, &Abort::after(Duration::ZERO)),
        Ok(())
    );
    let locked = common::fortress();
    locked.kill();
    assert_eq!(wait_with_within(&locked, &fired()), Ok(()));
}

// ----- Abort::aborted -----

#[test]
fn aborted_is_a_send_static_future_that_owns_its_token() {
    fn check<T: Send + 'static>(_: &T) {}
    let rt = runtime();
    let parent = Abort::new();
    // The child handle is gone at once; its future owns the token.
    let fut = parent.child().aborted();
    check(&fut);
    let task = rt.spawn(fut);
    until("the child's future registered", || links(&parent) == (0, 1));
    thread::sleep(SETTLE);
    assert!(!task.is_finished());
    parent.abort();
    join(&rt, "aborted", task);
}

#[test]
fn aborted_completes_when_the_token_is_fired_by_hand_from_another_thread() {
    let rt = runtime();
    let abort = Abort::new();
    let task = rt.spawn(abort.aborted());
    until("the task registered", || links(&abort) == (1, 0));
    thread::sleep(SETTLE);
    assert!(!task.is_finished(), "completed before the token fired");
    let token = abort.clone();
    thread::spawn(move || token.abort()).join().unwrap();
    join(&rt, "aborted", task);
    assert_eq!(links(&abort), (0, 0));
}

#[test]
fn aborted_of_a_child_completes_when_its_parent_fires() {
    let rt = runtime();
    let parent = Abort::new();
    let child = parent.child();
    let task = rt.spawn(child.aborted());
    until("the task registered", || links(&child) == (1, 0));
    thread::sleep(SETTLE);
    assert!(!task.is_finished());
    thread::spawn(move || parent.abort()).join().unwrap();
    join(&rt, "aborted", task);
    assert_eq!(links(&child), (0, 0));
    // A child born of a fired parent: ready at once.
    let parent = fired();
    assert!(poll_noop(pin!(parent.child().aborted())).is_ready());
}

#[test]
fn aborted_completes_at_the_deadline_on_a_tokio_runtime() {
    let rt = runtime();
    let start = Instant::now();
    let abort = Abort::after(Duration::from_millis(100));
    let deadline = abort.deadline().unwrap();
    let mut fut = Box::pin(abort.aborted());
    let first = poll_noop(fut.as_mut());
    if Instant::now() < deadline {
        assert!(first.is_pending(), "ready before the deadline");
    }
    block_within(&rt, "aborted at the deadline", fut);
    assert!(Instant::now() >= deadline, "completed before the deadline");
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert!(abort.is_aborted());
    assert_eq!(links(&abort), (0, 0));
}

#[test]
fn a_poll_of_aborted_after_the_deadline_completes_even_if_the_timer_has_not_fired() {
    // Nothing ever waited on this token, so the timer does not know it: only the clock
    // can tell that the deadline has passed.
    let abort = Abort::after(Duration::from_millis(30));
    thread::sleep(Duration::from_millis(50));
    assert!(poll_noop(pin!(abort.aborted())).is_ready());
    assert_eq!(links(&abort), (0, 0));
    // A child's inherited deadline, likewise.
    let parent = Abort::after(Duration::from_millis(30));
    let child = parent.child();
    thread::sleep(Duration::from_millis(50));
    assert!(poll_noop(pin!(child.aborted())).is_ready());
}

#[test]
fn aborted_completes_when_its_from_future_source_completes() {
    let rt = runtime();
    let cancel = CancellationToken::new();
    let abort = Abort::from_future(cancel.clone().cancelled_owned());
    let task = rt.spawn(abort.aborted());
    until("the task registered", || links(&abort) == (1, 0));
    thread::sleep(SETTLE);
    assert!(!task.is_finished());
    thread::spawn(move || cancel.cancel()).join().unwrap();
    join(&rt, "aborted", task);
    assert!(abort.is_aborted());
}

#[test]
fn aborted_of_a_token_that_never_fires_never_completes() {
    let rt = runtime();
    for never in [Abort::never(), Abort::NEVER.clone()] {
        let mut fut = Box::pin(never.aborted());
        for _ in 0..3 {
            assert!(poll_noop(fut.as_mut()).is_pending());
        }
        never.abort();
        assert!(poll_noop(fut.as_mut()).is_pending());
        let waited = rt.block_on(async { tokio::time::timeout(SETTLE, fut).await });
        assert!(waited.is_err(), "Abort::never().aborted() completed");
    }
}

#[test]
fn aborted_of_a_token_that_fired_already_is_ready_at_the_first_poll_and_registers_nothing() {
    let abort = fired();
    let mut fut = Box::pin(abort.aborted());
    assert!(poll_noop(fut.as_mut()).is_ready());
    assert_eq!(links(&abort), (0, 0));
}

#[test]
fn dropping_a_pending_aborted_future_leaves_nothing_registered_and_it_is_never_woken() {
    let abort = Abort::new();
    let (first, first_wakes) = CountingWaker::new();
    let (second, second_wakes) = CountingWaker::new();
    let mut fut = Box::pin(abort.aborted());
    assert!(poll_with(fut.as_mut(), &first).is_pending());
    assert_eq!(links(&abort), (1, 0));
    assert!(poll_with(fut.as_mut(), &second).is_pending());
    assert_eq!(
        links(&abort),
        (1, 0),
        "a second poll registers no second wait"
    );
    drop(fut);
    assert_eq!(links(&abort), (0, 0));
    abort.abort();
    assert_eq!((first_wakes.wakes(), second_wakes.wakes()), (0, 0));
    // And one that completes leaves nothing either.
    let abort = Abort::new();
    let (waker, wakes) = CountingWaker::new();
    let mut fut = Box::pin(abort.aborted());
    assert!(poll_with(fut.as_mut(), &waker).is_pending());
    abort.abort();
    assert_eq!(wakes.wakes(), 1, "the newest waker is woken");
    assert!(poll_with(fut.as_mut(), &waker).is_ready());
    drop(fut);
    assert_eq!(links(&abort), (0, 0));
}

#[test]
fn many_aborted_futures_on_one_token_all_complete_when_it_fires() {
    let rt = runtime();
    let abort = Abort::new();
    let tasks: Vec<_> = (0..10).map(|_| rt.spawn(abort.aborted())).collect();
    until("ten tasks registered", || links(&abort) == (10, 0));
    abort.abort();
    for task in tasks {
        join(&rt, "aborted", task);
    }
}

// ----- Abort::NEVER -----

#[test]
fn abort_never_is_a_static_token_that_a_stored_entry_future_can_borrow() {
    let never: &'static Abort = Abort::NEVER;
    assert!(!never.is_aborted());
    never.abort();
    assert!(!never.is_aborted());
    assert_eq!(never.deadline(), None);
    assert_eq!(format!("{never:?}"), "Abort::never()");

    let rt = runtime();
    let fortress = common::fortress(); // locked
    let guest = fortress.guest();
    let task = rt.spawn(async move {
        let entry = guest.enter_async(Abort::NEVER); // stored, awaited later
        tokio::task::yield_now().await;
        let visit = entry.await?;
        drop(visit);
        // Stored in a hand-written select, as `select!` stores its branches.
        let entry = guest.enter_async(Abort::NEVER);
        let nap = tokio::time::sleep(HANG);
        match race(entry, nap).await {
            Either::Left(entered) => entered.map(drop),
            Either::Right(()) => panic!("the entry lost to a nap of {HANG:?}"),
        }
    });
    until_pending(&fortress, Sleepers::Gate);
    fortress.guard().unlock().unwrap();
    assert_eq!(join(&rt, "entry", task), Ok(()));
    assert_eq!(fortress.guests(), 0);
}

// ----- The cooperative budget -----

/// How long the sleeper sleeps, and by when (from the start) it must have woken.
const NAP: Duration = Duration::from_millis(10);
/// 50 ms; 1 s where CI sets `FORTRESS_NO_TIMING` (ThreadSanitizer slows everything
/// down), still half the [`SAFETY_NET`] that a starved nap would take.
fn prompt() -> Duration {
    match std::env::var_os("FORTRESS_NO_TIMING") {
        None => Duration::from_millis(50),
        Some(_) => Duration::from_secs(1),
    }
}
/// The looping task stops by itself after this long, so a missing budget fails the
/// test in bounded time rather than hanging it.
const SAFETY_NET: Duration = Duration::from_secs(2);

/// On a current-thread runtime, a task that does nothing but enter an open fortress
/// (or visit it, with `visit`), and a task that sleeps [`NAP`]: when the sleeper woke,
/// counted from the start, and how many entries the looping task made.
fn a_nap_beside_a_task_that_only_enters(visit: bool) -> (Duration, usize) {
    let fortress = unlocked();
    let guest = fortress.guest();
    within("a current-thread runtime with a looping task", move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("could not build a current-thread runtime");
        let stop = Arc::new(AtomicBool::new(false));
        let entries = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        // The looper goes first: the sleeper only gets the thread if it yields.
        let looper = {
            let (stop, entries) = (Arc::clone(&stop), Arc::clone(&entries));
            rt.spawn(async move {
                let never = Abort::never();
                while !stop.load(SeqCst) && start.elapsed() < SAFETY_NET {
                    if visit {
                        guest.visit_async(async {}, &never).await.expect("open");
                    } else {
                        drop(guest.enter_async(&never).await.expect("open"));
                    }
                    entries.fetch_add(1, SeqCst);
                }
            })
        };
        let sleeper = rt.spawn(async move {
            tokio::time::sleep(NAP).await;
            let woke = start.elapsed();
            stop.store(true, SeqCst);
            woke
        });
        let woke = rt.block_on(async move {
            let woke = sleeper.await.expect("the sleeper");
            looper.await.expect("the looper");
            woke
        });
        (woke, entries.load(SeqCst))
    })
}

/// Runs [`a_nap_beside_a_task_that_only_enters`] up to three times and asserts that
/// the nap once ended within [`prompt`] of the start. Timing is the behaviour here:
/// without the budget the looping task never yields, so the nap ends only when the
/// loop gives up after [`SAFETY_NET`], every time. The retries only absorb a run
/// whose thread the machine did not schedule for a while.
fn assert_a_nap_ends_in_time(visit: bool) {
    let mut runs = Vec::new();
    for _ in 0..3 {
        let (woke, entries) = a_nap_beside_a_task_that_only_enters(visit);
        assert!(
            entries > 128,
            "the looper made only {entries} entries: it hardly ran"
        );
        if woke < prompt() {
            return;
        }
        runs.push(woke);
    }
    panic!("a nap of {NAP:?} ended after {runs:?}: the looping task starved the runtime");
}

#[test]
#[cfg_attr(miri, ignore = "a timing bound")]
fn a_task_that_only_enters_an_open_fortress_lets_a_sleeping_task_on_the_same_thread_wake_in_time() {
    assert_a_nap_ends_in_time(false);
}

#[test]
#[cfg_attr(miri, ignore = "a timing bound")]
fn a_task_that_only_visits_an_open_fortress_lets_a_sleeping_task_on_the_same_thread_wake_in_time() {
    assert_a_nap_ends_in_time(true);
}

// ----- Task slots and token registrations are reused -----

/// How many waits these tests put through one fortress or token: a thousand, or
/// twenty under Miri, where each costs a thousand times more (the tests count exactly,
/// so twenty still shows growth).
const WAITS: usize = if cfg!(miri) { 20 } else { 1_000 };

#[test]
fn a_thousand_dropped_pending_entries_leave_no_waker_and_the_task_set_does_not_grow() {
    let fortress = common::fortress(); // locked
    let guest = fortress.guest();
    let never = Abort::never();
    for _ in 0..WAITS {
        let mut entry = Box::pin(guest.enter_async(&never));
        pend(entry.as_mut());
        assert_eq!(task_slots(&fortress).0, 1);
        drop(entry);
    }
    let (entries, keys) = task_slots(&fortress);
    assert_eq!(entries, 0);
    assert!(keys <= 1, "the task set grew to {keys} keys");
    // With one entry pending all along, and the others coming and going.
    let mut steady = Box::pin(guest.enter_async(&never));
    pend(steady.as_mut());
    for _ in 0..WAITS {
        let mut entry = Box::pin(guest.enter_async(&never));
        pend(entry.as_mut());
        drop(entry);
    }
    let (entries, keys) = task_slots(&fortress);
    assert_eq!(entries, 1, "the steady entry");
    assert!(keys <= 2, "the task set grew to {keys} keys");
    fortress.guard().unlock().unwrap();
    match poll_noop(steady.as_mut()) {
        Poll::Ready(Ok(visit)) => drop(visit),
        other => panic!("not admitted: {:?}", other.map(|r| r.map(drop))),
    }
    drop(steady);
    assert_eq!(task_slots(&fortress).0, 0);
    assert_eq!(word(&fortress), State::OPEN);
}

#[test]
fn a_thousand_dropped_pending_exclusive_async_futures_back_out_and_the_task_set_does_not_grow() {
    let (fortress, inside) = occupied();
    let (guard, guest) = (fortress.guard(), fortress.guest());
    let never = Abort::never();
    for _ in 0..WAITS {
        let mut exclusive = Box::pin(guard.exclusive_async(&never));
        assert!(poll_noop(exclusive.as_mut()).is_pending());
        drop(exclusive);
        assert!(!fortress.is_locked());
    }
    let (entries, keys) = task_slots(&fortress);
    assert_eq!(entries, 0);
    assert!(keys <= 1, "the task set grew to {keys} keys");
    assert_open(&fortress, &guest, "after a thousand back-outs");
    drop(inside);
}

#[test]
fn a_thousand_waits_with_one_token_leave_no_registration_with_it() {
    let fortress = common::fortress(); // locked
    let (guard, guest) = (fortress.guard(), fortress.guest());
    let abort = Abort::new();
    // Futures, dropped while pending.
    for _ in 0..WAITS {
        let mut entry = Box::pin(guest.enter_async(&abort));
        pend(entry.as_mut());
        assert_eq!(links(&abort), (1, 0));
        drop(entry);
        assert_eq!(links(&abort), (0, 0));
    }
    // Threads, asleep with the token, let in by an unlock.
    let (go, gone) = (mpsc::channel::<()>(), mpsc::channel());
    let (go_tx, go_rx) = go;
    let (done_tx, done_rx) = gone;
    let (visitor_guest, token) = (guest.clone(), abort.clone());
    let visitor = thread::spawn(move || {
        for () in go_rx {
            done_tx.send(visitor_guest.visit(|| (), &token)).unwrap();
        }
    });
    for round in 0..WAITS {
        go_tx.send(()).unwrap();
        let start = Instant::now();
        while !snapshot(&fortress).has(Waiters::Gate, fortress_gate::internals::Kind::Thread) {
            assert!(
                start.elapsed() < HANG,
                "round {round}: the visitor never slept"
            );
            thread::yield_now();
        }
        assert_eq!(links(&abort), (1, 0), "round {round}");
        guard.unlock().unwrap();
        assert_eq!(recv_within(&done_rx, "the visit"), Ok(()), "round {round}");
        assert_eq!(links(&abort), (0, 0), "round {round}");
        guard.lockdown(&fired()).unwrap();
    }
    drop(go_tx);
    join_thread("visitor", visitor);
    // Many waits at once, all aborted.
    let visitors: Vec<_> = (0..8)
        .map(|_| {
            let (guest, token) = (guest.clone(), abort.clone());
            thread::spawn(move || guest.visit(|| (), &token))
        })
        .collect();
    until("eight registrations", || links(&abort) == (8, 0));
    abort.abort();
    for visitor in visitors {
        assert_eq!(join_thread("visitor", visitor), Err(Error::Aborted));
    }
    assert_eq!(links(&abort), (0, 0));
}

#[test]
fn a_wait_that_ends_removes_only_its_own_registration_and_the_other_is_still_woken() {
    for drop_the_first in [true, false] {
        let what = format!("dropping the first registered: {drop_the_first}");
        // Two fortresses, so that the dropped wait's notifier is not the kept one's.
        let (one, two) = (common::fortress(), common::fortress());
        let (dropped_guest, kept_guest) = (one.guest(), two.guest());
        let abort = Abort::new();
        let (waker, wakes) = CountingWaker::new();
        let mut dropped = Box::pin(dropped_guest.enter_async(&abort));
        let mut kept = Box::pin(kept_guest.enter_async(&abort));
        if drop_the_first {
            assert!(poll_noop(dropped.as_mut()).is_pending());
            assert!(poll_with(kept.as_mut(), &waker).is_pending());
        } else {
            assert!(poll_with(kept.as_mut(), &waker).is_pending());
            assert!(poll_noop(dropped.as_mut()).is_pending());
        }
        assert_eq!(links(&abort), (2, 0), "{what}");
        drop(dropped);
        assert_eq!(links(&abort), (1, 0), "{what}");
        abort.abort();
        assert_eq!(wakes.wakes(), 1, "{what}: the kept wait was not woken");
        match poll_with(kept.as_mut(), &waker) {
            Poll::Ready(Err(Error::Aborted)) => {}
            other => panic!("{what}: {:?}", other.map(|r| r.map(drop))),
        }
        assert_eq!(links(&abort), (0, 0), "{what}");
    }
}

#[test]
fn a_dropped_future_on_a_token_leaves_a_sleeping_thread_on_it_to_be_woken() {
    for by_aborted in [false, true] {
        let what = format!("the dropped future is Abort::aborted: {by_aborted}");
        let (one, two) = (common::fortress(), common::fortress());
        let abort = Abort::new();
        let guest = one.guest();
        let mut dropped: Pin<Box<dyn Future<Output = ()> + Send + '_>> = if by_aborted {
            Box::pin(abort.aborted())
        } else {
            Box::pin(async { drop(guest.enter_async(&abort).await) })
        };
        assert!(poll_noop(dropped.as_mut()).is_pending(), "{what}");
        let (sleeper_guest, token) = (two.guest(), abort.clone());
        let sleeper = thread::spawn(move || sleeper_guest.visit(|| (), &token));
        until("the sleeper registered", || links(&abort) == (2, 0));
        drop(dropped);
        assert_eq!(links(&abort), (1, 0), "{what}");
        abort.abort();
        assert_eq!(join_thread(&what, sleeper), Err(Error::Aborted), "{what}");
    }
}
