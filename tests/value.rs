//! `Fortress<T>`: the value a fortress holds, on every layout (`Word`, `Sharded`,
//! `Shards(3)`).
//!
//! * every form of visit reads the value and every form of exclusive phase writes it,
//!   and a write is seen by every later visit;
//! * no visit sees a phase's write half done, whatever the form of the visit;
//! * a phase that gives up (aborted, or its future dropped while it waits) writes
//!   nothing;
//! * the value is dropped exactly once, by whatever lets it go last (a handle, a
//!   visit, a phase, on another thread too), after a kill, after panics (which poison
//!   nothing), and not at all when `try_into_inner` hands it back;
//! * a guest of a killed fortress keeps the value alive until it goes;
//! * a new fortress is locked and tells the layout it was asked for.
//!
//! Each test loops over the layouts itself, so `tests/sharded.rs` does not include
//! this file.
//!
//! Every wait is bounded: phases that must not wait are asked for with a token that
//! has already fired (`fired()`), so a visit wrongly left inside fails the test at
//! once instead of hanging it; the rest go through `within`, `block_within`, `join`
//! or a deadline of `HANG`.

mod common;

/// Guest slots of `common::fortress`: unused here, as every test runs on every layout
/// itself.
#[allow(dead_code)]
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::Word;

use common::{block_within, fired, join, poll_noop, recv_within, within, HANG};
use fortress_gate::{Abort, Error, Fortress, Guest, Layout, Worker};
use std::any::Any;
use std::ops::DerefMut;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// Every layout, each test runs on all of them.
const LAYOUTS: [Layout; 4] = [
    Layout::Word,
    Layout::Sharded,
    Layout::Shards(3),
    Layout::ReadMostly,
];

/// A fortress of `layout` holding `value`, unlocked.
fn open<T>(value: T, layout: Layout) -> Fortress<T> {
    let fortress = Fortress::holding_with(value, layout);
    fortress.guard().unlock().unwrap();
    fortress
}

/// Whether to run small: under Miri, or where CI sets `FORTRESS_NO_TIMING`
/// (ThreadSanitizer).
fn small() -> bool {
    cfg!(miri) || std::env::var_os("FORTRESS_NO_TIMING").is_some()
}

/// A short deadline, for a wait that must give up (a visit stays inside meanwhile).
fn soon() -> Abort {
    Abort::after(Duration::from_millis(10))
}

// ----- A value that counts its drops -----

/// How often, and on which thread last, a [`Counted`] value was dropped.
#[derive(Default)]
struct Drops {
    count: AtomicUsize,
    thread: Mutex<Option<ThreadId>>,
}

impl Drops {
    fn count(&self) -> usize {
        self.count.load(SeqCst)
    }

