//! Shuttle scenarios: randomized schedules of one fortress under a crowd of threads
//! and tasks that use every operation at once, with adversarial user code. Run with
//!
//!     RUSTFLAGS="--cfg shuttle" CARGO_TARGET_DIR=target/shuttle \
//!         cargo test --release --lib shuttle_
//!
//! Where the loom models (`loom_*.rs`) explore every interleaving of two or three
//! threads, these run thousands of random schedules of about twenty threads and tasks:
//! guards locking down (aborted by a token, by a deadline, as a task with a panicking
//! waker), guests visiting (threads and tasks, some dropped while pending), task
//! wakers that panic or re-enter the fortress, `from_future` sources that wake
//! themselves or panic, and a `kill` near the end. Under `--cfg shuttle` the crate's
//! primitives are shuttle's (`sync.rs`), its futex is a mutex and a condvar that really
//! block (`notify.rs`), and the deadline timer and the source thread are played by
//! scenario threads (`timer::fire_due`, `source::run_queued`).
//!
//! What fails a schedule:
//! * a visit that overlaps an exclusive phase: the visits count themselves in
//!   `World::inside` and check `World::exclusive`, which a guard sets once its
//!   lockdown returned `Ok` (and then checks `inside`);
//! * a hang: every thread and task blocked is shuttle's "deadlock" (a lost wake-up, a
//!   waker run under a lock of the crate's), and a schedule longer than `MAX_STEPS`
//!   fails too;
//! * a panic that escapes: from a waker or a source (they panic on purpose, with the
//!   payload [`OnPurpose`], and the crate must contain them), from a re-entrant waker
//!   that the crate calls while it holds a lock of its own (shuttle's mutex asserts
//!   that a task never locks a mutex it holds; the scenario records it), or from an
//!   assertion;
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
//!         shuttle_models::shuttle_single_word -- --exact --nocapture
//!
//! which calls `shuttle::Runner` with `ReplayScheduler::new_from_encoded` (what
//! `shuttle::replay(scenario, "<the string>")` does, with this module's config).
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
/// with two scenarios and two schedulers, 4 x this in all (about a minute in release
/// on two cores).
pub(crate) const DEFAULT_ITERATIONS: usize = 1500;

/// A schedule that takes more steps than this fails (a livelock, or a wait loop that
/// spins without end). The scenarios take a few thousand.
const MAX_STEPS: usize = 200_000;

/// The deadline of the tokens made with `Abort::after`; the clock thread moves the
/// model clock by this much.
const TIMEOUT: Duration = Duration::from_millis(10);

/// The payload of every panic a scenario causes on purpose.
struct OnPurpose;

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
    /// A re-entrant waker's call into the fortress panicked: the crate called it while
    /// holding a lock of its own (or another bug). Checked at the end.
    unexpected: AtomicBool,
}

impl World {
    fn new(fortress: Fortress) -> Arc<World> {
        Arc::new(World {
            fortress,
            inside: AtomicU64::new(0),
            exclusive: AtomicBool::new(false),
            turns: Mutex::new(()),
            unexpected: AtomicBool::new(false),
        })
    }

    /// The body of every visit: it must not overlap an exclusive phase.
    fn body(&self) {
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
            Ok(()) => self.exclusive_phase(),
            Err(Error::Aborted) => {
                assert!(self.fortress.is_locked(), "an aborted lockdown still locks")
            }
            Err(Error::Shutdown) => return false,
        }
        match guard.unlock() {
            Ok(()) => true,
            Err(error) => {
                assert_eq!(error, Error::Shutdown);
                false
            }
        }
    }

    /// One lockdown-to-unlock cycle of a guard thread.
    fn guard_cycle(&self, guard: &Guard, abort: &Abort) -> bool {
        let _turn = self.turns.lock().unwrap();
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
            self.task.wake_by_ref();
            std::panic::panic_any(OnPurpose);
        }
        // The crate calls wakers with no lock of its own held: re-entering must work.
        // A panic here (shuttle's "tried to acquire a Mutex it already holds", say)
        // has been reported by the panic hook with the schedule; the end check fails.
        let reentered = std::panic::catch_unwind(AssertUnwindSafe(|| self.reenter()));
        if reentered.is_err() {
            self.world.unexpected.store(true, SeqCst);
        }
        self.task.wake_by_ref();
    }
}

impl Adversary {
    fn reenter(&self) {
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
                    let unlocked = world.fortress.guard().unlock();
                    assert!(matches!(unlocked, Ok(()) | Err(Error::Shutdown)));
                }
            }
            Mischief::Fire(abort) => abort.abort(),
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

/// A visitor thread's visit: `Ok` ran the body; the errors are the documented ones.
fn visit(world: &World, guest: &Guest, abort: &Abort) -> Result<(), Error> {
    guest.visit(|| world.body(), abort)
}

