//! Shuttle scenarios: randomized schedules of one fortress under a crowd of threads
//! and tasks that use every operation at once, with adversarial user code. Run with
//!
//!     RUSTFLAGS="--cfg shuttle" CARGO_TARGET_DIR=target/shuttle \
//!         cargo test --release --lib shuttle_
//!
//! Where the loom models (`loom_*.rs`) explore every interleaving of two or three
//! threads, these run tens of thousands of random schedules of one scenario with ten
//! threads and ten tasks, on the single word and on two slots: three guards locking
//! down and unlocking (aborted by a token another thread fires, by a deadline the clock
//! thread passes, through a parent token, and as a task whose waker panics), a
//! `lockdown_async` dropped after its first poll, guests visiting (threads with
//! `visit`, `enter` and `try_enter`; tasks with `enter_async`, some dropped while
//! pending) with tokens that fire by `abort`, by a deadline, by a waker, by a
//! `from_future` source that wakes itself during its poll and by one whose poll
//! panics, many of them sharing one token; task wakers that panic or re-enter the
//! fortress (`try_enter`, `unlock`, a closing `lockdown_async`, `abort`); `wait` and
//! `wait_async`; and a `kill` near the end. Under `--cfg shuttle` the crate's
//! primitives are shuttle's (`sync.rs`), its futex is a mutex and a condvar that
//! really block and sometimes wake spuriously (`notify.rs`), and the deadline timer
//! and the source thread are played by scenario threads (`timer::fire_due` after
//! `clock::advance`, `source::run_queued`).
//!
//! What fails a schedule:
//! * a visit that overlaps an exclusive phase: the visits count themselves in
//!   `World::inside` and check `World::exclusive`, which a guard sets once its
//!   lockdown returned `Ok` (and then checks `inside`);
//! * a hang: every thread and task blocked is shuttle's "deadlock" (a lost wake-up, a
//!   waker run under a lock of the crate's), and a schedule longer than `MAX_STEPS`
//!   fails too;
//! * a panic that escapes: from a waker or a source (they panic on purpose, with the
//!   payload [`OnPurpose`], and the crate must contain them: one that reaches a
//!   scenario thread or task fails it with [`ESCAPED`]), from a re-entrant waker that
//!   the crate calls while it holds a lock of its own (shuttle's mutex asserts that a
//!   task never locks a mutex it holds; the scenario records it and fails at the end),
//!   or from an assertion;
//! * at the end: a visit or a waker left behind (`Fortress::guests`, the task sets'
//!   entries), a wait still registered with a token (`Abort::links`), a deadline left
//!   in the timer.
//!
//! # Schedules, seeds and replay
//!
//! Each scenario runs `FORTRESS_SHUTTLE_ITERATIONS` schedules (default
//! [`DEFAULT_ITERATIONS`]) under shuttle's random scheduler and as many under its PCT
//! scheduler (depth 3). The seed is printed at the start (`--nocapture` shows it, and
//! so does a failure); `FORTRESS_SHUTTLE_SEED=<seed>` runs the same schedules again.
//! A failing schedule is printed by shuttle as an encoded string; to replay exactly
//! that schedule, run the failing test alone with it:
//!
//!     FORTRESS_SHUTTLE_REPLAY='<the string>' RUSTFLAGS="--cfg shuttle" \
//!         CARGO_TARGET_DIR=target/shuttle cargo test --release --lib \
//!         models::shuttle_models::shuttle_single_word -- --exact --nocapture
//!
//! which calls `shuttle::Runner` with `ReplayScheduler::new_from_encoded` (what
//! `shuttle::replay(scenario, "<the string>")` does, with this module's config).
//!
//! At its end each test prints (shown with `--nocapture`, and on a failure) its seed,
//! its time and a tally of what its schedules did (lockdowns that succeeded, were
//! aborted or shut down, wakers that panicked or re-entered, entries dropped while
//! pending...), so a change that stops the scenario from reaching a path shows there.
//!
//! The wakers and sources that panic on purpose do it with the payload [`OnPurpose`];
//! a panic hook installed once keeps those quiet and reports every other panic as
//! usual (shuttle's own hook, which prints the failing schedule, runs inside it).

