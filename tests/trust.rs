//! User code the crate calls into must not be able to break it: task wakers that
//! re-enter the fortress or panic (in `wake` or in `drop`), `from_future` sources that
//! panic, wake themselves or wake under their own lock, extreme tokens (a deadline
//! `Duration::MAX` away, a million generations of children), and `occupy` with a token
//! that fired before the call.
//!
//! The rules these pin: no waker method, source future or worker method runs while the
//! crate holds a lock of its own; a panic in user code is reported by the panic hook
//! but does not continue into the crate's caller, every other waiter the operation
//! wakes is still woken, and the operation's own effect is complete.
//!
//! Nothing here may hang: every call that could block runs under [`within_for`] (a
//! bounded [`common::within`]), and a test that could take the whole process down (a
//! stack overflow) or break the process-wide deadline timer for the other tests runs
//! in a child process of its own ([`in_own_process`]). The bounds only turn a hang into
//! a failure; nothing measures speed.
//!
//! Several tests panic on purpose inside a waker or a source future, so their output
//! shows panic messages even when they pass.

mod common;

/// Guest slots of `common::fortress()`: 0 is the single state word. (The tests here
/// pick their fortresses by hand.)
#[allow(dead_code)]
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::Word;

use common::{
    poll_with, until, until_asleep, CountingWaker, SharedSleeper, Sleeper, Sleepers, HANG,
};
use fortress_gate::{occupy, Abort, Error, Fortress, Guard, OccupyError, Worker};
use std::future::Future;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

/// How long a call that should return at once (or a token that should fire at once)
/// may take before the test calls it lost. Generous for a loaded 2-core machine.
const SOON: Duration = if cfg!(miri) {
    HANG
} else {
    Duration::from_secs(10)
};

/// A deadline nobody in these tests lives to see.
const HOUR: Duration = Duration::from_secs(3600);

// ----- Helpers -----

/// As [`common::within`], with a bound of `limit`: runs `f` on its own thread and
/// fails the test if it has not returned by then. A panic in `f` propagates.
fn within_for<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let out = f();
        let _ = tx.send(());
        out
    });
    match rx.recv_timeout(limit) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still blocked after {limit:?}"),
    }
}

/// Runs `f`, catching a panic: `true` if it returned normally.
fn returns_without_panicking(f: impl FnOnce()) -> bool {
    catch_unwind(AssertUnwindSafe(f)).is_ok()
}

/// Whether `abort` fires within [`SOON`] (it may fire a little later, on another
/// thread).
fn fires_soon(abort: &Abort) -> bool {
    let start = Instant::now();
    while !abort.is_aborted() {
        if start.elapsed() > SOON {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Holds a value whose drop may block after a failure (a token whose source is stuck
/// in a deadlocked poll): a test that is already failing leaks it rather than hang.
struct LeakOnPanic<T>(Option<T>);

impl<T> std::ops::Deref for LeakOnPanic<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_ref().unwrap()
    }
}

impl<T> Drop for LeakOnPanic<T> {
    fn drop(&mut self) {
        if thread::panicking() {
            std::mem::forget(self.0.take());
        }
    }
}

/// The environment variable that tells a child process which test to run for real.
const CHILD: &str = "FORTRESS_TRUST_CHILD";

/// Runs `body` in a child process (this test binary again, with only the test `test`),
/// and fails if the child does not pass: for tests whose failure would take the whole
/// process down (a stack overflow aborts it) or break what every test shares (the
/// process-wide deadline timer thread). `test` must be the test's own name.
fn in_own_process(test: &str, body: impl FnOnce()) {
    if std::env::var(CHILD).as_deref() == Ok(test) {
        body();
        return;
    }
    // The harness names a test by its module path below the crate: none in this file's
    // own binary, `trust::` where another binary includes it.
    let name = match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::{test}"),
        None => test.to_owned(),
    };
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(exe)
        .args([name.as_str(), "--exact", "--test-threads=1"])
        .env(CHILD, test)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("could not start a child process");
    fn drain(mut from: impl Read + Send + 'static) -> thread::JoinHandle<String> {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = from.read_to_string(&mut text);
            text
        })
    }
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let limit = HANG + SOON;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child process") {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    match status {
        // The check on the summary guards against a name that matched no test.
        Some(status) if status.success() && stdout.contains(" 1 passed") => {}
        Some(status) => panic!(
            "{test} failed in its own process ({status}):\n{stdout}\n--- stderr ---\n{stderr}"
        ),
        None => panic!(
            "{test} still ran in its own process after {limit:?}:\n{stdout}\n--- stderr ---\n{stderr}"
        ),
    }
}

/// A task waker that panics when woken (once it has noted that it was).
#[derive(Default)]
struct PanicWaker {
    woken: AtomicBool,
}

impl PanicWaker {
    fn new() -> (Waker, Arc<PanicWaker>) {
        let this = Arc::new(PanicWaker::default());
        (Waker::from(Arc::clone(&this)), this)
    }

    fn woken(&self) -> bool {
        self.woken.load(SeqCst)
    }
}

