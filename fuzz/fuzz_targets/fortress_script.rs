//! Runs an arbitrary script of operations on a real fortress from up to three threads
//! and checks the fortress's invariants after each step. Async entries and lockdowns
//! are polled by hand with a no-op waker: once, then again in a later step, or dropped
//! while pending. It never hangs: every blocking call carries an abort token that a
//! watchdog fires when the threads stop making progress, and if they are still stuck
//! (in `wait`), the watchdog kills the fortress.
#![no_main]

use arbitrary::Arbitrary;
use fortress_gate::internals::snapshot;
use fortress_gate::{Abort, Error, Fortress, Visit, Worker};
use libfuzzer_sys::fuzz_target;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    /// `enter_owned`, keeping the visit until a later `Leave`.
    Enter {
        prefired: bool,
    },
    Leave,
    TryEnter,
    /// A whole `visit` with a closure.
    Visit {
        prefired: bool,
    },
    Unlock,
    Lockdown {
        prefired: bool,
    },
    Kill,
    /// `wait`, only by a thread that holds no visit (else it waits on itself).
    Wait,
    /// `enter_async`, polled once; if pending, kept for `Poll` (and dropped at the end)
    /// or dropped at once.
    EnterAsync {
        prefired: bool,
        keep: bool,
    },
    /// `lockdown_async`, likewise.
    LockdownAsync {
        prefired: bool,
        keep: bool,
    },
    /// Polls the futures this thread kept once more.
    Poll,
}

#[derive(Arbitrary, Debug)]
struct Script {
    /// Unlock before the threads start.
    open: bool,
    threads: Vec<Vec<Op>>,
}

struct World {
    fortress: Fortress,
    watchdog: Abort,
    prefired: Abort,
    killed: AtomicBool,
    /// `unlock` calls begun and ended so far.
    unlocks: AtomicU64,
    unlocks_ended: AtomicU64,
    progress: AtomicU64,
    running: AtomicUsize,
}

impl World {
    /// Before a lockdown: `unlocks`, if no unlock is under way (one could still open the
    /// gate after the lockdown closes it).
    fn no_unlock_under_way(&self) -> Option<u64> {
        let ended = self.unlocks_ended.load(SeqCst);
        let begun = self.unlocks.load(SeqCst);
        (begun == ended).then_some(begun)
    }

    /// Whether no `unlock` has begun since `unlocks` was `at`. Call it after looking at
    /// the state word: the fence makes an unlock seen there visible here (every write to
    /// the word is a read-modify-write, so it continues the unlock's release sequence).
    fn no_unlock_since(&self, at: Option<u64>) -> bool {
        fence(Acquire);
        at == Some(self.unlocks.load(Relaxed))
    }
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// A future that returned `Pending`, with its token (and, for a lockdown,
/// `no_unlock_under_way` before its first poll).
enum Pending<'a> {
    Enter(Boxed<'a, Visit<'a>>, &'a Abort),
    Lockdown(Boxed<'a, ()>, &'a Abort, Option<u64>),
}

/// What one thread holds and knows.
struct Me<'a> {
    world: &'a World,
    /// Its visits, of any type: only their drop matters.
    visits: Vec<Box<dyn Send + 'a>>,
    pending: Vec<Pending<'a>>,
    /// This thread closed the gate after `unlocks` was this, with no unlock under way
    /// (the latest such value): while no unlock has begun since, the gate is closed.
    closed_at: Option<u64>,
    /// Whether `kill` had returned before this step began.
    killed: bool,
}

fn poll<T>(future: &mut Boxed<'_, T>) -> Poll<Result<T, Error>> {
    future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

impl<'a> Me<'a> {
    /// Checks the answer of an entry.
    fn admitted<V>(&self, r: Result<V, Error>, abort: &Abort) -> Option<V> {
        match r {
            Ok(v) => {
                assert!(!self.killed, "entered a killed fortress");
                let closed = self.world.no_unlock_since(self.closed_at);
                assert!(!closed, "entered a fortress that this thread had locked");
                Some(v)
            }
            Err(Error::Shutdown) => None,
            Err(e) => {
                assert!(!self.killed, "{e} after kill");
                assert_eq!(e, Error::Aborted);
                assert!(abort.is_aborted(), "aborted by a token that never fired");
                None
            }
        }
    }

    /// Checks the answer of an entry and keeps the visit.
    fn entered<V: Send + 'a>(&mut self, r: Result<V, Error>, abort: &Abort) {
        if let Some(visit) = self.admitted(r, abort) {
            self.visits.push(Box::new(visit));
        }
    }

    fn closed(&mut self, before: Option<u64>) {
        self.closed_at = self.closed_at.max(before);
    }

    /// Checks the answer of a lockdown; `before` is `no_unlock_under_way` at its start.
    fn locked_down(&mut self, r: Result<(), Error>, abort: &Abort, before: Option<u64>) {
        if self.killed {
            assert_eq!(r, Err(Error::Shutdown), "a lockdown after kill");
        }
        if !self.visits.is_empty() {
            assert_ne!(
                r,
                Ok(()),
                "lockdown returned Ok with this thread's visit inside"
            );
        }
        match r {
            Err(Error::Shutdown) => {}
            Err(Error::Aborted) => {
                assert!(abort.is_aborted(), "aborted by a token that never fired");
                self.closed(before); // an aborted lockdown still locks
            }
            _ => self.closed(before),
        }
    }

    /// Polls an entry; keeps it if pending and `keep`, else drops it.
    fn enter_async(&mut self, mut future: Boxed<'a, Visit<'a>>, abort: &'a Abort, keep: bool) {
        match poll(&mut future) {
            Poll::Ready(r) => self.entered(r, abort),
            Poll::Pending if keep => self.pending.push(Pending::Enter(future, abort)),
            Poll::Pending => {}
        }
    }

    /// Polls a lockdown; keeps it if pending and `keep`, else drops it.
    fn lockdown_async(
        &mut self,
        mut future: Boxed<'a, ()>,
        abort: &'a Abort,
        before: Option<u64>,
        keep: bool,
    ) {
        match poll(&mut future) {
            Poll::Ready(r) => self.locked_down(r, abort, before),
            Poll::Pending => {
                self.closed(before); // at its first poll; dropping it changes nothing
                if keep {
                    self.pending.push(Pending::Lockdown(future, abort, before));
                }
            }
        }
    }
}