use crate::abort::{source, timer};
use crate::sync::clock;
use crate::{Abort, Error, Fortress, Guard, Guest, Worker};
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use shuttle::scheduler::{PctScheduler, RandomScheduler, ReplayScheduler, Scheduler};
use shuttle::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use shuttle::sync::Mutex;
use shuttle::{future, thread};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Wake;
use std::time::Duration;

/// Schedules per scheduler and scenario when `FORTRESS_SHUTTLE_ITERATIONS` is not set:
/// with two scenarios and two schedulers, 4 x this in all. A schedule takes 1 to 2 ms
/// in release, and the two scenarios run in parallel: about half a minute on two cores.
pub(crate) const DEFAULT_ITERATIONS: usize = 10_000;

/// A schedule that takes more steps than this fails (a livelock, or a wait loop that
/// spins without end). The scenarios take a few thousand.
const MAX_STEPS: usize = 200_000;

/// The deadline of the tokens made with `Abort::after`; the clock thread moves the
/// model clock by this much.
const TIMEOUT: Duration = Duration::from_millis(10);

/// The payload of every panic a scenario causes on purpose.
struct OnPurpose;

/// The failure when a panic on purpose reaches a caller of the crate.
const ESCAPED: &str = "a waker or a source panicked on purpose, and the panic escaped \
                       from the crate into its caller";

/// Runs `f`, failing clearly if a panic on purpose escapes into it (the panic hook
/// keeps those quiet).
fn contained<R>(f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(out) => out,
        Err(payload) if payload.is::<OnPurpose>() => panic!("{ESCAPED}"),
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// A model thread whose body is `contained`.
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
    thread::spawn(move || contained(f))
}

/// A future whose every poll is `contained`.
struct Contained<F>(Pin<Box<F>>);

impl<F: Future> Future for Contained<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        contained(|| this.0.as_mut().poll(cx))
    }
}

/// A model task, `contained`.
fn spawn_task<F>(fut: F) -> future::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    future::spawn(Contained(Box::pin(fut)))
}

/// A model task that need not be `Send` (it holds a guard's turn across an await).
fn spawn_local_task<F>(fut: F) -> future::JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    future::spawn_local(Contained(Box::pin(fut)))
}

/// What the schedules did, summed over a test's schedules and printed at its end, to
/// show that the interesting paths are taken. Plain thread-locals outside the model:
/// all the schedules of a test run on the test's own thread.
#[derive(Clone, Copy)]
enum Event {
    Schedule,
    Visit,
    LockdownOk,
    LockdownAborted,
    LockdownShutdown,
    EntryAborted,
    EntryShutdown,
    WakerPanicked,
    WakerReentered,
    WakerUnlocked,
    WakerUnlockShutdown,
    EntryDroppedPending,
    LockdownDroppedPending,
}

const EVENTS: [(Event, &str); 13] = [
    (Event::Schedule, "schedules"),
    (Event::Visit, "visits"),
    (Event::LockdownOk, "lockdowns ok"),
    (Event::LockdownAborted, "lockdowns aborted"),
    (Event::LockdownShutdown, "lockdowns shut down"),
    (Event::EntryAborted, "entries aborted"),
    (Event::EntryShutdown, "entries shut down"),
    (Event::WakerPanicked, "wakers panicked"),
    (Event::WakerReentered, "wakers re-entered"),
    (Event::WakerUnlocked, "wakers unlocked"),
    (
        Event::WakerUnlockShutdown,
        "wakers unlocking after the kill",
    ),
    (Event::EntryDroppedPending, "entries dropped pending"),
    (Event::LockdownDroppedPending, "lockdowns dropped pending"),
];

std::thread_local!(static TALLY: [core::cell::Cell<u64>; 13] = Default::default());

fn tally(event: Event) {
    TALLY.with(|tally| tally[event as usize].set(tally[event as usize].get() + 1));
}

