//! Helpers shared by the integration tests. Timeouts here only turn a hang into a
//! failure; nothing measures speed.
#![allow(dead_code)]

use fortress_gate::internals::{snapshot, Kind, Waiters};
use fortress_gate::{Abort, BoxError, Fortress, Worker};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

/// Long enough never to fire on a loaded 2-core machine (or under Miri) unless
/// something really hangs.
pub const HANG: Duration = Duration::from_secs(if cfg!(miri) { 600 } else { 30 });

/// Runs `f` on its own thread and fails the test if it has not returned within
/// [`HANG`]. A panic in `f` propagates.
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let out = f();
        let _ = tx.send(());
        out
    });
    match rx.recv_timeout(HANG) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(out) => out,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still blocked after {HANG:?}"),
    }
}

/// What a waiter waits for, as the tests name it.
#[derive(Clone, Copy, Debug)]
pub enum Sleepers {
    Gate,
    Drain,
    Done,
}

impl Sleepers {
    fn waiters(self) -> Waiters {
        match self {
            Sleepers::Gate => Waiters::Gate,
            Sleepers::Drain => Waiters::Drain,
            Sleepers::Done => Waiters::Done,
        }
    }
}

/// Polls until `fortress` has threads of this kind flagged in its state word (they
/// have announced themselves and sleep or are about to), so a test exercises the
/// sleeping path rather than the spin.
pub fn until_asleep(fortress: &Fortress, kind: Sleepers) {
    until_flagged(fortress, kind, Kind::Thread)
}

/// Polls until `fortress` has tasks of this kind flagged: they have returned
/// `Pending` (or are about to).
pub fn until_pending(fortress: &Fortress, kind: Sleepers) {
    until_flagged(fortress, kind, Kind::Task)
}

/// As [`until_asleep`], but also stops once `done()` holds: for a wait that a
/// deadline may cut short before it announces itself (a thread that is not scheduled
/// for a while on a loaded machine, or under Miri's clock).
pub fn until_asleep_or(fortress: &Fortress, kind: Sleepers, mut done: impl FnMut() -> bool) {
    until(&format!("a {kind:?} thread asleep, or done"), || {
        snapshot(fortress).has(kind.waiters(), Kind::Thread) || done()
    })
}

/// As [`until_pending`], but also stops once `done()` holds (see [`until_asleep_or`]).
pub fn until_pending_or(fortress: &Fortress, kind: Sleepers, mut done: impl FnMut() -> bool) {
    until(&format!("a {kind:?} task pending, or done"), || {
        snapshot(fortress).has(kind.waiters(), Kind::Task) || done()
    })
}