    fn thread(&self) -> Option<ThreadId> {
        *self.thread.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A value that records its drops in a shared [`Drops`].
struct Counted {
    text: String,
    drops: Arc<Drops>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        *self
            .drops
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(thread::current().id());
        self.drops.count.fetch_add(1, SeqCst);
    }
}

/// A counted value holding `text`, and its record of drops.
fn counted(text: &str) -> (Arc<Drops>, Counted) {
    let drops = Arc::new(Drops::default());
    let value = Counted {
        text: text.to_owned(),
        drops: drops.clone(),
    };
    (drops, value)
}

// ----- Every form reads and writes -----

/// Reads the value through every form of visit, several of them inside at once, and
/// checks that each sees `expected`. The blocking forms use a token that has fired:
/// an open fortress admits them without a wait. Every visit has left on return.
fn reads_everywhere(rt: &Runtime, guest: &Guest<String>, expected: &str, layout: Layout) {
    let what = format!("{layout:?}, expecting {expected:?}");
    assert_eq!(
        guest.read(|value| value.clone(), &fired()).as_deref(),
        Ok(expected),
        "read, {what}"
    );
    let visit = guest.enter(&fired()).expect("enter an open fortress");
    let owned = guest
        .enter_owned(&fired())
        .expect("enter_owned an open fortress");
    let tried = guest.try_enter().expect("try_enter an open fortress");
    assert_eq!(*visit, expected, "enter, {what}");
    assert_eq!(*owned, expected, "enter_owned, {what}");
    assert_eq!(*tried, expected, "try_enter, {what}");
    // An owned visit read on another thread, and ended there.
    let there = within("an owned visit on another thread", move || owned.clone());
    assert_eq!(there, expected, "enter_owned on another thread, {what}");
    drop((visit, tried));

    let never = Abort::never();
    let (visit, owned) = block_within(rt, "the async entries", async {
        let visit = guest.enter_async(&never).await.expect("enter_async");
        let owned = guest
            .enter_owned_async(&never)
            .await
            .expect("enter_owned_async");
        (visit.clone(), owned.clone())
    });
    assert_eq!(visit, expected, "enter_async, {what}");
    assert_eq!(owned, expected, "enter_owned_async, {what}");
    // The owned async visit in a spawned task, on a runtime thread.
    let guest = guest.clone();
    let task = rt.spawn(async move {
        let never = Abort::never();
        let visit = guest
            .enter_owned_async(&never)
            .await
            .expect("enter_owned_async");
        visit.clone()
    });
    let there = join(rt, "an owned async visit in a task", task);
    assert_eq!(there, expected, "enter_owned_async in a task, {what}");
}

/// Every form of visit (`read`, `enter`, `enter_owned`, `try_enter`, `enter_async`,
/// `enter_owned_async`) reads the value, and every form of exclusive phase
/// (`exclusive`, `exclusive_owned` written on another thread, `exclusive_async`,
/// `exclusive_owned_async` in a spawned task) reads it and writes it through
/// `DerefMut`: each write is seen by every later visit, of every form. Each phase is
/// asked for with a token that has fired, so it succeeds only if every earlier visit
/// has left (no wait was needed).
#[test]
fn every_form_reads_and_every_exclusive_form_writes() {
    let rt = common::runtime();
    for layout in LAYOUTS {
        let fortress = open(String::from("v"), layout);
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let mut expected = String::from("v");
        reads_everywhere(&rt, &guest, &expected, layout);
        assert_eq!(
            guest.visit(|| 7, &fired()),
            Ok(7),
            "visit's closure takes no argument"
        );

        {
            let mut exclusive = guard.exclusive(&fired()).expect("exclusive: nobody inside");
            assert_eq!(*exclusive, expected, "exclusive reads, {layout:?}");
            exclusive.push('1');
            assert!(guest.try_enter().is_none(), "no visit during the phase");
        }
        expected.push('1');
        reads_everywhere(&rt, &guest, &expected, layout);

        let mut owned = guard
            .exclusive_owned(&fired())
            .expect("exclusive_owned: nobody inside");
        assert_eq!(*owned, expected, "exclusive_owned reads, {layout:?}");
        assert!(guest.try_enter().is_none(), "no visit during the phase");
        // Written, and the phase ended, on another thread.
        within("a phase on another thread", move || owned.push('2'));
        expected.push('2');
        reads_everywhere(&rt, &guest, &expected, layout);

        block_within(&rt, "exclusive_async", async {
            let abort = fired();
            let mut exclusive = guard
                .exclusive_async(&abort)
                .await
                .expect("exclusive_async: nobody inside");
            assert_eq!(*exclusive, expected, "exclusive_async reads, {layout:?}");
            exclusive.push('3');
            assert!(guest.try_enter().is_none(), "no visit during the phase");
        });
        expected.push('3');
        reads_everywhere(&rt, &guest, &expected, layout);

        let (task_guard, before) = (guard.clone(), expected.clone());
        let task = rt.spawn(async move {
            let abort = fired();
            let mut exclusive = task_guard
                .exclusive_owned_async(&abort)
                .await
                .expect("exclusive_owned_async: nobody inside");
            assert_eq!(*exclusive, before, "exclusive_owned_async reads");
            exclusive.push('4');
        });
        join(&rt, "exclusive_owned_async in a task", task);
        expected.push('4');
        reads_everywhere(&rt, &guest, &expected, layout);

        assert_eq!(expected, "v1234");
        assert!(!fortress.is_locked(), "every phase unlocked at its end");
    }
}

// ----- No torn read -----

/// What the writer of the torn-read test rewrites one field at a time. In version `n`,
/// every word is `n`, and the text and the list both have `n % 64` entries.
#[derive(Debug)]
struct Record {
    words: [u64; 8],
    text: String,
    list: Vec<u64>,
}

impl Record {
    fn new() -> Record {
        // With room for every version, so that a torn read (if the test ever sees one)
        // reads stale lengths, not freed memory.
        Record {
            words: [0; 8],
            text: String::with_capacity(64),
            list: Vec::with_capacity(64),
        }
    }