/// The tally so far, as text; resets it.
fn tallied() -> String {
    TALLY.with(|tally| {
        EVENTS
            .iter()
            .map(|&(event, name)| format!("{name} {}", tally[event as usize].take()))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// What all the threads and tasks of one schedule share.
struct World {
    fortress: Fortress,
    /// Visits running their body right now.
    inside: AtomicU64,
    /// A guard is in its exclusive phase (its lockdown returned `Ok`, it has not
    /// unlocked yet).
    exclusive: AtomicBool,
    /// Held by a guard from its lockdown to its unlock, so that one guard's unlock
    /// never ends another's exclusive phase ("the last operation decides": two guards
    /// that do not take turns have no exclusive phase to check). Wakers that unlock
    /// take it with `try_lock`.
    turns: Mutex<()>,
    /// Why a re-entrant waker's call into the fortress panicked (the crate called it
    /// while holding a lock of its own, say), if one did. Checked at the end. A std
    /// mutex: it adds no scheduling point.
    unexpected: std::sync::Mutex<Option<&'static str>>,
}

impl World {
    fn new(fortress: Fortress) -> Arc<World> {
        Arc::new(World {
            fortress,
            inside: AtomicU64::new(0),
            exclusive: AtomicBool::new(false),
            turns: Mutex::new(()),
            unexpected: std::sync::Mutex::new(None),
        })
    }

    /// The body of every visit: it must not overlap an exclusive phase.
    fn body(&self) {
        tally(Event::Visit);
        self.inside.fetch_add(1, SeqCst);
        assert!(
            !self.exclusive.load(SeqCst),
            "a visit started during an exclusive phase"
        );
        thread::yield_now();
        assert!(
            !self.exclusive.load(SeqCst),
            "an exclusive phase started during a visit"
        );
        self.inside.fetch_sub(1, SeqCst);
    }

    /// A guard's exclusive phase, after its lockdown returned `Ok`.
    fn exclusive_phase(&self) {
        self.exclusive.store(true, SeqCst);
        assert_eq!(
            self.inside.load(SeqCst),
            0,
            "a lockdown returned with visits inside"
        );
        thread::yield_now();
        assert_eq!(
            self.inside.load(SeqCst),
            0,
            "a visit started during an exclusive phase"
        );
        self.exclusive.store(false, SeqCst);
    }

    /// What a guard does with the result of its lockdown, while it holds `turns`:
    /// the exclusive phase if it succeeded, then the unlock. `false` once the fortress
    /// is shut down.
    fn after_lockdown(&self, guard: &Guard, locked: Result<(), Error>) -> bool {
        match locked {
            Ok(()) => {
                tally(Event::LockdownOk);
                self.exclusive_phase()
            }
            Err(Error::Aborted) => {
                tally(Event::LockdownAborted);
                assert!(self.fortress.is_locked(), "an aborted lockdown still locks")
            }
            Err(Error::Shutdown) => {
                tally(Event::LockdownShutdown);
                return false;
            }
        }
        match guard.unlock() {
            Ok(()) => true,
            Err(error) => {
                assert_eq!(error, Error::Shutdown);
                false
            }
        }
    }

    /// A guard's turn. Poisoning is ignored: a panic that poisons it has failed the
    /// schedule already, and is the one to report.
    fn turn(&self) -> shuttle::sync::MutexGuard<'_, ()> {
        self.turns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One lockdown-to-unlock cycle of a guard thread.
    fn guard_cycle(&self, guard: &Guard, abort: &Abort) -> bool {
        let _turn = self.turn();
        let locked = guard.lockdown(abort);
        self.after_lockdown(guard, locked)
    }
}

/// What a task's waker does besides waking the task.
#[derive(Clone)]
enum Mischief {
    /// Wakes the task, then panics.
    Panic,
    /// Enters the fortress with `try_enter` (and leaves at once), then wakes the task.
    TryEnter,
    /// Unlocks the fortress (if no guard is in a cycle), then wakes the task.
    Unlock,
    /// Fires a token, then wakes the task.
    Fire(Abort),
    /// Closes the gate (a `lockdown_async` polled once and dropped), then wakes the
    /// task.
    Close,
}

/// A task's waker wrapped in mischief.
struct Adversary {
    task: Waker,
    mischief: Mischief,
    world: Arc<World>,
}

impl Wake for Adversary {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Mischief::Panic = self.mischief {
            tally(Event::WakerPanicked);
            self.task.wake_by_ref();
            std::panic::panic_any(OnPurpose);
        }
        // The crate calls wakers with no lock of its own held: re-entering must work.
        // A panic here (shuttle's "tried to acquire a Mutex it already holds", say)
        // has been reported by the panic hook with the schedule; the end check fails.
        if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| self.reenter())) {
            let why = if payload.is::<OnPurpose>() {
                ESCAPED
            } else {
                "a re-entrant waker's call into the fortress panicked (see the panic above)"
            };
            let mut unexpected = self.world.unexpected.lock().unwrap();
            unexpected.get_or_insert(why);
        }
        self.task.wake_by_ref();
    }
}