impl Wake for PanicWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, SeqCst);
        if !thread::panicking() {
            panic!("a task waker panics when woken (on purpose)");
        }
    }
}

/// A task waker whose `wake` calls back into a fortress, and keeps what it returned.
struct Reenter {
    call: Box<dyn Fn() -> Result<(), Error> + Send + Sync>,
    results: Mutex<Vec<Result<(), Error>>>,
}

impl Reenter {
    fn new(call: impl Fn() -> Result<(), Error> + Send + Sync + 'static) -> Arc<Reenter> {
        Arc::new(Reenter {
            call: Box::new(call),
            results: Mutex::new(Vec::new()),
        })
    }

    /// Waits until the waker has run once, and returns what its call answered.
    fn first_result(&self) -> Result<(), Error> {
        until("the re-entering waker to run", || {
            !self.results.lock().unwrap().is_empty()
        });
        self.results.lock().unwrap()[0]
    }
}

impl Wake for Reenter {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let result = (self.call)();
        self.results.lock().unwrap().push(result);
    }
}

/// A task waker that does nothing when woken, but unlocks its fortress when the last
/// clone is dropped: it re-enters the fortress from `Drop`.
struct UnlockOnDrop {
    guard: Guard,
    unlocked: Unlocked,
}

/// What an [`UnlockOnDrop`]'s `unlock` answered, once it has been dropped.
type Unlocked = Arc<Mutex<Option<Result<(), Error>>>>;

impl UnlockOnDrop {
    /// The waker, and where its drop leaves the result of its `unlock`.
    fn waker(guard: Guard) -> (Waker, Unlocked) {
        let unlocked = Arc::new(Mutex::new(None));
        let waker = Waker::from(Arc::new(UnlockOnDrop {
            guard,
            unlocked: Arc::clone(&unlocked),
        }));
        (waker, unlocked)
    }
}

impl Wake for UnlockOnDrop {
    fn wake(self: Arc<Self>) {}
}

impl Drop for UnlockOnDrop {
    fn drop(&mut self) {
        let result = self.guard.unlock();
        *self.unlocked.lock().unwrap() = Some(result);
    }
}

/// A task waker that does nothing when woken, but panics when the last clone is
/// dropped.
struct PanicOnDrop;

impl Wake for PanicOnDrop {
    fn wake(self: Arc<Self>) {}
}

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !thread::panicking() {
            panic!("a task waker panics when dropped (on purpose)");
        }
    }
}

// ----- Wakers that re-enter a sharded fortress (no waker runs under the pass lock) -----

#[test]
fn a_sharded_unlock_returns_when_the_task_waker_it_wakes_locks_the_fortress_down_again() {
    let fortress = Fortress::with_shards(2);
    let (guest, guard) = (fortress.guest(), fortress.guard());
    let reenter = Reenter::new({
        let guard = guard.clone();
        move || guard.lockdown(&Abort::after(SOON))
    });
    let abort = Abort::never();
    let mut entry = pin!(guest.enter_async(&abort));
    assert!(poll_with(entry.as_mut(), &Waker::from(Arc::clone(&reenter))).is_pending());

    let unlocked = within_for(SOON, "unlock, whose waker locks down", move || {
        guard.unlock()
    });
    assert_eq!(unlocked, Ok(()));
    assert_eq!(
        reenter.first_result(),
        Ok(()),
        "the waker's lockdown: nobody is inside"
    );
}

#[test]
fn a_sharded_kill_returns_when_the_task_waker_it_wakes_unlocks_the_fortress() {
    let fortress = Fortress::with_shards(2);
    let guest = fortress.guest();
    let reenter = Reenter::new({
        let guard = fortress.guard();
        move || guard.unlock()
    });
    let abort = Abort::never();
    let mut entry = pin!(guest.enter_async(&abort));
    assert!(poll_with(entry.as_mut(), &Waker::from(Arc::clone(&reenter))).is_pending());

    let killer = fortress.clone();
    within_for(SOON, "kill, whose waker unlocks", move || killer.kill());
    assert_eq!(
        reenter.first_result(),
        Err(Error::Shutdown),
        "the waker's unlock comes after the kill"
    );
    assert!(matches!(
        poll_with(entry.as_mut(), Waker::noop()),
        Poll::Ready(Err(Error::Shutdown))
    ));
}

// ----- Panicking wakers: every other waiter is still woken; no panic escapes -----

/// Two tasks pending at the gate, the first with a waker that panics: `unlock` must
/// return normally and still wake the second.
fn unlock_wakes_every_task_despite_one_panicking_waker(fortress: Fortress) {
    let guest = fortress.guest();
    let abort = Abort::never();
    let (panicky, panic_waker) = PanicWaker::new();
    let (counting, count) = CountingWaker::new();
    let mut first = pin!(guest.enter_async(&abort));
    let mut second = pin!(guest.enter_async(&abort));
    assert!(poll_with(first.as_mut(), &panicky).is_pending());
    assert!(poll_with(second.as_mut(), &counting).is_pending());

    let guard = fortress.guard();
    let returned = within_for(SOON, "unlock", move || {
        let mut result = None;
        let returned = returns_without_panicking(|| result = Some(guard.unlock()));
        (returned, result)
    });
    assert!(panic_waker.woken(), "the panicking waker was never woken");
    assert!(
        returned.0 && count.wakes() == 1,
        "unlock returned normally: {}; the other task was woken {} times (want 1)",
        returned.0,
        count.wakes()
    );
    assert_eq!(returned.1, Some(Ok(())));
    assert!(
        matches!(poll_with(second.as_mut(), &counting), Poll::Ready(Ok(_))),
        "the gate is open: the woken task enters"
    );
}