    /// The version, after checking that every field agrees with it. It reads half the
    /// fields, lets other threads run, then reads the rest: a phase that overlapped
    /// this visit would show as a mix of versions.
    fn version(&self) -> u64 {
        let n = self.words[0];
        let text = self.text.len() as u64;
        thread::yield_now();
        assert!(
            self.words.iter().all(|&word| word == n),
            "a torn read: words {:?}",
            self.words
        );
        assert_eq!(text, n % 64, "a torn read: text of {n}");
        assert_eq!(self.list.len() as u64, n % 64, "a torn read: list of {n}");
        assert_eq!(self.text.len() as u64, n % 64, "a torn read: text of {n}");
        n
    }
}

/// Rewrites the record of a phase as version `n`, in separate writes through the
/// phase's `DerefMut`, letting other threads run between them: a visit that
/// overlapped the phase would see a mix of versions.
fn write_version(record: &mut impl DerefMut<Target = Record>, n: u64) {
    for i in 0..4 {
        record.words[i] = n;
    }
    thread::yield_now();
    for i in 4..8 {
        record.words[i] = n;
    }
    if n % 64 == 0 {
        record.text.clear();
        thread::yield_now();
        record.list.clear();
    } else {
        record.text.push('x');
        thread::yield_now();
        record.list.push(n);
    }
}

/// Reads done by one kind of reader, and the writer to tell of each.
struct Reads {
    count: AtomicU64,
    writer: thread::Thread,
}

impl Reads {
    fn new() -> Arc<Reads> {
        Arc::new(Reads {
            count: AtomicU64::new(0),
            writer: thread::current(),
        })
    }

    fn one_more(&self) {
        self.count.fetch_add(1, SeqCst);
        self.writer.unpark();
    }

    fn count(&self) -> u64 {
        self.count.load(SeqCst)
    }

    /// On the writer: waits until the count has passed `seen`; `false` if a reader
    /// stopped first (it panicked: the caller joins it to tell why). Each read unparks
    /// the writer; the timeout only lets it look at `stopped` and the time now and
    /// then.
    fn until_past(&self, seen: u64, stopped: impl Fn() -> bool) -> bool {
        let start = Instant::now();
        while self.count() <= seen {
            if stopped() {
                return false;
            }
            assert!(start.elapsed() < HANG, "the readers made no progress");
            thread::park_timeout(Duration::from_millis(10));
        }
        true
    }
}

/// One run of the torn-read test on `layout`: reader threads (rotating over `read`,
/// `enter` and `try_enter`) and reader tasks (`enter_async`) against a writer whose
/// phases (`exclusive` and `exclusive_owned`, in turn) rewrite the record field by
/// field. The writer starts a phase only once a thread and a task have both read
/// since the last one, so readers of both kinds are about every phase; and each visit
/// lasts across a yield, so a phase that did not wait for the visits inside would
/// overlap one.
fn no_torn_read_on(rt: &Runtime, layout: Layout) {
    let (phases, threads, tasks) = match (cfg!(miri), small()) {
        (true, _) => (4, 1, 1),
        (false, true) => (200, 2, 2),
        (false, false) => (2000, 2, 2),
    };
    let fortress = open(Record::new(), layout);
    let guard = fortress.guard();
    let bound = Abort::after(HANG);
    let done = Arc::new(AtomicBool::new(false));
    let (thread_reads, task_reads) = (Reads::new(), Reads::new());

    let readers: Vec<thread::JoinHandle<u64>> = (0..threads)
        .map(|i| {
            let (guest, bound, done, reads) = (
                fortress.guest(),
                bound.clone(),
                done.clone(),
                thread_reads.clone(),
            );
            thread::spawn(move || {
                let (mut last, mut form) = (0, i);
                while !done.load(SeqCst) {
                    form += 1;
                    let seen = match form % 3 {
                        0 => guest.read(Record::version, &bound).expect("read"),
                        1 => guest.enter(&bound).expect("enter").version(),
                        _ => match guest.try_enter() {
                            Some(visit) => visit.version(),
                            None => continue, // a phase holds the gate
                        },
                    };
                    assert!(seen >= last, "a read went back from {last} to {seen}");
                    last = seen;
                    reads.one_more();
                }
                last
            })
        })
        .collect();
    let readers_in_tasks: Vec<tokio::task::JoinHandle<u64>> = (0..tasks)
        .map(|_| {
            let (guest, bound, done, reads) = (
                fortress.guest(),
                bound.clone(),
                done.clone(),
                task_reads.clone(),
            );
            rt.spawn(async move {
                let mut last = 0;
                while !done.load(SeqCst) {
                    let seen = guest
                        .enter_async(&bound)
                        .await
                        .expect("enter_async")
                        .version();
                    assert!(
                        seen >= last,
                        "an async read went back from {last} to {seen}"
                    );
                    last = seen;
                    reads.one_more();
                }
                last
            })
        })
        .collect();

    let stopped = || {
        readers.iter().any(|reader| reader.is_finished())
            || readers_in_tasks.iter().any(|task| task.is_finished())
    };
    let (mut threads_seen, mut tasks_seen, mut written) = (0, 0, 0);
    for n in 1..=phases {
        if !thread_reads.until_past(threads_seen, stopped)
            || !task_reads.until_past(tasks_seen, stopped)
        {
            break;
        }
        if n % 2 == 0 {
            let mut exclusive = guard.exclusive(&bound).expect("exclusive");
            assert_eq!(exclusive.version(), n - 1, "the last phase's write stayed");
            write_version(&mut exclusive, n);
        } else {
            let mut exclusive = guard.exclusive_owned(&bound).expect("exclusive_owned");
            assert_eq!(exclusive.version(), n - 1, "the last phase's write stayed");
            write_version(&mut exclusive, n);
        }
        written = n;
        threads_seen = thread_reads.count();
        tasks_seen = task_reads.count();
    }
    done.store(true, SeqCst);

    // A reader's panic (a torn read) propagates from here.
    let last_seen = within("the reader threads end", move || {
        readers
            .into_iter()
            .map(|reader| reader.join().unwrap_or_else(|panic| resume_unwind(panic)))
            .collect::<Vec<_>>()
    });
    for task in readers_in_tasks {
        join(rt, "a reader task ends", task);
    }
    assert_eq!(written, phases, "{layout:?}: the writer stopped early");
    assert!(
        last_seen.iter().all(|&n| n <= phases),
        "{layout:?}: a read from the future: {last_seen:?}"
    );
    let reads = thread_reads.count() + task_reads.count();
    assert!(
        reads >= 2 * phases,
        "{layout:?}: {reads} reads for {phases} phases"
    );
    let end = fortress.guest().read(Record::version, &fired());
    assert_eq!(end, Ok(phases), "{layout:?}: the last write is there");
}

/// No torn read: while an exclusive writer rewrites a multi-field value one field at
/// a time, phase after phase, visits through `read`, `enter`, `try_enter` (on several
/// threads) and `enter_async` (tasks on a multi-thread runtime) always see every
/// field of one version, and never an older version than they saw before.
#[test]
fn no_visit_sees_a_phase_half_done() {
    let rt = if cfg!(miri) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .expect("a tokio runtime")
    } else {
        common::runtime()
    };
    for layout in LAYOUTS {
        no_torn_read_on(&rt, layout);
    }
}