fn until_flagged(fortress: &Fortress, kind: Sleepers, who: Kind) {
    let start = Instant::now();
    while !snapshot(fortress).has(kind.waiters(), who) {
        assert!(
            start.elapsed() < HANG,
            "no {kind:?} {who:?} appeared: {fortress:?}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Polls until `cond` holds, failing after [`HANG`].
pub fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < HANG, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// A token that has already fired.
pub fn fired() -> Abort {
    let abort = Abort::new();
    abort.abort();
    abort
}

/// A new (locked) fortress of the kind under test: `crate::LAYOUT`, the single state
/// word in each file's own binary, another layout when `tests/sharded.rs` or
/// `tests/read_mostly.rs` runs the suite again.
pub fn fortress() -> Fortress {
    Fortress::holding_with((), crate::LAYOUT)
}

/// A new fortress of the kind under test, unlocked.
pub fn unlocked() -> Fortress {
    let fortress = fortress();
    fortress.guard().unlock().unwrap();
    fortress
}

/// A small multi-threaded tokio runtime for the async tests (built by hand: the
/// `macros` feature is not enabled).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("could not build a tokio runtime")
}

// ----- Async helpers (tests/async_rules.rs, tests/async_cancel.rs) -----

/// Runs `fut` to completion on `rt`, failing the test if it is still pending after
/// [`HANG`]. Once the time is up `fut` is not polled again, so a future whose wake-up
/// was lost fails rather than completes late (as it would under `tokio::time::timeout`,
/// which polls its future once more when it fires).
pub fn block_within<F: std::future::Future>(
    rt: &tokio::runtime::Runtime,
    what: &str,
    fut: F,
) -> F::Output {
    block_within_for(rt, HANG, what, fut)
}

/// As [`block_within`], with a bound of `limit`.
pub fn block_within_for<F: std::future::Future>(
    rt: &tokio::runtime::Runtime,
    limit: Duration,
    what: &str,
    fut: F,
) -> F::Output {
    let finished = rt.block_on(async {
        let deadline = tokio::time::Instant::now() + limit;
        let (mut fut, mut timer) = (pin!(fut), pin!(tokio::time::sleep_until(deadline)));
        poll_fn(|cx| {
            // The timer first, and the clock too (tokio's budget may hold the timer
            // back): `fut` is polled only while the time is not up.
            if timer.as_mut().poll(cx).is_ready() || tokio::time::Instant::now() >= deadline {
                return Poll::Ready(None);
            }
            fut.as_mut().poll(cx).map(Some)
        })
        .await
    });
    finished.unwrap_or_else(|| panic!("{what}: still pending after {limit:?}"))
}

/// Awaits a spawned task within [`HANG`] and returns its output; a panic in the task
/// propagates, and a cancelled task fails the test.
pub fn join<T>(rt: &tokio::runtime::Runtime, what: &str, task: tokio::task::JoinHandle<T>) -> T {
    match block_within(rt, what, task) {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("{what}: {e}"),
    }
}

/// One poll of `fut` with `waker`.
pub fn poll_with<F: std::future::Future + ?Sized>(
    fut: std::pin::Pin<&mut F>,
    waker: &std::task::Waker,
) -> std::task::Poll<F::Output> {
    fut.poll(&mut std::task::Context::from_waker(waker))
}

/// One poll of `fut` with a waker that does nothing.
pub fn poll_noop<F: std::future::Future + ?Sized>(
    fut: std::pin::Pin<&mut F>,
) -> std::task::Poll<F::Output> {
    poll_with(fut, std::task::Waker::noop())
}

/// A waker that counts how often it was woken.
#[derive(Default)]
pub struct CountingWaker(std::sync::atomic::AtomicUsize);

impl CountingWaker {
    /// A new waker and its counter.
    pub fn new() -> (std::task::Waker, std::sync::Arc<CountingWaker>) {
        let counter = std::sync::Arc::new(CountingWaker::default());
        (std::task::Waker::from(counter.clone()), counter)
    }

    /// How often it was woken so far.
    pub fn wakes(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl std::task::Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Awaits `fut`, adding one to `pending` the first time it returns `Pending`: a test
/// can then wait until every one of many tasks is really waiting.
pub async fn announce_pending<F: std::future::Future>(
    fut: F,
    pending: &std::sync::atomic::AtomicUsize,
) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut announced = false;
    std::future::poll_fn(|cx| {
        let poll = fut.as_mut().poll(cx);
        if poll.is_pending() && !announced {
            announced = true;
            pending.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        poll
    })
    .await
}

/// Polls `fut` once with the task's own waker, then drops it: `None` if it was still
/// pending (the cancel-by-drop case).
pub async fn poll_once_then_drop<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let once = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx)));
    match once.await {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

/// Receives from `rx`, failing the test after [`HANG`].
pub fn recv_within<T>(rx: &mpsc::Receiver<T>, what: &str) -> T {
    rx.recv_timeout(HANG)
        .unwrap_or_else(|e| panic!("{what}: {e} after {HANG:?}"))
}

/// A small deterministic xorshift PRNG: random interleavings that replay.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        // Never zero (zero is a fixed point); mix the seed so nearby seeds diverge.
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform enough in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A random duration below `max_micros` microseconds (zero included).
    pub fn micros(&mut self, max_micros: u64) -> Duration {
        Duration::from_micros(self.below(max_micros))
    }
}

/// Which of two raced futures finished first.
#[derive(Debug, PartialEq)]
pub enum Either<A, B> {
    Left(A),
    Right(B),
}

/// A hand-written `select!`: polls `a`, then `b`, and resolves with the first to
/// finish; the other is dropped. Passing the fortress's future first means a wait that
/// can finish does finish, as an abort token would have it.
pub async fn race<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let (mut a, mut b) = (pin!(a), pin!(b));
    poll_fn(|cx| {
        if let Poll::Ready(out) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(out));
        }
        if let Poll::Ready(out) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(out));
        }
        Poll::Pending
    })
    .await
}

/// A worker that runs until killed: `wait` blocks until `kill`, and counts its returns.
#[derive(Default)]
pub struct Sleeper {
    pub killed: Mutex<bool>,
    changed: Condvar,
    pub waits: AtomicUsize,
}

impl Sleeper {
    pub fn was_killed(&self) -> bool {
        *self.killed.lock().unwrap()
    }
}

impl Worker for Sleeper {
    fn kill(&self) {
        *self.killed.lock().unwrap() = true;
        self.changed.notify_all();
    }

    fn wait(&self) -> Result<(), BoxError> {
        let mut killed = self.killed.lock().unwrap();
        while !*killed {
            killed = self.changed.wait(killed).unwrap();
        }
        self.waits.fetch_add(1, SeqCst);
        Ok(())
    }
}

/// A [`Sleeper`] the test can still look at after `occupy` has dropped the worker.
pub struct SharedSleeper(pub Arc<Sleeper>);

impl Worker for SharedSleeper {
    fn kill(&self) {
        self.0.kill();
    }

    fn wait(&self) -> Result<(), BoxError> {
        self.0.wait()
    }
}