#[test]
fn unlock_wakes_every_task_and_does_not_panic_when_one_task_waker_panics() {
    unlock_wakes_every_task_despite_one_panicking_waker(Fortress::new());
}

#[test]
fn a_sharded_unlock_wakes_every_task_and_does_not_panic_when_one_task_waker_panics() {
    unlock_wakes_every_task_despite_one_panicking_waker(Fortress::with_shards(2));
}

#[test]
fn kill_with_a_panicking_task_waker_at_the_gate_still_wakes_a_sleeping_lockdown() {
    let fortress = common::unlocked();
    let guest = fortress.guest();
    let visit = guest.enter_owned(&Abort::never()).unwrap();
    let guard = fortress.guard();
    let lockdown = thread::spawn(move || guard.lockdown(&Abort::never()));
    until_asleep(&fortress, Sleepers::Drain);
    let abort = Abort::never();
    let (panicky, panic_waker) = PanicWaker::new();
    let mut entry = pin!(guest.enter_async(&abort));
    assert!(poll_with(entry.as_mut(), &panicky).is_pending());

    let killer = fortress.clone();
    let returned = within_for(SOON, "kill", move || {
        returns_without_panicking(|| killer.kill())
    });
    assert!(panic_waker.woken());
    // A timed token on the lockdown would not tell a lost wake-up apart: woken by its
    // deadline, it would answer `Shutdown` all the same. Hence a bounded join.
    let locked_down = within_for(SOON, "the lockdown after kill", move || {
        lockdown.join().unwrap()
    });
    assert_eq!(locked_down, Err(Error::Shutdown));
    assert!(returned, "kill panicked into its caller");
    drop(visit);
}

#[test]
fn abort_with_a_panicking_task_waker_on_one_fortress_still_wakes_a_thread_on_another() {
    let (first, second) = (Fortress::new(), Fortress::new());
    let token = Abort::new();
    // The task registers with the token first, so it is woken first.
    let guest = first.guest();
    let (panicky, panic_waker) = PanicWaker::new();
    let mut entry = pin!(guest.enter_async(&token));
    assert!(poll_with(entry.as_mut(), &panicky).is_pending());
    let (other, waits_with) = (second.guest(), token.clone());
    let visitor = thread::spawn(move || other.visit(|| (), &waits_with));
    until_asleep(&second, Sleepers::Gate);

    let firing = token.clone();
    let returned = within_for(SOON, "abort", move || {
        returns_without_panicking(|| firing.abort())
    });
    assert!(panic_waker.woken());
    let visited = within_for(SOON, "the visit on the other fortress", move || {
        visitor.join().unwrap()
    });
    assert_eq!(visited, Err(Error::Aborted));
    assert!(returned, "abort panicked into its caller");
}

#[test]
fn a_sharded_kill_with_a_panicking_task_waker_still_shuts_every_slot_and_lets_wait_return() {
    let fortress = Fortress::with_shards(2);
    fortress.guard().unlock().unwrap();
    // A task waiting for the end: a waiter that a kill wakes while the slots are open.
    let (panicky, panic_waker) = PanicWaker::new();
    let mut done = pin!(fortress.wait_async());
    assert!(poll_with(done.as_mut(), &panicky).is_pending());

    let killer = fortress.clone();
    let _ = within_for(SOON, "kill", move || {
        returns_without_panicking(|| killer.kill())
    });
    assert!(panic_waker.woken());
    let guest = fortress.guest();
    assert!(
        guest.try_enter().is_none(),
        "a killed fortress admitted a guest"
    );
    assert_eq!(
        guest.visit(|| (), &Abort::after(SOON)),
        Err(Error::Shutdown)
    );
    let waiter = fortress.clone();
    let waited = within_for(SOON, "wait after kill", move || {
        waiter.wait().map_err(|e| e.to_string())
    });
    assert_eq!(waited, Ok(()));
}

#[test]
#[cfg_attr(miri, ignore = "runs in a child process")]
fn a_panicking_task_waker_fired_at_a_deadline_does_not_stop_later_deadlines() {
    // The deadline timer is one thread for the whole process. If a panicking waker
    // kills it (the bug this pins), no deadline fires again in that process, so this
    // test runs in a child process of its own and cannot break the others.
    in_own_process(
        "a_panicking_task_waker_fired_at_a_deadline_does_not_stop_later_deadlines",
        || {
            let first = Fortress::new();
            let guest = first.guest();
            let token = Abort::after(Duration::from_millis(100));
            let (panicky, panic_waker) = PanicWaker::new();
            let mut entry = pin!(guest.enter_async(&token));
            assert!(poll_with(entry.as_mut(), &panicky).is_pending());
            until("the timer to wake the panicking waker", || {
                panic_waker.woken()
            });

            let second = Fortress::new();
            let other = second.guest();
            let visited = within_for(SOON, "a visit with a later deadline", move || {
                other.visit(|| (), &Abort::after(Duration::from_millis(200)))
            });
            assert_eq!(visited, Err(Error::Aborted));
        },
    );
}