// ----- A phase that gives up writes nothing -----

/// An exclusive phase that gives up leaves the value untouched. With a visit inside,
/// so that every phase must wait: `exclusive` with a token that fired before the call,
/// `exclusive_owned` with one that fires during the wait, `exclusive_async` aborted,
/// and `exclusive_async` and `exclusive_owned_async` dropped after their first poll
/// (before the write that follows their `await` could run): the value is the same
/// (same contents, same buffer, never dropped), visits see it, and every one of them
/// reopened the gate.
#[test]
fn an_exclusive_that_gives_up_writes_nothing() {
    let rt = common::runtime();
    for layout in LAYOUTS {
        let (drops, value) = counted("before");
        let fortress = open(value, layout);
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let visit = guest.enter_owned(&fired()).unwrap();
        let buffer = visit.text.as_ptr();

        assert_eq!(
            guard.exclusive(&fired()).err(),
            Some(Error::Aborted),
            "{layout:?}: exclusive, fired before"
        );
        assert!(!fortress.is_locked(), "{layout:?}: exclusive backed out");
        assert_eq!(
            guard.exclusive_owned(&soon()).err(),
            Some(Error::Aborted),
            "{layout:?}: exclusive_owned, fired during the wait"
        );
        assert!(
            !fortress.is_locked(),
            "{layout:?}: exclusive_owned backed out"
        );
        let aborted = block_within(&rt, "exclusive_async, aborted", async {
            let abort = soon();
            guard.exclusive_async(&abort).await.err()
        });
        assert_eq!(aborted, Some(Error::Aborted), "{layout:?}: exclusive_async");
        assert!(
            !fortress.is_locked(),
            "{layout:?}: exclusive_async backed out"
        );

        let never = Abort::never();
        let mut write = Box::pin(async {
            let mut exclusive = guard.exclusive_async(&never).await.unwrap();
            exclusive.text.push_str(", and written by exclusive_async");
        });
        assert!(poll_noop(write.as_mut()).is_pending(), "a visit is inside");
        assert!(
            fortress.is_locked(),
            "{layout:?}: its first poll closed the gate"
        );
        assert!(guest.try_enter().is_none());
        drop(write);
        assert!(
            !fortress.is_locked(),
            "{layout:?}: exclusive_async dropped, backed out"
        );

        let mut write = Box::pin(async {
            let mut exclusive = guard.exclusive_owned_async(&never).await.unwrap();
            exclusive
                .text
                .push_str(", and written by exclusive_owned_async");
        });
        assert!(poll_noop(write.as_mut()).is_pending(), "a visit is inside");
        assert!(
            fortress.is_locked(),
            "{layout:?}: its first poll closed the gate"
        );
        drop(write);
        assert!(
            !fortress.is_locked(),
            "{layout:?}: exclusive_owned_async dropped, backed out"
        );

        assert_eq!(visit.text, "before", "{layout:?}: the visit inside");
        assert_eq!(visit.text.as_ptr(), buffer, "{layout:?}: not replaced");
        let seen = guest.read(|value| value.text.clone(), &fired());
        assert_eq!(seen.as_deref(), Ok("before"), "{layout:?}: a new visit");
        drop(visit);
        assert_eq!(drops.count(), 0, "{layout:?}: never dropped");

        // The gate is in order: a phase gets in with no wait, and writes.
        guard.exclusive(&fired()).expect("nobody inside").text += ", then after";
        let seen = guest.read(|value| value.text.clone(), &fired());
        assert_eq!(seen.as_deref(), Ok("before, then after"), "{layout:?}");
        drop((fortress, guard, guest));
        assert_eq!(drops.count(), 1, "{layout:?}: dropped once at the end");
    }
}

