//! The driver of [`Abort::from_future`](crate::Abort::from_future): polls a future
//! without a runtime and fires the token's signal when it completes.
//!
//! The driver is its own waker. Whoever wakes it polls the future on the spot, on
//! their own thread; a wake that arrives while another thread is polling asks that
//! thread to poll once more instead. All of this is one small state machine on one
//! atomic, so no wake-up falls between two polls.

use crate::signal::Signal;
use crate::sync::{lock, Arc, Mutex};
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Waker};
use std::sync::atomic::{
    AtomicU8,
    Ordering::{AcqRel, Acquire, Release},
};
use std::task::Wake;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Nobody is polling.
const IDLE: u8 = 0;
/// A thread is polling the future.
const POLLING: u8 = 1;
/// A thread is polling, and a wake-up arrived meanwhile: poll again.
const REPOLL: u8 = 2;
/// The future completed or was dropped: nothing more to do.
const DONE: u8 = 3;

pub(crate) struct Driver {
    /// `IDLE`, `POLLING`, `REPOLL` or `DONE`.
    state: AtomicU8,
    /// The future; `None` once it completed or its token was dropped. Only the thread
    /// that moved `state` to `POLLING` touches it, so the lock is never contended
    /// except by `cancel`.
    future: Mutex<Option<BoxFuture>>,
    signal: Arc<Signal>,
}

impl Driver {
    pub(crate) fn new(future: BoxFuture, signal: Arc<Signal>) -> std::sync::Arc<Driver> {
        std::sync::Arc::new(Driver {
            state: AtomicU8::new(IDLE),
            future: Mutex::new(Some(future)),
            signal,
        })
    }

    /// Polls the future now, or makes the thread that is polling it poll once more.
    pub(crate) fn drive(self: &std::sync::Arc<Self>) {
        // The future itself is ordered by its mutex; the state's Acquire/Release pairs
        // only make each thread's view of the state machine consistent.
        let mut state = self.state.load(Acquire);
        loop {
            let next = match state {
                IDLE => POLLING,
                POLLING => REPOLL,
                _ => return, // REPOLL: the poller will poll again; DONE: nothing to do
            };
            match self.state.compare_exchange(state, next, AcqRel, Acquire) {
                Ok(_) if next == POLLING => break,
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
        let waker = Waker::from(std::sync::Arc::clone(self));
        let mut cx = Context::from_waker(&waker);
        loop {
            let mut slot = lock(&self.future);
            let Some(future) = slot.as_mut() else {
                // Cancelled: the token is gone, nobody to tell.
                self.state.store(DONE, Release);
                return;
            };
            if future.as_mut().poll(&mut cx).is_ready() {
                self.state.store(DONE, Release);
                let future = slot.take();
                drop(slot);
                drop(future); // outside the lock: its drop may wake this driver
                self.signal.fire();
                return;
            }
            drop(slot);
            // Back to IDLE unless a wake-up arrived while polling.
            match self.state.compare_exchange(POLLING, IDLE, AcqRel, Acquire) {
                Ok(_) => return,
                // Release: as the other transitions.
                Err(_) => self.state.store(POLLING, Release),
            }
        }
    }

    /// The token is gone: drop the future, and never fire.
    pub(crate) fn cancel(&self) {
        let future = lock(&self.future).take();
        drop(future); // outside the lock: its drop may wake this driver
    }
}

impl Wake for Driver {
    fn wake(self: std::sync::Arc<Self>) {
        self.drive();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.drive();
    }
}
