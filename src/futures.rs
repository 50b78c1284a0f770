//! Async waits (feature `async`): the same state word and the same notifiers as the
//! blocking calls, with a waker in place of a sleeping thread. Runtime-agnostic: only
//! `core::task` is used.
//!
//! Every future here is cancel-safe by drop: a pending future holds only its
//! registrations (its waker in a notifier's task set, its notifier in the abort
//! token), and dropping it removes both. A lockdown closes the gate at its first poll:
//! a plain one (`lockdown_async`) dropped afterwards leaves the gate closed, exactly as
//! an aborted lockdown; a scoped one (`exclusive_async`, `exclusive_owned_async`)
//! dropped afterwards backs out, as an aborted `exclusive` does.

use crate::abort::Abort;
use crate::error::Error;
use crate::exclusive::{Exclusive, OwnedExclusive};
use crate::fortress::{Fortress, Guard, Guest};
use crate::gate::{Drained, Gate, TaskWait};
use crate::shards::Ticket;
use crate::state::Close;
use crate::sync::Arc;
use crate::visit::{OwnedVisit, Visit};
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

/// An entry in progress: `Guest::enter_async` and `Guest::enter_owned_async`.
struct Enter<'a> {
    gate: &'a Gate,
    abort: &'a Abort,
    wait: TaskWait<'a>,
    finished: bool,
}

impl Future for Enter<'_> {
    type Output = Result<Ticket, Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(
            !this.finished,
            "an enter future was polled after it completed"
        );
        let poll = this.gate.poll_enter(this.abort, &mut this.wait, cx);
        this.finished = poll.is_ready();
        poll
    }
}

/// A lockdown in progress: closes the gate at its first poll, then waits for the drain.
/// A scoped one (the exclusive forms) then takes the gate for its phase (or, if another
/// phase holds it, waits for that phase to end and closes again), and backs out if it
/// gives up: aborted, or dropped between its first poll and its completion.
struct Lockdown<'a> {
    gate: &'a Gate,
    abort: &'a Abort,
    wait: TaskWait<'a>,
    scoped: bool,
    stage: Stage,
}

/// Where a lockdown future is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not polled yet, or a scoped lockdown about to close again after another's phase.
    Close,
    /// The gate is closed: waiting for the drain; for a scoped lockdown, with the
    /// back-out record of a close that shut the open gate, and the shuts field as its
    /// close left it.
    Drain(Option<u32>, u32),
    /// A scoped lockdown waits for another's phase to end.
    Phase,
    /// Completed.
    Finished,
}

impl<'a> Lockdown<'a> {
    fn new(gate: &'a Gate, abort: &'a Abort, scoped: bool) -> Lockdown<'a> {
        Lockdown {
            gate,
            abort,
            wait: TaskWait::new(),
            scoped,
            stage: Stage::Close,
        }
    }

    /// Moves to `stage`, giving back what the last wait registered (it waited in
    /// another group).
    fn enter_stage(&mut self, stage: Stage) {
        self.wait = TaskWait::new();
        self.stage = stage;
    }

    /// One step: `Ready` when the lockdown has completed or failed, `Pending` when it
    /// waits, `None` when it moved to another stage and must step again.
    fn step(&mut self, cx: &mut Context<'_>) -> Option<Poll<Result<(), Error>>> {
        let (gate, abort) = (self.gate, self.abort);
        match self.stage {
            Stage::Close if !self.scoped => match gate.close() {
                Ok(false) => self.enter_stage(Stage::Drain(None, 0)),
                done => return Some(Poll::Ready(done.map(drop))),
            },
            Stage::Close => match gate.close_scoped() {
                Ok(Some(Close::Owned)) => return Some(Poll::Ready(Ok(()))),
                Ok(Some(Close::Drain { record, since })) => {
                    self.enter_stage(Stage::Drain(record, since))
                }
                Ok(None) => self.enter_stage(Stage::Phase),
                Err(e) => return Some(Poll::Ready(Err(e))),
            },
            Stage::Drain(..) if !self.scoped => {
                return Some(gate.poll_drain(abort, &mut self.wait, cx));
            }
            Stage::Drain(record, since) => {
                match gate.poll_drain_for_phase(since, abort, &mut self.wait, cx) {
                    Poll::Ready(Ok(Drained::Owned)) => return Some(Poll::Ready(Ok(()))),
                    Poll::Ready(Ok(Drained::Since(now))) => {
                        self.enter_stage(Stage::Drain(record, now))
                    }
                    // Another phase took the gate (its close ended this call's record), or
                    // came and went: close again once no phase holds the gate.
                    Poll::Ready(Ok(Drained::CloseAgain)) => self.enter_stage(Stage::Phase),
                    Poll::Ready(Err(e)) => {
                        if let (Error::Aborted, Some(record)) = (e, record) {
                            self.wait = TaskWait::new(); // unregister before reopening
                            gate.withdraw(record);
                        }
                        return Some(Poll::Ready(Err(e)));
                    }
                    Poll::Pending => return Some(Poll::Pending),
                }
            }
            Stage::Phase => match gate.poll_phase(abort, &mut self.wait, cx) {
                Poll::Ready(Ok(())) => self.enter_stage(Stage::Close),
                other => return Some(other),
            },
            Stage::Finished => panic!("a lockdown future was polled after it completed"),
        }
        None
    }
}