fn run(world: &World, ops: &[Op]) {
    let fortress = &world.fortress;
    let (guard, guest) = (fortress.guard(), fortress.guest());
    let mut me = Me {
        world,
        visits: Vec::new(),
        pending: Vec::new(),
        closed_at: None,
        killed: false,
    };
    for &op in ops {
        me.killed = world.killed.load(SeqCst);
        let abort = |prefired: bool| {
            if prefired {
                &world.prefired
            } else {
                &world.watchdog
            }
        };
        match op {
            Op::Enter { prefired } => {
                me.entered(guest.enter_owned(abort(prefired)), abort(prefired))
            }
            Op::Leave => drop(me.visits.pop()),
            Op::TryEnter => {
                // A refusal (`None`) needs no check: stand in `Shutdown` for it.
                let visit = guest.try_enter().ok_or(Error::Shutdown);
                drop(me.admitted(visit, &world.prefired));
            }
            Op::Visit { prefired } => {
                let ran = guest.visit(|| snapshot(fortress).guests(), abort(prefired));
                if let Some(inside) = me.admitted(ran, abort(prefired)) {
                    assert!(inside > me.visits.len() as u64, "the visit was not counted");
                }
            }
            Op::Unlock => {
                world.unlocks.fetch_add(1, SeqCst);
                let r = guard.unlock();
                world.unlocks_ended.fetch_add(1, SeqCst);
                assert!(r.is_ok() || r == Err(Error::Shutdown));
                assert!(!(me.killed && r.is_ok()), "unlock succeeded after kill");
            }
            Op::Lockdown { prefired } => {
                let before = world.no_unlock_under_way();
                me.locked_down(guard.lockdown(abort(prefired)), abort(prefired), before);
            }
            Op::Kill => {
                fortress.kill();
                world.killed.store(true, SeqCst);
                assert!(snapshot(fortress).shut_down());
            }
            Op::Wait if me.visits.is_empty() => {
                fortress.wait().unwrap();
                assert!(snapshot(fortress).shut_down(), "wait returned before kill");
            }
            Op::Wait => {}
            Op::EnterAsync { prefired, keep } => {
                let future = Box::pin(guest.enter_async(abort(prefired)));
                me.enter_async(future, abort(prefired), keep);
            }
            Op::LockdownAsync { prefired, keep } => {
                let before = world.no_unlock_under_way();
                let future = Box::pin(guard.lockdown_async(abort(prefired)));
                me.lockdown_async(future, abort(prefired), before, keep);
            }
            Op::Poll => {
                for pending in std::mem::take(&mut me.pending) {
                    match pending {
                        Pending::Enter(future, abort) => me.enter_async(future, abort, true),
                        Pending::Lockdown(future, abort, before) => {
                            me.lockdown_async(future, abort, before, true)
                        }
                    }
                }
            }
        }
        let s = snapshot(fortress);
        assert!(
            s.guests() >= me.visits.len() as u64,
            "visits went missing: {s:?}"
        );
        if world.no_unlock_since(me.closed_at) {
            assert!(
                s.locked(),
                "the gate opened with no unlock: {s:?} after {op:?}"
            );
        }
        world.progress.fetch_add(1, SeqCst);
    }
    drop(me);
    world.running.fetch_sub(1, SeqCst);
}

fuzz_target!(|script: Script| {
    let threads: Vec<&[Op]> = script
        .threads
        .iter()
        .take(3)
        .map(|t| &t[..t.len().min(64)])
        .collect();
    let prefired = Abort::new();
    prefired.abort();
    let world = World {
        fortress: Fortress::new(),
        watchdog: Abort::new(),
        prefired,
        killed: AtomicBool::new(false),
        unlocks: AtomicU64::new(0),
        unlocks_ended: AtomicU64::new(0),
        progress: AtomicU64::new(0),
        running: AtomicUsize::new(threads.len()),
    };
    if script.open {
        world.fortress.guard().unlock().unwrap();
    }
    std::thread::scope(|s| {
        for ops in &threads {
            let world = &world;
            s.spawn(move || run(world, ops));
        }
        // The watchdog: on a stall, first fire the token, then kill.
        let mut last = u64::MAX;
        let mut stalls = 0;
        while world.running.load(SeqCst) > 0 {
            std::thread::sleep(Duration::from_micros(200));
            let now = world.progress.load(SeqCst);
            if now != last {
                (last, stalls) = (now, 0);
                continue;
            }
            stalls += 1;
            if stalls == 10 {
                world.watchdog.abort();
            } else if stalls == 20 {
                world.fortress.kill();
                world.killed.store(true, SeqCst);
            }
        }
    });
    let end = snapshot(&world.fortress);
    assert_eq!(end.guests(), 0, "a visit was lost: {end:?}");
    assert_eq!(end.check_invariants(), Ok(()), "{end:?}");
    world.fortress.kill();
    world.fortress.wait().unwrap();
});