/// The scenario: one fortress, everything at once. `make` builds the fortress.
fn scenario(make: fn() -> Fortress) {
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
    threads.push(thread::spawn(move || {
        let guard = w.fortress.guard();
        if w.guard_cycle(&guard, &abort) {
            w.guard_cycle(&guard, &Abort::never());
        }
    }));

    // Guard 2: a lockdown with a deadline that the clock thread passes, then one on a
    // child of a token the aborter fires.
    let (w, abort, child) = (Arc::clone(&world), deadline.clone(), parent.child());
    threads.push(thread::spawn(move || {
        let guard = w.fortress.guard();
        if w.guard_cycle(&guard, &abort) {
            w.guard_cycle(&guard, &child);
        }
    }));

    // Guard 3, a task: lockdown_async with a waker that panics, then the unlock.
    let w = Arc::clone(&world);
    tasks.push(future::spawn_local(async move {
        let guard = w.fortress.guard();
        let _turn = w.turns.lock().unwrap();
        let locked =
            Mischievous::new(&w, Mischief::Panic, guard.lockdown_async(Abort::NEVER)).await;
        w.after_lockdown(&guard, locked);
    }));

    // A lockdown_async dropped after its first poll: the gate stays closed until a
    // guard (or a waker) unlocks it.
    let w = Arc::clone(&world);
    tasks.push(future::spawn_local(async move {
        let guard = w.fortress.guard();
        let abort = Abort::new();
        let polled = Impatient::new(1, guard.lockdown_async(&abort)).await;
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
    let w = Arc::clone(&world);
    threads.push(thread::spawn(move || {
        let guest = w.fortress.guest();
        for _ in 0..2 {
            if visit(&w, &guest, &Abort::never()) == Err(Error::Shutdown) {
                return;
            }
        }
        if let Some(visit) = guest.try_enter() {
            w.body();
            drop(visit);
        }
    }));
    let (w, by_waker, by_deadline) = (
        Arc::clone(&world),
        fired_by_a_waker.clone(),
        visitor_deadline.clone(),
    );
    threads.push(thread::spawn(move || {
        let guest = w.fortress.guest();
        match guest.enter(&by_waker) {
            Ok(visit) => {
                w.body();
                drop(visit);
            }
            Err(error) => assert!(error == Error::Aborted || error == Error::Shutdown),
        }
        let _ = visit(&w, &guest, &by_deadline);
    }));
    let (w, by_source, by_panic) = (
        Arc::clone(&world),
        self_waking.clone(),
        panicking_source.clone(),
    );
    threads.push(thread::spawn(move || {
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
    ];
    for mischief in mischiefs {
        let w = Arc::clone(&world);
        tasks.push(future::spawn(async move {
            let guest = w.fortress.guest();
            let abort = Abort::new();
            let entered = Mischievous::new(&w, mischief, guest.enter_async(&abort)).await;
            match entered {
                Ok(visit) => {
                    w.body();
                    drop(visit);
                }
                Err(error) => assert_eq!(error, Error::Shutdown),
            }
            assert_eq!(
                abort.links(),
                (0, 0),
                "a finished entry left its wait registered"
            );
        }));
    }

    // Entries dropped while pending (after one poll, and after three).
    for polls in [1, 3] {
        let w = Arc::clone(&world);
        tasks.push(future::spawn(async move {
            let guest = w.fortress.guest();
            let abort = Abort::new();
            let entered = Mischievous::new(
                &w,
                Mischief::TryEnter,
                Impatient::new(polls, guest.enter_async(&abort)),
            )
            .await;
            if let Some(Ok(visit)) = entered {
                w.body();
                drop(visit);
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
    tasks.push(future::spawn(async move {
        w.fortress.wait_async().await;
        assert_eq!(w.fortress.guests(), 0);
    }));
    let w = Arc::clone(&world);
    threads.push(thread::spawn(move || {
        w.fortress.wait().unwrap();
        assert_eq!(w.fortress.guests(), 0);
    }));

    // The aborter: fires the first guard's token, the parent of the second's, and the
    // shot of the self-waking source.
    let (first, second, shot) = (fired_by_aborter.clone(), parent.clone(), shot.clone());
    let aborter = thread::spawn(move || {
        first.abort();
        thread::yield_now();
        second.abort();
        shot.fire();
    });

    // The timer thread's stand-in: the clock passes the deadlines, then the due
    // tokens fire.
    let clock_thread = thread::spawn(|| {
        thread::yield_now();
        clock::advance(TIMEOUT);
        timer::fire_due();
    });

    // The source thread's stand-in: polls what is queued, twice (the self-waking
    // source queues itself again from inside its poll).
    let source_thread = thread::spawn(|| {
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
    assert!(
        !world.unexpected.load(SeqCst),
        "a re-entrant waker panicked (see above)"
    );
    assert_eq!(world.inside.load(SeqCst), 0);
    assert_eq!(fortress.guests(), 0, "a visit was left behind");
    assert_eq!(fortress.gate.task_slots().0, 0, "a waker was left behind");
    for abort in [
        &fired_by_aborter,
        &parent,
        &deadline,
        &visitor_deadline,
        &fired_by_a_waker,
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
            scenario(make)
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
    let random = run(
        RandomScheduler::new_from_seed(seed, iterations),
        move || scenario(make),
    );
    let pct = run(
        PctScheduler::new_from_seed(seed, 3, iterations),
        move || scenario(make),
    );
    eprintln!(
        "shuttle {name}: {} schedules passed in {:.1?}",
        random + pct,
        started.elapsed()
    );
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