// ----- Dropped exactly once -----

/// The value is dropped exactly once, on the thread that lets go last, by whichever
/// handle goes last (the fortress, a guard, a guest, an owned visit), and not before;
/// with the gate open, and with it closed (an aborted lockdown), where the last
/// opener's drop kills the fortress.
#[test]
fn the_value_is_dropped_once_by_whatever_goes_last() {
    for layout in LAYOUTS {
        for closed in [false, true] {
            for last in 0..4 {
                let (drops, value) = counted("v");
                let fortress = open(value, layout);
                let (guard, guest) = (fortress.guard(), fortress.guest());
                let visit = guest.enter_owned(&fired()).unwrap();
                if closed {
                    // Closes the gate, then gives up waiting for the visit.
                    assert_eq!(guard.lockdown(&fired()), Err(Error::Aborted));
                }
                let mut handles: Vec<(&str, Box<dyn Any>)> = vec![
                    ("fortress", Box::new(fortress)),
                    ("guard", Box::new(guard)),
                    ("guest", Box::new(guest)),
                    ("owned visit", Box::new(visit)),
                ];
                let (what, lasting) = handles.remove(last);
                let case = format!("{layout:?}, closed: {closed}, last: {what}");
                for (other, handle) in handles {
                    drop(handle);
                    assert_eq!(drops.count(), 0, "{case}: dropped with the {other}");
                }
                drop(lasting);
                assert_eq!(drops.count(), 1, "{case}");
                assert_eq!(drops.thread(), Some(thread::current().id()), "{case}");
            }
        }
    }
}

/// After `kill`, the value lives on while a handle or a visit does: the visit inside
/// still reads it, `wait` returns once that visit has left, and the value is dropped
/// exactly once when the last handle goes.
#[test]
fn the_value_is_dropped_once_after_a_kill() {
    for layout in LAYOUTS {
        let (drops, value) = counted("v");
        let fortress = open(value, layout);
        let (guard, guest) = (fortress.guard(), fortress.guest());
        let visit = guest.enter_owned(&fired()).unwrap();
        fortress.kill();
        assert_eq!(
            guest.read(|value| value.text.clone(), &fired()),
            Err(Error::Shutdown)
        );
        assert_eq!(visit.text, "v", "{layout:?}: the visit inside goes on");
        assert_eq!(
            fortress.wait_with(&fired()),
            Err(Error::Aborted),
            "{layout:?}: a visit is inside"
        );
        drop(visit);
        assert_eq!(
            fortress.wait_with(&fired()),
            Ok(()),
            "{layout:?}: killed and empty"
        );
        drop((guest, guard));
        assert_eq!(drops.count(), 0, "{layout:?}: the fortress still holds it");
        drop(fortress);
        assert_eq!(drops.count(), 1, "{layout:?}");
    }
}