impl Future for Lockdown<'_> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            if let Some(poll) = this.step(cx) {
                if poll.is_ready() {
                    this.enter_stage(Stage::Finished);
                }
                return poll;
            }
        }
    }
}

impl Drop for Lockdown<'_> {
    fn drop(&mut self) {
        if let Stage::Drain(Some(record), _) = self.stage {
            // Dropped while it waited: a scoped lockdown gives up.
            self.wait = TaskWait::new(); // unregister before reopening
            self.gate.withdraw(record);
        }
    }
}

/// `Fortress::wait_async` in progress.
struct Done<'a> {
    gate: &'a Gate,
    wait: TaskWait<'a>,
}

impl Future for Done<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.gate.poll_done(Abort::NEVER, &mut this.wait, cx)
    }
}

impl<T> Guest<T> {
    fn enter_future<'g: 'a, 'a>(&'g self, abort: &'a Abort) -> Enter<'a> {
        Enter {
            gate: &self.gate,
            abort,
            wait: TaskWait::new(),
            finished: false,
        }
    }

    /// As [`Guest::enter`], for async code: the task waits without blocking its thread.
    ///
    /// On an open fortress the first poll most often goes in at once, with one
    /// read-modify-write and nothing stored. But entries spend a cooperative budget
    /// (see the [guide](crate::guide)): after 128 entries on a thread, whatever task
    /// made them, the next first poll wakes its own task and returns `Pending`, and so
    /// do the entries polled on the thread until that one is polled again (or, when
    /// other tasks' entries yielded meanwhile, for 64 yields). So a first poll on an open
    /// fortress may be `Pending`: a task alone on its thread sees one in 129, a task
    /// among many more (with the `tokio` feature, tokio's budget decides instead). For
    /// an attempt that never waits and never yields, use [`Guest::try_enter`].
    /// Dropping the future while it waits leaves nothing behind.
    ///
    /// # Errors
    /// As [`Guest::visit`].
    ///
    /// ```
    /// # futures_lite_block_on(async {
    /// use fortress_gate::{Abort, Fortress};
    ///
    /// let fortress = Fortress::new();
    /// fortress.guard().unlock()?;
    /// let guest = fortress.guest();
    /// let visit = guest.enter_async(&Abort::never()).await?;
    /// assert_eq!(fortress.guests(), 1);
    /// drop(visit);
    /// # Ok::<(), fortress_gate::Error>(())
    /// # }).unwrap();
    /// # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) { return out; }
    /// #         std::thread::yield_now();
    /// #     }
    /// # }
    /// ```
    #[must_use = "futures do nothing unless awaited"]
    // `Send` exactly when `T` is `Send + Sync` (the future's auto traits show through).
    #[allow(clippy::manual_async_fn)]
    pub fn enter_async<'g: 'a, 'a>(
        &'g self,
        abort: &'a Abort,
    ) -> impl Future<Output = Result<Visit<'g, T>, Error>> + 'a {
        // The entry future is built inside the block: built outside and moved in, it
        // was copied field by field into the block's state (about 2x slower).
        async move {
            let ticket = self.enter_future(abort).await?;
            Ok(Visit::new(&self.gate, ticket))
        }
    }

    /// As [`Guest::enter_async`], but the visit owns a handle to the fortress, so it
    /// can outlive this `Guest` (for instance in a spawned task).
    ///
    /// # Errors
    /// As [`Guest::visit`].
    #[must_use = "futures do nothing unless awaited"]
    // `Send` exactly when `T` is `Send + Sync` (the future's auto traits show through).
    #[allow(clippy::manual_async_fn)]
    pub fn enter_owned_async<'a>(
        &'a self,
        abort: &'a Abort,
    ) -> impl Future<Output = Result<OwnedVisit<T>, Error>> + 'a {
        async move {
            let ticket = self.enter_future(abort).await?;
            Ok(OwnedVisit::new(Arc::clone(&self.gate), ticket))
        }
    }

    /// As [`Guest::visit`], for async code: waits until the fortress is unlocked, then
    /// runs `fut` inside the visit. `fut` is first polled inside the visit; the visit
    /// ends when `fut` completes or when this future is dropped.
    ///
    /// # Errors
    /// As [`Guest::visit`]; `fut` is never polled then.
    pub async fn visit_async<R>(
        &self,
        fut: impl Future<Output = R>,
        abort: &Abort,
    ) -> Result<R, Error> {
        let ticket = self.enter_future(abort).await?;
        let _visit = Visit::new(&self.gate, ticket);
        Ok(fut.await)
    }
}