impl Adversary {
    fn reenter(&self) {
        tally(Event::WakerReentered);
        let world = &self.world;
        match &self.mischief {
            Mischief::Panic => unreachable!(),
            Mischief::TryEnter => {
                if let Some(visit) = world.fortress.guest().try_enter() {
                    world.inside.fetch_add(1, SeqCst);
                    assert!(
                        !world.exclusive.load(SeqCst),
                        "a visit during an exclusive phase"
                    );
                    world.inside.fetch_sub(1, SeqCst);
                    drop(visit);
                }
            }
            Mischief::Unlock => {
                if let Ok(_turn) = world.turns.try_lock() {
                    match world.fortress.guard().unlock() {
                        Ok(()) => tally(Event::WakerUnlocked),
                        Err(error) => {
                            assert_eq!(error, Error::Shutdown);
                            tally(Event::WakerUnlockShutdown);
                        }
                    }
                }
            }
            Mischief::Fire(abort) => abort.abort(),
            Mischief::Close => {
                let guard = world.fortress.guard();
                let mut lockdown = core::pin::pin!(guard.lockdown_async(Abort::NEVER));
                let polled = lockdown
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()));
                assert!(matches!(
                    polled,
                    Poll::Pending | Poll::Ready(Ok(()) | Err(Error::Shutdown))
                ));
            }
        }
    }
}

/// Polls `fut` with its task's waker wrapped in `mischief`.
struct Mischievous<F> {
    fut: Pin<Box<F>>,
    mischief: Mischief,
    world: Arc<World>,
}

impl<F> Mischievous<F> {
    fn new(world: &Arc<World>, mischief: Mischief, fut: F) -> Mischievous<F> {
        Mischievous {
            fut: Box::pin(fut),
            mischief,
            world: Arc::clone(world),
        }
    }
}

impl<F: Future> Future for Mischievous<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let waker = Waker::from(Arc::new(Adversary {
            task: cx.waker().clone(),
            mischief: this.mischief.clone(),
            world: Arc::clone(&this.world),
        }));
        this.fut.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

/// Polls `fut` at most `polls` times, waking its task in between; gives up (and drops
/// `fut`, pending) if it is still pending then: `None`.
struct Impatient<F> {
    fut: Option<Pin<Box<F>>>,
    polls: usize,
}

impl<F> Impatient<F> {
    fn new(polls: usize, fut: F) -> Impatient<F> {
        assert!(polls > 0);
        Impatient {
            fut: Some(Box::pin(fut)),
            polls,
        }
    }
}

