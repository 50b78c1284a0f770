//! The sources of [`Abort::from_future`](crate::Abort::from_future): futures polled
//! without a runtime, each firing its token's signal when it completes.
//!
//! Sources are polled on one thread of the crate's, the *source thread*, started by
//! the first `from_future` and living as long as the process (it sleeps while no source
//! is ready). Never on the stack of whoever wakes a source, nor on the caller of
//! `from_future`, nor on the deadline timer's thread. So a source may call its waker
//! anywhere, even while holding a lock its own poll takes, or from inside its own poll,
//! and nobody hangs: a wake only puts the source in the thread's queue.
//!
//! Each source is a small state machine on one atomic:
//!
//! | state     | meaning                                                         |
//! |-----------|-----------------------------------------------------------------|
//! | `IDLE`    | polled, pending, not woken since                                |
//! | `QUEUED`  | in the queue: the thread will poll it                           |
//! | `POLLING` | the thread is polling it                                        |
//! | `REPOLL`  | woken while being polled: it goes back to the end of the queue  |
//! | `DONE`    | completed, panicked or cancelled (its token was dropped)         |
//!
//! A wake during a poll is never lost (`REPOLL`), and re-polling is bounded: a source
//! that keeps waking itself is polled once per turn of the queue, like any other. A
//! source that panics counts as completed: its token fires. The future is taken out of
//! its mutex while it is polled and dropped outside it, so no user code runs under a
//! lock of ours.

use super::signal::Signal;
use crate::sync::{
    lock, Arc, AtomicU8, Mutex,
    Ordering::{AcqRel, Acquire},
};
use crate::user::{drop_isolated, isolated};
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::collections::VecDeque;
use std::task::Wake;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

const IDLE: u8 = 0;
const QUEUED: u8 = 1;
const POLLING: u8 = 2;
const REPOLL: u8 = 3;
const DONE: u8 = 4;

pub(crate) struct Source {
    /// One of the states above.
    state: AtomicU8,
    /// The future, while nobody polls it; `None` once it is done.
    future: Mutex<Option<BoxFuture>>,
    signal: Arc<Signal>,
}

impl Source {
    /// A source for `future`, queued for its first poll.
    pub(crate) fn start(future: BoxFuture, signal: Arc<Signal>) -> std::sync::Arc<Source> {
        let source = std::sync::Arc::new(Source {
            state: AtomicU8::new(QUEUED),
            future: Mutex::new(Some(future)),
            signal,
        });
        queue().push(std::sync::Arc::clone(&source));
        source
    }

    /// The token is gone: the future is dropped (here, isolated) and never fires.
    pub(crate) fn cancel(&self) {
        // AcqRel: pairs with the thread's transitions, so it sees DONE before it puts
        // the future back (and drops it instead).
        self.state.swap(DONE, AcqRel);
        let future = lock(&self.future).take();
        drop_isolated(future);
    }

    /// Polls the future once, on the source thread.
    fn poll_once(self: std::sync::Arc<Self>) {
        // AcqRel: pairs with `wake` and `cancel`.
        if self
            .state
            .compare_exchange(QUEUED, POLLING, AcqRel, Acquire)
            .is_err()
        {
            return; // cancelled
        }
        let Some(mut future) = lock(&self.future).take() else {
            return;
        };
        let waker = Waker::from(std::sync::Arc::clone(&self));
        let polled = isolated(|| future.as_mut().poll(&mut Context::from_waker(&waker)));
        drop_isolated(waker);
        if !matches!(polled, Some(Poll::Pending)) {
            // Completed, or panicked: either way the token fires.
            self.state.swap(DONE, AcqRel);
            drop_isolated(future);
            self.signal.fire();
            return;
        }
        let mut slot = lock(&self.future);
        if self.state.load(Acquire) == DONE {
            drop(slot);
            drop_isolated(future); // cancelled while it was polled
            return;
        }
        *slot = Some(future);
        drop(slot);
        // Back to IDLE, unless a wake arrived during the poll: then to the queue's end.
        match self.state.compare_exchange(POLLING, IDLE, AcqRel, Acquire) {
            Ok(_) | Err(DONE) => {}
            Err(_) => {
                self.state.store(QUEUED, crate::sync::Ordering::Release);
                queue().push(self);
            }
        }
    }
}

impl Wake for Source {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        // Acquire: pairs with the AcqRel transitions of the thread and `cancel`.
        let mut state = self.state.load(Acquire);
        loop {
            let next = match state {
                IDLE => QUEUED,
                POLLING => REPOLL,
                _ => return, // queued or re-polling already, or done
            };
            // AcqRel: as the thread's transitions.
            match self.state.compare_exchange(state, next, AcqRel, Acquire) {
                Ok(_) if next == QUEUED => return queue().push(std::sync::Arc::clone(self)),
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
    }
}

/// Sources ready to be polled, and the thread that polls them.
struct Queue {
    ready: Mutex<VecDeque<std::sync::Arc<Source>>>,
    #[cfg(not(all(test, any(loom, shuttle))))]
    work: std::sync::Condvar,
}

impl Queue {
    fn push(&self, source: std::sync::Arc<Source>) {
        lock(&self.ready).push_back(source);
        #[cfg(not(all(test, any(loom, shuttle))))]
        self.work.notify_one();
    }

    /// The source thread: poll each ready source in turn; sleep while none is.
    #[cfg(not(all(test, any(loom, shuttle))))]
    fn run(&self) {
        loop {
            let mut ready = self
                .ready
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let next = loop {
                match ready.pop_front() {
                    Some(source) => break source,
                    None => {
                        ready = self
                            .work
                            .wait(ready)
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                    }
                }
            };
            drop(ready);
            next.poll_once();
        }
    }
}

#[cfg(not(all(test, any(loom, shuttle))))]
fn queue() -> &'static Queue {
    static QUEUE: std::sync::OnceLock<&'static Queue> = std::sync::OnceLock::new();
    QUEUE.get_or_init(|| {
        let queue = Queue {
            ready: Mutex::new(VecDeque::new()),
            work: std::sync::Condvar::new(),
        };
        crate::user::spawn_daemon("fortress-gate-sources", queue, Queue::run)
    })
}

#[cfg(all(test, any(loom, shuttle)))]
fn queue() -> &'static Queue {
    crate::sync::model_static! {
        static ref QUEUE: Queue = Queue { ready: Mutex::new(VecDeque::new()) };
    }
    &QUEUE
}

/// Polls every queued source until none is ready (the models' stand-in for the source
/// thread).
#[cfg(all(test, any(loom, shuttle)))]
pub(crate) fn run_queued() {
    loop {
        let next = lock(&queue().ready).pop_front();
        match next {
            Some(source) => source.poll_once(),
            None => return,
        }
    }
}