/// A task waker whose `wake` arms a deadline of its own: it polls, once, the
/// `aborted()` future of a fresh token with a deadline, which enters that token in the
/// shared timer (and leaves it again as the token is dropped).
#[derive(Default)]
struct ArmsADeadline {
    armed: AtomicBool,
}

impl Wake for ArmsADeadline {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let later = Abort::after(HOUR);
        let mut aborted = pin!(later.aborted());
        assert!(poll_with(aborted.as_mut(), Waker::noop()).is_pending());
        self.armed.store(true, SeqCst);
    }
}

#[test]
#[cfg_attr(miri, ignore = "runs in a child process")]
fn a_task_waker_fired_at_a_deadline_may_arm_another_deadline_and_later_deadlines_still_fire() {
    // The timer thread fires a deadline's wakers after it has released its own lock. A
    // timer that ran them under it (the bug this pins) would deadlock on the waker's
    // arming, and no deadline would fire again in that process: hence a child process.
    in_own_process(
        "a_task_waker_fired_at_a_deadline_may_arm_another_deadline_and_later_deadlines_still_fire",
        || {
            let first = Fortress::new();
            let guest = first.guest();
            // Leaked if the test fails: dropping it would take the deadlocked timer's lock.
            let token = LeakOnPanic(Some(Abort::after(Duration::from_millis(100))));
            let arms = Arc::new(ArmsADeadline::default());
            let mut entry = pin!(guest.enter_async(&token));
            assert!(poll_with(entry.as_mut(), &Waker::from(Arc::clone(&arms))).is_pending());

            let second = Fortress::new();
            let other = second.guest();
            let visited = within_for(SOON, "a visit with a later deadline", move || {
                other.visit(|| (), &Abort::after(Duration::from_millis(200)))
            });
            assert_eq!(visited, Err(Error::Aborted));
            until("the waker to arm its own deadline", || {
                arms.armed.load(SeqCst)
            });
        },
    );
}

// ----- Wakers that re-enter or panic when dropped -----

#[test]
fn dropping_a_pending_entry_whose_waker_unlocks_the_fortress_when_dropped_does_not_deadlock() {
    let fortress = Fortress::new();
    let (waker, unlocked) = UnlockOnDrop::waker(fortress.guard());
    let guest = fortress.guest();
    within_for(SOON, "dropping the pending entry", move || {
        let abort = Abort::never();
        let mut entry = Box::pin(guest.enter_async(&abort));
        assert!(poll_with(entry.as_mut(), &waker).is_pending());
        drop(waker); // the fortress holds the last clone now
        drop(entry);
    });
    // At once, or a moment later if the crate drops wakers it forgot elsewhere.
    until("the forgotten waker to be dropped", || {
        unlocked.lock().unwrap().is_some()
    });
    assert_eq!(*unlocked.lock().unwrap(), Some(Ok(())));
    assert!(!fortress.is_locked());
}

#[test]
fn repolling_with_a_new_waker_when_the_old_one_unlocks_the_fortress_when_dropped_does_not_deadlock()
{
    let fortress = Fortress::new();
    let (waker, unlocked) = UnlockOnDrop::waker(fortress.guard());
    let guest = fortress.guest();
    let entered = within_for(SOON, "polling with a new waker", move || {
        let abort = Abort::never();
        let mut entry = Box::pin(guest.enter_async(&abort));
        assert!(poll_with(entry.as_mut(), &waker).is_pending());
        drop(waker); // the fortress holds the last clone now
        let (counting, _count) = CountingWaker::new();
        // The first waker is dropped once this poll has replaced it, and unlocks: the
        // entry then finds the gate open, at this poll or a later one.
        let mut entered = None;
        until("the entry to enter the unlocked fortress", || {
            match poll_with(entry.as_mut(), &counting) {
                Poll::Ready(visit) => entered = Some(visit.map(drop)),
                Poll::Pending => {}
            }
            entered.is_some()
        });
        entered
    });
    assert_eq!(*unlocked.lock().unwrap(), Some(Ok(())));
    assert_eq!(entered, Some(Ok(())));
}

#[test]
fn a_sharded_unlock_returns_when_the_woken_task_waker_unlocks_the_fortress_as_it_is_dropped() {
    let fortress = Fortress::with_shards(2);
    let (waker, unlocked) = UnlockOnDrop::waker(fortress.guard());
    let guest = fortress.guest();
    let abort = Abort::never();
    let mut entry = pin!(guest.enter_async(&abort));
    assert!(poll_with(entry.as_mut(), &waker).is_pending());
    drop(waker); // the fortress holds the last clone now: waking it drops it
    let guard = fortress.guard();
    let result = within_for(SOON, "unlock", move || guard.unlock());
    assert_eq!(result, Ok(()));
    until("the woken waker to be dropped", || {
        unlocked.lock().unwrap().is_some()
    });
    assert_eq!(*unlocked.lock().unwrap(), Some(Ok(())));
}