/// When the last thing alive is an `OwnedVisit` moved to another thread, the value is
/// dropped exactly once, by that visit's drop, on that thread.
#[test]
fn the_value_is_dropped_by_the_last_owned_visit_on_its_thread() {
    for layout in LAYOUTS {
        let (drops, value) = counted("v");
        let fortress = open(value, layout);
        let visit = fortress.guest().enter_owned(&fired()).unwrap();
        let (go, wait_go) = mpsc::channel::<()>();
        let reader = thread::spawn(move || {
            recv_within(&wait_go, "the go");
            let text = visit.text.clone();
            drop(visit);
            (thread::current().id(), text)
        });
        drop(fortress);
        assert_eq!(drops.count(), 0, "{layout:?}: the visit keeps it");
        go.send(()).unwrap();
        let (there, text) = within("the visit's thread", move || reader.join().unwrap());
        assert_eq!(text, "v", "{layout:?}: read after its handles went");
        assert_eq!(drops.count(), 1, "{layout:?}");
        assert_eq!(
            drops.thread(),
            Some(there),
            "{layout:?}: on the visit's thread"
        );
        assert_ne!(there, thread::current().id());
    }
}

/// When the last thing alive is an `OwnedExclusive`, it keeps the value, still writes
/// it, and its drop (on another thread) drops the value exactly once, there.
#[test]
fn the_value_is_dropped_by_the_last_owned_exclusive_on_its_thread() {
    for layout in LAYOUTS {
        let (drops, value) = counted("v");
        let fortress = open(value, layout);
        let exclusive = fortress.guard().exclusive_owned(&fired()).unwrap();
        drop(fortress);
        assert_eq!(drops.count(), 0, "{layout:?}: the phase keeps it");
        let (there, text) = within("the phase's thread", move || {
            let mut exclusive = exclusive;
            exclusive.text.push_str(" written");
            let text = exclusive.text.clone();
            drop(exclusive);
            (thread::current().id(), text)
        });
        assert_eq!(text, "v written");
        assert_eq!(drops.count(), 1, "{layout:?}");
        assert_eq!(
            drops.thread(),
            Some(there),
            "{layout:?}: on the phase's thread"
        );
        assert_ne!(there, thread::current().id());
    }
}

/// A panic inside `read`, inside `visit`, or while a `Visit` or an `OwnedVisit` is held
/// ends the visit during the unwinding and poisons nothing: afterwards the fortress is
/// open and empty (a phase gets in with a fired token, so without a wait), the value
/// is unchanged and not dropped, and it is dropped exactly once at the end.
#[test]
fn a_panic_in_a_visit_poisons_nothing() {
    type Panicker = fn(&Guest<Counted>);
    let panickers: [(&str, Panicker); 4] = [
        ("read", |guest| {
            let _ = guest.read(|_| panic!("a panic inside read"), &fired());
        }),
        ("visit", |guest| {
            let _ = guest.visit(|| panic!("a panic inside visit"), &fired());
        }),
        ("enter", |guest| {
            let visit = guest.enter(&fired()).unwrap();
            assert_eq!(visit.text, "v");
            panic!("a panic holding a Visit");
        }),
        ("enter_owned", |guest| {
            let visit = guest.enter_owned(&fired()).unwrap();
            assert_eq!(visit.text, "v");
            panic!("a panic holding an OwnedVisit");
        }),
    ];
    for layout in LAYOUTS {
        let (drops, value) = counted("v");
        let fortress = open(value, layout);
        let (guard, guest) = (fortress.guard(), fortress.guest());
        for (what, panicker) in panickers {
            let outcome = catch_unwind(AssertUnwindSafe(|| panicker(&guest)));
            assert!(outcome.is_err(), "{layout:?}, {what}: it panicked");
            assert_eq!(fortress.guests(), 0, "{layout:?}, {what}: the visit ended");
            assert!(!fortress.is_locked(), "{layout:?}, {what}");
            let seen = guest.read(|value| value.text.clone(), &fired());
            assert_eq!(
                seen.as_deref(),
                Ok("v"),
                "{layout:?}, {what}: open, unchanged"
            );
            drop(guard.exclusive(&fired()).expect("nobody inside: no wait"));
        }
        assert_eq!(drops.count(), 0, "{layout:?}: no panic dropped it");
        drop((fortress, guard, guest));
        assert_eq!(drops.count(), 1, "{layout:?}");
    }
}