impl<F: Future> Future for Impatient<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let this = self.get_mut();
        let fut = this.fut.as_mut().expect("polled after it completed");
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            this.fut = None;
            return Poll::Ready(Some(out));
        }
        this.polls -= 1;
        if this.polls == 0 {
            this.fut = None; // dropped while pending
            return Poll::Ready(None);
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A one-shot that a thread fires; a `from_future` source waits for it.
#[derive(Clone, Default)]
struct Shot(Arc<Mutex<(bool, Option<Waker>)>>);

impl Shot {
    fn fire(&self) {
        let waker = {
            let mut shot = self.0.lock().unwrap();
            shot.0 = true;
            shot.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A source that waits for a shot, and wakes itself from inside its first `wakes`
/// polls (so the source thread polls it again while it is being polled).
struct SelfWaking {
    shot: Shot,
    wakes: usize,
}

impl Future for SelfWaking {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        {
            let mut shot = this.shot.0.lock().unwrap();
            if shot.0 {
                return Poll::Ready(());
            }
            shot.1 = Some(cx.waker().clone());
        }
        if this.wakes > 0 {
            this.wakes -= 1;
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

/// A source whose poll panics: its token fires.
struct PanicsWhenPolled;

impl Future for PanicsWhenPolled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        std::panic::panic_any(OnPurpose)
    }
}

/// A visitor thread's visit: `Ok` ran the body.
fn visit(world: &World, guest: &Guest, abort: &Abort) -> Result<(), Error> {
    let visited = guest.visit(|| world.body(), abort);
    if let Err(error) = visited {
        entry_failed(error);
    }
    visited
}

fn entry_failed(error: Error) {
    match error {
        Error::Aborted => tally(Event::EntryAborted),
        Error::Shutdown => tally(Event::EntryShutdown),
    }
}

/// The scenario: one fortress, everything at once. `make` builds the fortress.
fn scenario(make: fn() -> Fortress) {
    tally(Event::Schedule);
    let world = World::new(make());
    let fortress = &world.fortress;
    fortress.guard().unlock().unwrap();

    // The tokens. Made before the clock thread starts, so that its move of the clock
    // passes the deadlines.
    let fired_by_aborter = Abort::new();
    let parent = Abort::new();
    let deadline = Abort::after(TIMEOUT);
    let visitor_deadline = Abort::after(TIMEOUT);
    let fired_by_a_waker = Abort::new();
    // Never fired; shared by many waits at once (each registers under its own key).
    let shared = Abort::new();
    let shot = Shot::default();
    let self_waking = Abort::from_future(SelfWaking {
        shot: shot.clone(),
        wakes: 2,
    });
    let panicking_source = Abort::from_future(PanicsWhenPolled);

    let mut threads = Vec::new();
    let mut tasks = Vec::new();

    // Guard 1: a lockdown that the aborter may cut short, then one that waits.
    let (w, abort) = (Arc::clone(&world), fired_by_aborter.clone());
    threads.push(spawn(move || {
        let guard = w.fortress.guard();
        if w.guard_cycle(&guard, &abort) {
            w.guard_cycle(&guard, &Abort::never());
        }
    }));

    // Guard 2: a lockdown with a deadline that the clock thread passes, then one on a
    // child of a token the aborter fires.
    let (w, abort, child) = (Arc::clone(&world), deadline.clone(), parent.child());
    threads.push(spawn(move || {
        let guard = w.fortress.guard();
        if w.guard_cycle(&guard, &abort) {
            w.guard_cycle(&guard, &child);
        }
    }));

    // Guard 3, a task: lockdown_async with a waker that panics, then the unlock.
    let w = Arc::clone(&world);
    tasks.push(spawn_local_task(async move {
        let guard = w.fortress.guard();
        let _turn = w.turn();
        let locked =
            Mischievous::new(&w, Mischief::Panic, guard.lockdown_async(Abort::NEVER)).await;
        w.after_lockdown(&guard, locked);
    }));

    // A lockdown_async dropped after its first poll: the gate stays closed until a
    // guard (or a waker) unlocks it.
    let w = Arc::clone(&world);
    tasks.push(spawn_local_task(async move {
        let guard = w.fortress.guard();
        let abort = Abort::new();
        let polled = Impatient::new(1, guard.lockdown_async(&abort)).await;
        if polled.is_none() {
            tally(Event::LockdownDroppedPending);
        }
        assert!(matches!(
            polled,
            None | Some(Ok(())) | Some(Err(Error::Shutdown))
        ));
        assert_eq!(
            abort.links(),
            (0, 0),
            "a dropped lockdown left its wait registered"
        );
    }));

    // Visitor threads.
    let (w, abort) = (Arc::clone(&world), shared.clone());
    threads.push(spawn(move || {
        let guest = w.fortress.guest();
        for _ in 0..2 {
            if visit(&w, &guest, &abort) == Err(Error::Shutdown) {
                return;
            }
        }
        let entered = guest.try_enter();
        if let Some(visit) = entered {
            w.body();
            drop(visit);
        }
    }));
    let (w, by_waker, by_deadline) = (
        Arc::clone(&world),
        fired_by_a_waker.clone(),
        visitor_deadline.clone(),
    );
    threads.push(spawn(move || {
        let guest = w.fortress.guest();
        match guest.enter(&by_waker) {
            Ok(visit) => {
                w.body();
                drop(visit);
            }
            Err(error) => entry_failed(error),
        }
        let _ = visit(&w, &guest, &by_deadline);
    }));
    let (w, by_source, by_panic) = (
        Arc::clone(&world),
        self_waking.clone(),
        panicking_source.clone(),
    );
    threads.push(spawn(move || {
        let guest = w.fortress.guest();
        let _ = visit(&w, &guest, &by_source);
        let _ = visit(&w, &guest, &by_panic);
    }));

    // Visitor tasks, each with a waker that misbehaves.
    let mischiefs = [
        Mischief::Panic,
        Mischief::TryEnter,
        Mischief::Unlock,
        Mischief::Fire(fired_by_a_waker.clone()),
        Mischief::Close,
    ];
    for mischief in mischiefs {
        let (w, abort) = (Arc::clone(&world), shared.clone());
        tasks.push(spawn_task(async move {
            let guest = w.fortress.guest();
            for _ in 0..3 {
                let entered =
                    Mischievous::new(&w, mischief.clone(), guest.enter_async(&abort)).await;
                match entered {
                    Ok(visit) => {
                        w.body();
                        drop(visit);
                    }
                    Err(error) => {
                        assert_eq!(error, Error::Shutdown, "nobody fires this token");
                        entry_failed(error);
                        break;
                    }
                }
            }
        }));
    }

    // Entries dropped while pending (after one poll, and after three).
    for polls in [1, 3] {
        let w = Arc::clone(&world);
        tasks.push(spawn_task(async move {
            let guest = w.fortress.guest();
            let abort = Abort::new();
            let entered = Mischievous::new(
                &w,
                Mischief::TryEnter,
                Impatient::new(polls, guest.enter_async(&abort)),
            )
            .await;
            match entered {
                Some(Ok(visit)) => {
                    w.body();
                    drop(visit);
                }
                Some(Err(error)) => entry_failed(error),
                None => tally(Event::EntryDroppedPending),
            }
            assert_eq!(
                abort.links(),
                (0, 0),
                "a dropped entry left its wait registered"
            );
        }));
    }

    // `wait_async` and `wait`, until the kill and the last visit.
    let w = Arc::clone(&world);
    tasks.push(spawn_task(async move {
        w.fortress.wait_async().await;
        // Not `guests()`: a guest bouncing off the killed gate counts for an instant.
        assert_eq!(
            w.inside.load(SeqCst),
            0,
            "wait_async returned during a visit"
        );
    }));
    let w = Arc::clone(&world);
    threads.push(spawn(move || {
        w.fortress.wait().unwrap();
        assert_eq!(w.inside.load(SeqCst), 0, "wait returned during a visit");
    }));

    // The aborter: fires the first guard's token, the parent of the second's, and the
    // shot of the self-waking source.
    let (first, second, shot) = (fired_by_aborter.clone(), parent.clone(), shot.clone());
    let aborter = spawn(move || {
        first.abort();
        thread::yield_now();
        second.abort();
        shot.fire();
    });

    // The timer thread's stand-in: the clock passes the deadlines, then the due
    // tokens fire.
    let clock_thread = spawn(|| {
        thread::yield_now();
        clock::advance(TIMEOUT);
        timer::fire_due();
    });

    // The source thread's stand-in: polls what is queued, twice (the self-waking
    // source queues itself again from inside its poll).
    let source_thread = spawn(|| {
        source::run_queued();
        thread::yield_now();
        source::run_queued();
    });

    // Near the end: the aborter and the clock are done; the sources run once more
    // (the shot's wake-up queued the self-waking source), then the kill.
    aborter.join().unwrap();
    clock_thread.join().unwrap();
    source_thread.join().unwrap();
    source::run_queued();
    thread::yield_now();
    fortress.kill();

    for thread in threads {
        thread.join().unwrap();
    }
    for task in tasks {
        future::block_on(task).unwrap();
    }
    fortress.wait().unwrap();

    // Everything returns to zero.
    if let Some(why) = *world.unexpected.lock().unwrap() {
        panic!("{why}");
    }
    assert_eq!(world.inside.load(SeqCst), 0);
    assert_eq!(fortress.guests(), 0, "a visit was left behind");
    assert_eq!(fortress.gate.task_slots().0, 0, "a waker was left behind");
    for abort in [
        &fired_by_aborter,
        &parent,
        &deadline,
        &visitor_deadline,
        &fired_by_a_waker,
        &shared,
        &self_waking,
        &panicking_source,
    ] {
        assert_eq!(
            abort.links(),
            (0, 0),
            "a wait is still registered with {abort:?}"
        );
    }
    assert!(
        panicking_source.is_aborted(),
        "a source that panics counts as completed"
    );
    drop((
        fired_by_aborter,
        parent,
        deadline,
        visitor_deadline,
        fired_by_a_waker,
        shared,
        self_waking,
        panicking_source,
    ));
    #[cfg(feature = "internals")]
    assert_eq!(timer::pending(), 0, "a deadline was left in the timer");
}

fn single_word() -> Fortress {
    Fortress::new()
}

fn two_shards() -> Fortress {
    Fortress::with_shards(2)
}

#[cfg(feature = "read-mostly")]
fn read_mostly() -> Fortress {
    let fortress = Fortress::holding_with((), crate::Layout::ReadMostly);
    assert!(
        crate::read_mostly_barrier().is_some(),
        "the scenario runs the counts"
    );
    fortress
}

/// Keeps the panics of [`OnPurpose`] quiet; every other panic is reported by the hook
/// that was there (shuttle's, which prints the failing schedule, then the default).
fn quiet_on_purpose() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Shuttle installs its hook at its first run: run once, then wrap it.
        shuttle::check_random(|| {}, 1);
        let reported = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<OnPurpose>() {
                reported(info);
            }
        }));
    });
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a valid value")),
    )
}