#[test]
fn unlock_wakes_every_task_and_does_not_panic_when_one_task_waker_panics_as_it_is_dropped() {
    let fortress = Fortress::new();
    let guest = fortress.guest();
    let abort = Abort::never();
    let (counting, count) = CountingWaker::new();
    let mut first = pin!(guest.enter_async(&abort));
    let mut second = pin!(guest.enter_async(&abort));
    let panicky = Waker::from(Arc::new(PanicOnDrop));
    assert!(poll_with(first.as_mut(), &panicky).is_pending());
    drop(panicky); // the fortress holds the last clone now: waking it drops it
    assert!(poll_with(second.as_mut(), &counting).is_pending());

    let guard = fortress.guard();
    let returned = within_for(SOON, "unlock", move || {
        returns_without_panicking(|| guard.unlock().unwrap())
    });
    assert!(
        returned && count.wakes() == 1,
        "unlock returned normally: {returned}; the other task was woken {} times (want 1)",
        count.wakes()
    );
}

#[test]
fn a_repoll_that_replaces_a_waker_which_panics_as_it_is_dropped_does_not_panic() {
    let fortress = Fortress::new();
    let guest = fortress.guest();
    let abort = Abort::never();
    let mut entry = pin!(guest.enter_async(&abort));
    let panicky = Waker::from(Arc::new(PanicOnDrop));
    assert!(poll_with(entry.as_mut(), &panicky).is_pending());
    common::until_pending(&fortress, Sleepers::Gate); // its waker is stored
    drop(panicky); // the fortress holds the last clone now: replacing it drops it

    let (counting, count) = CountingWaker::new();
    let repolled = catch_unwind(AssertUnwindSafe(|| {
        poll_with(entry.as_mut(), &counting).is_pending()
    }));
    assert_eq!(
        repolled.ok(),
        Some(true),
        "the poll that replaced the panicking waker panicked (or was not pending)"
    );
    // The fortress still works: the new waker is the one woken, and the entry enters.
    fortress.guard().unlock().unwrap();
    assert_eq!(count.wakes(), 1, "the new waker was not woken");
    match poll_with(entry.as_mut(), &counting) {
        Poll::Ready(Ok(visit)) => drop(visit),
        other => panic!("the gate is open, yet the entry gave {other:?}"),
    }
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn dropping_a_pending_aborted_future_whose_waker_panics_as_it_is_dropped_does_not_panic() {
    let abort = Abort::new();
    let mut aborted = Box::pin(abort.aborted());
    let panicky = Waker::from(Arc::new(PanicOnDrop));
    assert!(poll_with(aborted.as_mut(), &panicky).is_pending());
    drop(panicky); // the token holds the last clone now: dropping the future drops it
    assert!(
        returns_without_panicking(move || drop(aborted)),
        "dropping the pending future panicked"
    );
    // The token still fires the others.
    let (counting, count) = CountingWaker::new();
    let mut other = pin!(abort.aborted());
    assert!(poll_with(other.as_mut(), &counting).is_pending());
    abort.abort();
    assert_eq!(count.wakes(), 1, "the other future was not woken");
    assert!(poll_with(other.as_mut(), &counting).is_ready());
}

// ----- The payloads of contained panics are dropped, not leaked -----

/// A panic payload that counts its drops, and may panic as it is dropped.
struct Payload {
    dropped: Arc<AtomicUsize>,
    panics_when_dropped: bool,
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, SeqCst);
        if self.panics_when_dropped && !thread::panicking() {
            panic!("a panic payload panics when dropped (on purpose)");
        }
    }
}

/// A task waker that panics with a new [`Payload`] each time it is woken.
struct PayloadWaker {
    wakes: AtomicUsize,
    dropped: Arc<AtomicUsize>,
    panics_when_dropped: bool,
}

impl PayloadWaker {
    /// The waker, its state, and the count of its payloads dropped so far.
    fn new(panics_when_dropped: bool) -> (Waker, Arc<PayloadWaker>, Arc<AtomicUsize>) {
        let dropped = Arc::new(AtomicUsize::new(0));
        let this = Arc::new(PayloadWaker {
            wakes: AtomicUsize::new(0),
            dropped: Arc::clone(&dropped),
            panics_when_dropped,
        });
        (Waker::from(Arc::clone(&this)), this, dropped)
    }
}

impl Wake for PayloadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
        std::panic::panic_any(Payload {
            dropped: Arc::clone(&self.dropped),
            panics_when_dropped: self.panics_when_dropped,
        });
    }
}

/// Polls a new entry until it waits at the gate with `waker`. The first polls use a
/// waker that does nothing: one of them may spend the thread's cooperative budget,
/// which wakes the waker it is given (outside any isolation: it is the caller's poll).
fn pend_with<F: Future + ?Sized>(mut entry: Pin<&mut F>, waker: &Waker) {
    for _ in 0..2 {
        assert!(poll_with(entry.as_mut(), Waker::noop()).is_pending());
    }
    assert!(poll_with(entry.as_mut(), waker).is_pending());
}