/// A panic during an exclusive phase that already wrote poisons nothing: the write
/// stays, and the phase ended during the unwinding, so the fortress is unlocked and
/// visits see the write. For an `Exclusive` on this thread and an `OwnedExclusive` on
/// another; the value is dropped exactly once at the end.
#[test]
fn a_panic_in_an_exclusive_phase_keeps_its_write_and_unlocks() {
    for layout in LAYOUTS {
        let (drops, value) = counted("v");
        let fortress = open(value, layout);
        let (guard, guest) = (fortress.guard(), fortress.guest());

        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut exclusive = guard.exclusive(&fired()).unwrap();
            exclusive.text = String::from("half");
            exclusive.text.push_str(" done");
            panic!("a panic holding an Exclusive");
        }));
        assert!(outcome.is_err());
        assert!(!fortress.is_locked(), "{layout:?}: the phase ended");
        let seen = guest.read(|value| value.text.clone(), &fired());
        assert_eq!(
            seen.as_deref(),
            Ok("half done"),
            "{layout:?}: the write stays"
        );

        let mut exclusive = guard.exclusive_owned(&fired()).unwrap();
        let outcome = within("a panic on the phase's thread", move || {
            catch_unwind(AssertUnwindSafe(move || {
                exclusive.text.push_str(", then more");
                panic!("a panic holding an OwnedExclusive");
            }))
            .is_err()
        });
        assert!(outcome, "{layout:?}: it panicked");
        assert!(!fortress.is_locked(), "{layout:?}: the owned phase ended");
        let seen = guest.read(|value| value.text.clone(), &fired());
        assert_eq!(seen.as_deref(), Ok("half done, then more"), "{layout:?}");
        drop(guard.exclusive(&fired()).expect("nobody inside: no wait"));

        assert_eq!(drops.count(), 0, "{layout:?}: only the text was replaced");
        drop((fortress, guard, guest));
        assert_eq!(drops.count(), 1, "{layout:?}");
    }
}

/// `try_into_inner` answers `Err` with the fortress, untouched and still usable, while
/// another handle (a guest, a clone) or an owned visit exists; once it is the sole
/// handle, on a live or a killed fortress, it hands the value back, and the fortress
/// does not drop it: the caller does, once.
#[test]
fn try_into_inner_hands_the_value_back_to_the_sole_handle() {
    for layout in LAYOUTS {
        for kill in [false, true] {
            let case = format!("{layout:?}, killed: {kill}");
            let (drops, value) = counted("inner");
            let fortress = Fortress::holding_with(value, layout);

            let guest = fortress.guest();
            let Err(fortress) = fortress.try_into_inner() else {
                panic!("{case}: handed out while a guest exists");
            };
            drop(guest);
            let clone = fortress.clone();
            let Err(fortress) = fortress.try_into_inner() else {
                panic!("{case}: handed out while a clone exists");
            };
            drop(clone);
            assert!(fortress.is_locked(), "{case}: the Err left the state alone");
            fortress.guard().unlock().unwrap();
            let visit = fortress.guest().enter_owned(&fired()).unwrap();
            let Err(fortress) = fortress.try_into_inner() else {
                panic!("{case}: handed out while an owned visit exists");
            };
            assert_eq!(fortress.guests(), 1, "{case}: the visit is still inside");
            drop(visit);
            assert_eq!(drops.count(), 0, "{case}");
            if kill {
                fortress.kill();
            }

            let value = fortress
                .try_into_inner()
                .unwrap_or_else(|_| panic!("{case}: the sole handle"));
            assert_eq!(value.text, "inner", "{case}");
            assert_eq!(drops.count(), 0, "{case}: handed back, not dropped");
            drop(value);
            assert_eq!(drops.count(), 1, "{case}: dropped once, by the caller");
        }
    }
}

/// `get_mut` gives the value only to the sole handle: `None` while a guard, a guest, a
/// clone, an owned visit or an owned exclusive phase exists (whatever the gate's
/// state), `Some` otherwise; a write through it is seen by later visits.
#[test]
fn get_mut_only_for_the_sole_handle() {
    for layout in LAYOUTS {
        let (drops, value) = counted("v");
        let mut fortress = Fortress::holding_with(value, layout);
        fortress
            .get_mut()
            .expect("sole handle, locked")
            .text
            .push('1');

        let guard = fortress.guard();
        assert!(
            fortress.get_mut().is_none(),
            "{layout:?}: a guard shares it"
        );
        guard.unlock().unwrap();
        drop(guard);
        let guest = fortress.guest();
        assert!(
            fortress.get_mut().is_none(),
            "{layout:?}: a guest shares it"
        );
        drop(guest);
        let clone = fortress.clone();
        assert!(
            fortress.get_mut().is_none(),
            "{layout:?}: a clone shares it"
        );
        drop(clone);
        let visit = fortress.guest().enter_owned(&fired()).unwrap();
        assert!(fortress.get_mut().is_none(), "{layout:?}: an owned visit");
        drop(visit);
        let exclusive = fortress.guard().exclusive_owned(&fired()).unwrap();
        assert!(fortress.get_mut().is_none(), "{layout:?}: an owned phase");
        drop(exclusive);

        fortress
            .get_mut()
            .expect("sole handle, open")
            .text
            .push('2');
        let seen = fortress.guest().read(|value| value.text.clone(), &fired());
        assert_eq!(seen.as_deref(), Ok("v12"), "{layout:?}");
        assert_eq!(drops.count(), 0);
        drop(fortress);
        assert_eq!(drops.count(), 1, "{layout:?}");
    }
}