impl<T> Guard<T> {
    /// As [`Guard::lockdown`], for async code. The gate closes at the first poll;
    /// dropping the future after that leaves it closed, exactly as an aborted lockdown
    /// (a later [`unlock`](Guard::unlock) reopens it).
    ///
    /// # Errors
    /// As [`Guard::lockdown`].
    #[must_use = "futures do nothing unless awaited"]
    pub fn lockdown_async<'a>(
        &'a self,
        abort: &'a Abort,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a {
        Lockdown::new(&self.gate, abort, false)
    }

    /// As [`Guard::exclusive`], for async code: the gate closes at the first poll, and
    /// the returned [`Exclusive`] unlocks it when dropped.
    ///
    /// **Cancel-safe: it backs out.** If the future is dropped after its first poll
    /// and before it completes (a `select!` branch that loses, a timeout), or returns
    /// [`Error::Aborted`], it reopens the gate it shut, exactly as
    /// [`Guard::exclusive`] describes (never under another guard's later operation). A
    /// future dropped before its first poll does nothing.
    ///
    /// # Errors
    /// As [`Guard::exclusive`].
    #[must_use = "futures do nothing unless awaited"]
    // `Send` exactly when `T` is `Send + Sync` (the future's auto traits show through).
    #[allow(clippy::manual_async_fn)]
    pub fn exclusive_async<'g: 'a, 'a>(
        &'g self,
        abort: &'a Abort,
    ) -> impl Future<Output = Result<Exclusive<'g, T>, Error>> + 'a {
        async move {
            Lockdown::new(&self.gate, abort, true).await?;
            Ok(Exclusive::new(self))
        }
    }

    /// As [`Guard::exclusive_async`], returning an [`OwnedExclusive`] that holds a
    /// guard of its own (`Send + 'static`: it can be moved into a spawned task).
    ///
    /// # Errors
    /// As [`Guard::exclusive`].
    #[must_use = "futures do nothing unless awaited"]
    // `Send` exactly when `T` is `Send + Sync` (the future's auto traits show through).
    #[allow(clippy::manual_async_fn)]
    pub fn exclusive_owned_async<'a>(
        &'a self,
        abort: &'a Abort,
    ) -> impl Future<Output = Result<OwnedExclusive<T>, Error>> + 'a {
        async move {
            Lockdown::new(&self.gate, abort, true).await?;
            Ok(OwnedExclusive::new(self.clone()))
        }
    }
}

impl<T> Fortress<T> {
    /// As [`Worker::wait`](crate::Worker::wait), for async code: completes once the
    /// fortress is killed and no visit is running. It stays pending on a live
    /// fortress, however empty: only a kill ends it. Dropping it leaves nothing behind.
    pub async fn wait_async(&self) {
        Done {
            gate: &self.gate,
            wait: TaskWait::new(),
        }
        .await
    }
}