fn config() -> shuttle::Config {
    let mut config = shuttle::Config::new();
    // The warnings say that shuttle's atomics are sequentially consistent whatever
    // the ordering (loom checks the orderings) and that model statics are dropped at
    // the end of each execution (they are meant to be).
    config.silence_warnings = true;
    config.max_steps = shuttle::MaxSteps::FailAfter(MAX_STEPS);
    config
}

fn run(scheduler: impl Scheduler + 'static, f: impl Fn() + Send + Sync + 'static) -> usize {
    shuttle::Runner::new(scheduler, config()).run(f)
}

/// Runs `scenario(make)` under the random and the PCT scheduler (or replays one
/// schedule: see the module docs).
fn check(name: &str, make: fn() -> Fortress) {
    quiet_on_purpose();
    if let Some(schedule) = env::<String>("FORTRESS_SHUTTLE_REPLAY") {
        eprintln!("shuttle {name}: replaying the schedule of FORTRESS_SHUTTLE_REPLAY");
        run(ReplayScheduler::new_from_encoded(&schedule), move || {
            contained(|| scenario(make))
        });
        return;
    }
    let iterations = env("FORTRESS_SHUTTLE_ITERATIONS").unwrap_or(DEFAULT_ITERATIONS);
    let seed = env("FORTRESS_SHUTTLE_SEED").unwrap_or_else(|| {
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one(std::time::SystemTime::now())
    });
    eprintln!(
        "shuttle {name}: {iterations} random and {iterations} PCT schedules, \
         FORTRESS_SHUTTLE_SEED={seed}"
    );
    let started = std::time::Instant::now();
    let ran = std::panic::catch_unwind(|| {
        let random = run(
            RandomScheduler::new_from_seed(seed, iterations),
            move || contained(|| scenario(make)),
        );
        let pct = run(
            PctScheduler::new_from_seed(seed, 3, iterations),
            move || contained(|| scenario(make)),
        );
        random + pct
    });
    let verdict = match &ran {
        Ok(schedules) => format!("{schedules} schedules passed"),
        Err(_) => "FAILED in the last of these schedules".to_owned(),
    };
    eprintln!(
        "shuttle {name}: {verdict}, after {:.1?} (FORTRESS_SHUTTLE_SEED={seed}; {})",
        started.elapsed(),
        tallied()
    );
    if let Err(panic) = ran {
        std::panic::resume_unwind(panic);
    }
}

/// The scenario on the single state word.
#[test]
fn shuttle_single_word() {
    check("shuttle_single_word", single_word);
}

/// The scenario on a fortress with two guest slots: the passes over the slots run
/// under their mutex, the wakers after it.
#[test]
fn shuttle_two_shards() {
    check("shuttle_two_shards", two_shards);
}

/// The scenario on a read-mostly fortress: per-thread counts (each shuttle thread has
/// its own slot), scans under the pass, leavers that wake the flagged scanners.
#[cfg(feature = "read-mostly")]
#[test]
fn shuttle_read_mostly() {
    check("shuttle_read_mostly", read_mostly);
}
