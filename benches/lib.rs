//! What the benchmarks share: the criterion benches live in `fortress.rs` and
//! `sharded.rs`, the runs that print their own tables in the `[[bin]]` targets.

use fortress_gate::{Abort, Fortress, Guard};
use std::future::{poll_fn, Future};
use std::ops::{Deref, DerefMut};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

/// How long the side that is about to be woken gets to fall asleep, in every wake-up
/// benchmark alike.
pub const FALL_ASLEEP: Duration = Duration::from_micros(200);

/// A word alone on its cache line (and the adjacent-line prefetch pair), as the
/// fortress's own words are.
#[repr(align(128))]
#[derive(Default)]
pub struct Padded(pub AtomicU64);

/// The smallest executor there is: polls with a waker that does nothing, and polls
/// again at once after `Pending`, as an executor re-polls a task that woke itself. On
/// an open lock every contender is ready at its first poll, except the fortress's
/// cooperative yield (one entry in 129 returns `Pending` once), which is thus counted
/// at the price of one more poll; `async_in_tokio` counts it at tokio's price.
#[inline]
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// Awaits `fut`, raising `pending` as soon as a poll of it returns `Pending`: by then
/// its waker is registered, so the task is truly waiting.
pub async fn announce_pending<F: Future>(fut: F, pending: &AtomicBool) -> F::Output {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        let poll = fut.as_mut().poll(cx);
        if poll.is_pending() {
            pending.store(true, Ordering::Release);
        }
        poll
    })
    .await
}

/// Waits (outside the timed region) until the task has announced that it is pending,
/// then gives its worker [`FALL_ASLEEP`] to run out of work and park.
pub fn until_pending(pending: &AtomicBool) {
    while !pending.load(Ordering::Acquire) {
        thread::yield_now();
    }
    thread::sleep(FALL_ASLEEP);
}

/// The number in the environment variable `name`, or `default` if it is not set; a
/// value that is not a number stops the run with a message.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).map_or(default, |value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?}: not a number"))
    })
}

/// The number after `--runs` on the command line; 1 without it.
pub fn runs_arg() -> usize {
    match std::env::args().skip_while(|a| a != "--runs").nth(1) {
        Some(n) => n.parse().expect("--runs takes a number"),
        None => 1,
    }
}

/// The async wake-up, measured the same way for the fortress and for tokio's `RwLock`:
/// a task on a two-worker tokio runtime waits to get in (`enter_async` at a locked
/// fortress, `read()` under a held write lock); the bench thread, which is not a
/// worker, lets it in (`unlock`, or drops the write guard), and the time runs until the
/// task takes its first step inside. Both re-lock the same way, by an async acquire
/// on the runtime (`lockdown_async`, `write_owned`), outside the timed part.
pub struct WakeUps {
    rt: tokio::runtime::Runtime,
    guard: Guard,
    fortress: Fortress,
    lock: Arc<tokio::sync::RwLock<()>>,
    write: Option<tokio::sync::OwnedRwLockWriteGuard<()>>,
}

impl Default for WakeUps {
    fn default() -> WakeUps {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let fortress = Fortress::new(); // locked
        let lock = Arc::new(tokio::sync::RwLock::new(()));
        let write = Some(rt.block_on(Arc::clone(&lock).write_owned()));
        WakeUps {
            rt,
            guard: fortress.guard(),
            fortress,
            lock,
            write,
        }
    }
}

impl WakeUps {
    /// One hand-off through the fortress.
    pub fn fortress(&mut self) -> Duration {
        let guest = self.fortress.guest();
        let inside = self.spawn_pending(move |pending, tx| async move {
            let visit = announce_pending(guest.enter_async(Abort::NEVER), &pending)
                .await
                .unwrap();
            tx.send(Instant::now()).unwrap();
            drop(visit);
        });
        let t0 = Instant::now();
        self.guard.unlock().unwrap();
        let took = inside.recv().unwrap() - t0;
        let relock = self.guard.lockdown_async(Abort::NEVER);
        self.rt.block_on(relock).unwrap();
        took
    }

    /// One hand-off through tokio's `RwLock`.
    pub fn tokio(&mut self) -> Duration {
        let lock = Arc::clone(&self.lock);
        let inside = self.spawn_pending(move |pending, tx| async move {
            let read = announce_pending(lock.read(), &pending).await;
            tx.send(Instant::now()).unwrap();
            drop(read);
        });
        let t0 = Instant::now();
        drop(self.write.take());
        let took = inside.recv().unwrap() - t0;
        self.write = Some(self.rt.block_on(Arc::clone(&self.lock).write_owned()));
        took
    }

    /// Spawns the task that `task` makes (from its pending flag and the sender of the
    /// instant it gets in) and returns, with the receiver, once it is pending.
    fn spawn_pending<F: Future<Output = ()> + Send + 'static>(
        &self,
        task: impl FnOnce(Arc<AtomicBool>, mpsc::Sender<Instant>) -> F,
    ) -> mpsc::Receiver<Instant> {
        let pending = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        self.rt.spawn(task(Arc::clone(&pending), tx));
        until_pending(&pending);
        rx
    }
}

/// Reads the `u64` through a read guard (a visit, a lock's read guard), then drops
/// the guard: the same steps for every side that reads a value.
#[inline]
pub fn read_through(guard: impl Deref<Target = u64>) {
    let guard = std::hint::black_box(guard);
    std::hint::black_box(*guard);
}

/// Adds one to the `u64` through a write guard (an exclusive phase, a lock's write
/// guard), then drops the guard: the same steps for every side that writes a value.
#[inline]
pub fn write_through(guard: impl DerefMut<Target = u64>) {
    let mut guard = std::hint::black_box(guard);
    *guard = guard.wrapping_add(1);
}