#[test]
fn a_task_waker_that_panics_at_every_wake_leaves_no_panic_payload_behind() {
    // The bug this pins: every contained panic leaked its payload, so a waker that
    // panics at each wake grew the process without bound.
    const ROUNDS: usize = 100;
    let fortress = Fortress::new(); // locked
    let (guard, guest) = (fortress.guard(), fortress.guest());
    let (waker, payload_waker, dropped) = PayloadWaker::new(false);
    let never = Abort::never();
    for round in 0..ROUNDS {
        let mut entry = pin!(guest.enter_async(&never));
        pend_with(entry.as_mut(), &waker);
        assert!(
            returns_without_panicking(|| guard.unlock().unwrap()),
            "round {round}: the waker's panic escaped unlock"
        );
        match poll_with(entry.as_mut(), Waker::noop()) {
            Poll::Ready(Ok(visit)) => drop(visit),
            _ => panic!("round {round}: the woken entry did not go in"),
        }
        guard.lockdown(&never).unwrap();
    }
    assert_eq!(payload_waker.wakes.load(SeqCst), ROUNDS);
    assert_eq!(
        dropped.load(SeqCst),
        ROUNDS,
        "one payload dropped per contained panic"
    );
}

#[test]
fn a_panic_payload_that_panics_as_it_is_dropped_does_not_escape_and_every_other_task_is_woken() {
    let fortress = Fortress::new(); // locked
    let guest = fortress.guest();
    let never = Abort::never();
    let (panicky, payload_waker, dropped) = PayloadWaker::new(true);
    let (counting, count) = CountingWaker::new();
    let mut first = pin!(guest.enter_async(&never));
    let mut second = pin!(guest.enter_async(&never));
    pend_with(first.as_mut(), &panicky);
    pend_with(second.as_mut(), &counting);

    let guard = fortress.guard();
    let returned = within_for(SOON, "unlock", move || {
        returns_without_panicking(|| guard.unlock().unwrap())
    });
    assert_eq!(payload_waker.wakes.load(SeqCst), 1);
    assert_eq!(dropped.load(SeqCst), 1, "the payload's drop was tried");
    assert!(
        returned && count.wakes() == 1,
        "unlock returned normally: {returned}; the other task was woken {} times (want 1)",
        count.wakes()
    );
    assert!(matches!(
        poll_with(second.as_mut(), &counting),
        Poll::Ready(Ok(_))
    ));
}

// ----- Extreme tokens -----

#[test]
fn after_duration_max_does_not_panic_and_has_no_deadline_of_its_own() {
    let forever =
        catch_unwind(|| Abort::after(Duration::MAX)).expect("Abort::after(Duration::MAX) panicked");
    assert_eq!(forever.deadline(), None);
    assert!(!forever.is_aborted());
    assert_eq!(forever.child().deadline(), None);
    // Other deadlines behave as before.
    let (soon, far) = (
        Instant::now() + Duration::from_secs(60),
        Instant::now() + HOUR,
    );
    assert_eq!(Abort::at(soon).child().deadline(), Some(soon));
    assert_eq!(Abort::at(far).with_deadline(soon).deadline(), Some(soon));
    assert_eq!(forever.with_deadline(soon).deadline(), Some(soon));
    assert!(Abort::at(Instant::now()).with_deadline(far).is_aborted());

    // A wait with it waits until it is fired by hand.
    let fortress = Fortress::new();
    let (guest, token) = (fortress.guest(), forever.clone());
    let visitor = thread::spawn(move || guest.visit(|| (), &token));
    common::until_asleep_or(&fortress, Sleepers::Gate, || visitor.is_finished());
    forever.abort();
    let visited = within_for(SOON, "the visit", move || visitor.join().unwrap());
    assert_eq!(visited, Err(Error::Aborted));
}

#[test]
#[cfg_attr(miri, ignore = "a million tokens, in a child process")]
fn a_chain_of_a_million_children_is_made_fired_waited_on_and_dropped_on_a_2_mib_stack() {
    // Too slow under ThreadSanitizer: CI sets this there.
    if std::env::var_os("FORTRESS_SKIP_SLOW").is_some() {
        return;
    }
    // A recursive drop overflows the stack, which aborts the whole process: hence a
    // child process.
    in_own_process(
        "a_chain_of_a_million_children_is_made_fired_waited_on_and_dropped_on_a_2_mib_stack",
        || {
            const DEPTH: usize = 1_000_000;
            const STACK: usize = 2 << 20;
            let small_stack = thread::Builder::new()
                .stack_size(STACK)
                .spawn(|| {
                    let root = Abort::new();
                    let mut leaf = root.child();
                    for _ in 1..DEPTH {
                        leaf = leaf.child();
                    }
                    assert!(!leaf.is_aborted());

                    // A wait with the leaf, woken when the root fires.
                    let fortress = Fortress::new();
                    let (guest, token) = (fortress.guest(), leaf.clone());
                    let visitor = thread::Builder::new()
                        .stack_size(STACK)
                        .spawn(move || guest.visit(|| (), &token))
                        .unwrap();
                    common::until_asleep_or(&fortress, Sleepers::Gate, || visitor.is_finished());
                    root.abort();
                    assert_eq!(visitor.join().unwrap(), Err(Error::Aborted));

                    assert!(leaf.is_aborted());
                    let guest = fortress.guest();
                    assert_eq!(guest.visit(|| (), &leaf), Err(Error::Aborted));
                    drop(root);
                    drop(leaf); // the last clone: the whole chain goes
                })
                .unwrap();
            common::within("the million-token chain", move || {
                small_stack.join().unwrap()
            });
        },
    );
}