// ----- Construction -----

/// A fortress that holds a value starts locked on every layout (no visit gets in, a
/// phase does, with no wait), and `layout` tells what was asked for; `holding` is
/// `Layout::Word`.
#[test]
fn a_new_fortress_is_locked_and_tells_its_layout() {
    let parallelism = thread::available_parallelism().map_or(1, |n| n.get());
    let fortress = Fortress::holding(5_u32);
    assert_eq!(fortress.layout(), Layout::Word);
    assert!(fortress.is_locked());
    for (layout, shards) in [
        (Layout::Word, 0),
        (Layout::Sharded, parallelism),
        (Layout::Shards(3), 3),
    ] {
        let fortress = Fortress::holding_with(5_u32, layout);
        assert_eq!(fortress.layout(), layout);
        assert_eq!(fortress.shards(), shards, "{layout:?}");
        assert!(fortress.is_locked(), "{layout:?}: starts locked");
        let guest = fortress.guest();
        assert!(guest.try_enter().is_none(), "{layout:?}: locked");
        assert_eq!(
            guest.read(|n| *n, &fired()),
            Err(Error::Aborted),
            "{layout:?}"
        );
        *fortress.guard().exclusive(&fired()).expect("empty") += 1;
        assert_eq!(guest.read(|n| *n, &fired()), Ok(6), "{layout:?}: opened");
    }
}

/// `holding_with(_, Layout::Shards(0))` panics as `with_shards(0)` does.
#[test]
#[should_panic(expected = "a sharded fortress needs at least one slot")]
fn holding_with_no_slot_panics() {
    let _ = Fortress::holding_with(0_u8, Layout::Shards(0));
}

/// When `holding_with` panics, the value it was given is dropped, exactly once.
#[test]
fn a_value_given_to_a_failed_construction_is_dropped_once() {
    let (drops, value) = counted("v");
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        Fortress::holding_with(value, Layout::Shards(0))
    }));
    assert!(outcome.is_err());
    assert_eq!(drops.count(), 1);
}

// ----- Killed, kept by a guest -----

/// A guest of a killed fortress keeps the value alive: it can no longer visit
/// (`Shutdown`), but the value is dropped only when the last guest (or visit) goes.
/// For an explicit `kill`, and for the kill made by the drop of the last opener while
/// the gate is closed.
#[test]
fn a_guest_of_a_killed_fortress_keeps_the_value() {
    for layout in LAYOUTS {
        // An explicit kill, with a visit inside that outlives every opener.
        let (drops, value) = counted("v");
        let fortress = open(value, layout);
        let (guest, other) = (fortress.guest(), fortress.guest());
        let visit = guest.enter_owned(&fired()).unwrap();
        fortress.kill();
        drop(fortress);
        let seen = guest.read(|value| value.text.clone(), &fired());
        assert_eq!(seen, Err(Error::Shutdown), "{layout:?}");
        drop(other);
        assert_eq!(visit.text, "v", "{layout:?}: the visit still reads it");
        drop(visit);
        assert_eq!(drops.count(), 0, "{layout:?}: the guest keeps it");
        drop(guest);
        assert_eq!(drops.count(), 1, "{layout:?}");

        // The last opener goes while the gate is closed: that kills it.
        let (drops, value) = counted("v");
        let fortress = Fortress::holding_with(value, layout); // locked
        let guest = fortress.guest();
        drop(fortress);
        // `Shutdown` wins over `Aborted`: a live, locked fortress would say `Aborted`.
        let seen = guest.read(|value| value.text.clone(), &fired());
        assert_eq!(
            seen,
            Err(Error::Shutdown),
            "{layout:?}: killed by the last opener"
        );
        assert_eq!(drops.count(), 0, "{layout:?}: the guest keeps it");
        drop(guest);
        assert_eq!(drops.count(), 1, "{layout:?}");
    }
}