// ----- `from_future` sources that misbehave -----

/// Panics whenever it is polled.
struct PanicOnPoll;

impl Future for PanicOnPoll {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        panic!("an abort source panics when polled (on purpose)")
    }
}

#[test]
fn from_future_with_a_source_that_panics_when_polled_returns_and_the_token_fires() {
    let made = within_for(SOON, "from_future", || {
        catch_unwind(|| Abort::from_future(PanicOnPoll)).ok()
    });
    let abort = made.expect("from_future panicked into its caller");
    assert!(fires_soon(&abort), "the token never fired");
}

/// Pending at its first poll (keeping its waker), panics at the next.
struct PanicOnSecondPoll {
    polled: bool,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl Future for PanicOnSecondPoll {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.polled {
            panic!("an abort source panics at its second poll (on purpose)");
        }
        self.polled = true;
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[test]
fn waking_a_from_future_source_that_then_panics_does_not_panic_the_waker_and_the_token_fires() {
    let waker = Arc::new(Mutex::new(None));
    let abort = Abort::from_future(PanicOnSecondPoll {
        polled: false,
        waker: Arc::clone(&waker),
    });
    assert!(!abort.is_aborted());
    // The first poll may run now or a moment later, on a thread of the crate's.
    until("the source's first poll", || {
        waker.lock().unwrap().is_some()
    });
    let waker = waker.lock().unwrap().take().unwrap();
    let returned = within_for(SOON, "the waker", move || {
        returns_without_panicking(|| waker.wake())
    });
    assert!(
        returned,
        "the source's panic went on into the waker's caller"
    );
    assert!(fires_soon(&abort), "the token never fired");
}

/// Wakes itself at every poll and stays pending (until told to stop, so that a test
/// that fails does not leave a thread spinning).
struct SelfWaking {
    polls: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Future for SelfWaking {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.polls.fetch_add(1, SeqCst);
        if !self.stop.load(SeqCst) {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

#[test]
fn from_future_with_a_source_that_wakes_itself_at_every_poll_returns_and_can_be_fired_and_dropped()
{
    let (polls, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let source = SelfWaking {
        polls: Arc::clone(&polls),
        stop: Arc::clone(&stop),
    };
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(Abort::from_future(source));
    });
    let made = rx.recv_timeout(SOON);
    stop.store(true, SeqCst); // whatever happened, the source stops waking itself
    let abort = made.unwrap_or_else(|_| {
        panic!(
            "from_future still polling after {SOON:?} ({} polls)",
            polls.load(SeqCst)
        )
    });
    until("the source's first poll", || polls.load(SeqCst) >= 1);
    let fired = abort.clone();
    within_for(SOON, "abort", move || fired.abort());
    assert!(abort.is_aborted());
    within_for(SOON, "dropping the token", move || drop(abort));
}

/// What [`UnderLock`] and [`WakesDuringPoll`] share with the thread that readies them.
#[derive(Default)]
struct Shared {
    ready: bool,
    waker: Option<Waker>,
}

/// Ready once `ready` is set; its poll locks the mutex that its waker's caller holds.
struct UnderLock(Arc<Mutex<Shared>>);

impl Future for UnderLock {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut shared = self.0.lock().unwrap();
        if shared.ready {
            return Poll::Ready(());
        }
        shared.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[test]
fn a_from_future_source_woken_under_the_lock_its_own_poll_takes_does_not_deadlock_and_fires() {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let abort = LeakOnPanic(Some(Abort::from_future(UnderLock(Arc::clone(&shared)))));
    assert!(!abort.is_aborted());
    // The first poll may run now or a moment later, on a thread of the crate's.
    until("the source's first poll", || {
        shared.lock().unwrap().waker.is_some()
    });
    within_for(SOON, "waking the source under its lock", move || {
        let mut locked = shared.lock().unwrap();
        locked.ready = true;
        let waker = locked.waker.take().unwrap();
        waker.wake(); // still holding the lock
        drop(locked);
    });
    assert!(fires_soon(&abort), "the token never fired");
}

/// At its first poll, starts a thread that readies it and wakes it, and returns
/// `Pending` only once that wake has happened: the wake lands during the poll.
struct WakesDuringPoll {
    shared: Arc<Mutex<Shared>>,
    first: bool,
}

impl Future for WakesDuringPoll {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut shared = self.shared.lock().unwrap();
            if shared.ready {
                return Poll::Ready(());
            }
            shared.waker = Some(cx.waker().clone());
        }
        if std::mem::take(&mut self.first) {
            let shared = Arc::clone(&self.shared);
            let (woke, has_woken) = mpsc::channel();
            thread::spawn(move || {
                let waker = {
                    let mut shared = shared.lock().unwrap();
                    shared.ready = true;
                    shared.waker.take()
                };
                if let Some(waker) = waker {
                    waker.wake();
                }
                let _ = woke.send(());
            });
            // Bounded: a wake that blocks until this poll ends must not hang the test.
            let _ = has_woken.recv_timeout(SOON);
        }
        Poll::Pending
    }
}

#[test]
fn a_wake_that_arrives_while_a_from_future_source_is_being_polled_is_not_lost() {
    let source = WakesDuringPoll {
        shared: Arc::new(Mutex::new(Shared::default())),
        first: true,
    };
    let abort = within_for(SOON, "from_future", move || Abort::from_future(source));
    assert!(fires_soon(&abort), "the wake during the poll was lost");
}

/// A source that, when polled, drops the last handle of its own token if the test has
/// put it where the poll finds it, and otherwise hands its waker to the test. It keeps
/// its waker, as real futures do, so a source the crate forgets is never dropped. It
/// counts its drops, and the polls it gets after it has dropped its token.
struct DropsItsOwnToken {
    token: Arc<Mutex<Option<Abort>>>,
    waker: Arc<Mutex<Option<Waker>>>,
    kept: Option<Waker>,
    token_dropped: Arc<AtomicBool>,
    polls_after: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
}

impl Future for DropsItsOwnToken {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.token_dropped.load(SeqCst) {
            self.polls_after.fetch_add(1, SeqCst);
        }
        self.kept = Some(cx.waker().clone());
        let token = self.token.lock().unwrap().take();
        match token {
            Some(token) => {
                drop(token); // the last handle: the token is gone
                self.token_dropped.store(true, SeqCst);
            }
            None => *self.waker.lock().unwrap() = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for DropsItsOwnToken {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

#[test]
fn a_from_future_source_that_drops_its_own_token_while_polled_is_dropped_and_never_polled_again() {
    let token = Arc::new(Mutex::new(None));
    let waker = Arc::new(Mutex::new(None::<Waker>));
    let token_dropped = Arc::new(AtomicBool::new(false));
    let polls_after = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let abort = Abort::from_future(DropsItsOwnToken {
        token: Arc::clone(&token),
        waker: Arc::clone(&waker),
        kept: None,
        token_dropped: Arc::clone(&token_dropped),
        polls_after: Arc::clone(&polls_after),
        drops: Arc::clone(&drops),
    });
    // The only handle left.
    *token.lock().unwrap() = Some(abort);
    // Its first poll may have run already, and found no token: wake it for another.
    until("the source to drop its own token", || {
        let woken = waker.lock().unwrap().take();
        if let Some(woken) = woken {
            woken.wake();
        }
        token_dropped.load(SeqCst)
    });
    let start = Instant::now();
    while drops.load(SeqCst) == 0 {
        assert_eq!(
            polls_after.load(SeqCst),
            0,
            "the source was polled again after its token was gone"
        );
        assert!(
            start.elapsed() < SOON,
            "the source was not dropped within {SOON:?} of dropping its own token"
        );
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(
        polls_after.load(SeqCst),
        0,
        "the source was polled after its token was gone"
    );
}

// ----- occupy -----

#[test]
fn occupy_of_an_open_fortress_with_a_token_fired_before_the_call_starts_the_worker() {
    let fortress = common::unlocked();
    let started = AtomicBool::new(false);
    let start = || {
        started.store(true, SeqCst);
        Ok::<_, Error>(Sleeper::default())
    };
    let got = occupy(&fortress.guest(), start, &common::fired());
    assert!(started.load(SeqCst), "start was never called");
    let worker = match got {
        Ok(worker) => worker,
        Err(err) => panic!("occupy did not need to wait, yet failed: {err:?}"),
    };
    assert!(worker.is_visiting());
    assert!(!worker.was_killed(), "the started worker was killed");
    assert_eq!(fortress.guests(), 1);
    worker.kill();
    worker.wait().unwrap();
    assert_eq!(fortress.guests(), 0);
}

#[test]
fn occupy_kills_the_worker_and_answers_aborted_when_the_token_fires_while_start_runs() {
    let fortress = common::unlocked();
    let abort = Abort::new();
    let worker = Arc::new(Mutex::new(None::<Arc<Sleeper>>));
    let start = || {
        let sleeper = Arc::new(Sleeper::default());
        *worker.lock().unwrap() = Some(Arc::clone(&sleeper));
        abort.abort();
        Ok::<_, Error>(SharedSleeper(sleeper))
    };
    let guest = fortress.guest();
    let got = occupy(&guest, start, &abort);
    assert_eq!(got.err(), Some(OccupyError::Fortress(Error::Aborted)));
    let sleeper = worker
        .lock()
        .unwrap()
        .take()
        .expect("start was never called");
    assert!(sleeper.was_killed(), "the worker was not killed");
    assert_eq!(fortress.guests(), 0, "the visit did not end");
}
