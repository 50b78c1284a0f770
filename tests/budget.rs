//! The cooperative budget of async entries belongs to the thread: every entry's first
//! poll on it spends from it, whatever task or waker polls it, and after 128 of them
//! the entries yield until the streak of yields ends (see `src/coop.rs`). So entries
//! polled by many wakers in turn (the shape of `FuturesUnordered`) still yield, and a
//! task that inherits a spent budget yields early, but once.
//!
//! Tasks that enter only through `for_each_concurrent`, `buffer_unordered`, `join_all`
//! over many futures and `select` in a loop, on a current-thread runtime, let a
//! sleeping task wake on time. (With a budget that yields once in 129 entries whatever
//! the waker, those through `for_each_concurrent`, `buffer_unordered` and `select`
//! starved it for the whole run.)
//!
//! The budget of a plain looping task is tested in `tests/services.rs`.

mod common;

/// Guest slots of `common::fortress()`: 0 is the single state word. (Sharding does not
/// change the budget.)
#[allow(dead_code)]
const LAYOUT: fortress_gate::Layout = fortress_gate::Layout::Word;

use common::{unlocked, within};
use fortress_gate::{Abort, Guest};
use futures_util::future::{join_all, select, Either};
use futures_util::stream::{self, StreamExt};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// First polls of entries on a thread before one yields (the crate's `BUDGET`).
const BUDGET: usize = 128;

// ----- Tasks that enter through `FuturesUnordered` on a current-thread runtime -----

/// How long the sleeper sleeps, and by when (from the start) it must have woken.
const NAP: Duration = Duration::from_millis(10);
/// 50 ms; 1 s where CI sets `FORTRESS_NO_TIMING` (ThreadSanitizer slows everything
/// down), still half the [`SAFETY_NET`] that a starved nap would take.
fn prompt() -> Duration {
    match std::env::var_os("FORTRESS_NO_TIMING") {
        None => Duration::from_millis(50),
        Some(_) => Duration::from_secs(1),
    }
}
/// The looping task stops by itself after this long, so a budget that the combinator
/// dodges fails the test in bounded time rather than hanging it.
const SAFETY_NET: Duration = Duration::from_secs(2);

/// The combinator the looping task enters through; each polls its futures with a
/// waker per future.
#[derive(Clone, Copy, Debug)]
enum Through {
    ForEachConcurrent,
    BufferUnordered,
    /// `join_all` over 64 futures (more than it polls without a `FuturesUnordered`),
    /// each entering in a loop.
    JoinAll,
    /// `select` between two entries (the other dropped), in a loop.
    SelectInALoop,
}

/// On a current-thread runtime, a task that does nothing but enter an open fortress,
/// four entries at a time `through` a `FuturesUnordered` combinator, and a task that
/// sleeps [`NAP`]: when the sleeper woke, counted from the start, and how many entries
/// the looping task made.
fn a_nap_beside_a_task_that_enters_through(through: Through) -> (Duration, usize) {
    let fortress = unlocked();
    let guest = fortress.guest();
    within("a current-thread runtime with a looping task", move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("could not build a current-thread runtime");
        let stop = Arc::new(AtomicBool::new(false));
        let entries = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        // The looper goes first: the sleeper only gets the thread if it yields.
        let looper = {
            let (stop, entries) = (Arc::clone(&stop), Arc::clone(&entries));
            rt.spawn(async move { enter_until(&guest, through, &stop, start, &entries).await })
        };
        let sleeper = rt.spawn(async move {
            tokio::time::sleep(NAP).await;
            let woke = start.elapsed();
            stop.store(true, SeqCst);
            woke
        });
        let woke = rt.block_on(async move {
            let woke = sleeper.await.expect("the sleeper");
            looper.await.expect("the looper");
            woke
        });
        (woke, entries.load(SeqCst))
    })
}

/// Enters `guest` (and leaves at once) four at a time `through` the combinator, until
/// `stop` is set or [`SAFETY_NET`] has passed since `start`; counts the entries.
async fn enter_until(
    guest: &Guest,
    through: Through,
    stop: &AtomicBool,
    start: Instant,
    entries: &AtomicUsize,
) {
    let never = Abort::never();
    // Always ready: the only `Pending` the task can meet is an entry's yield.
    let going = || !stop.load(SeqCst) && start.elapsed() < SAFETY_NET;
    let items = stream::poll_fn(|_| Poll::Ready(going().then_some(())));
    let enter = |()| {
        let never = &never;
        async move {
            drop(guest.enter_async(never).await.expect("open"));
            entries.fetch_add(1, SeqCst);
        }
    };
    match through {
        Through::ForEachConcurrent => items.for_each_concurrent(4, enter).await,
        Through::BufferUnordered => {
            let mut entered = pin!(items.map(enter).buffer_unordered(4));
            while entered.next().await.is_some() {}
        }
        Through::JoinAll => {
            let looping = (0..64).map(|_| async {
                while going() {
                    enter(()).await;
                }
            });
            join_all(looping).await;
        }
        Through::SelectInALoop => {
            while going() {
                let (a, b) = (guest.enter_async(&never), guest.enter_async(&never));
                match select(pin!(a), pin!(b)).await {
                    Either::Left((visit, _)) | Either::Right((visit, _)) => {
                        drop(visit.expect("open"))
                    }
                }
                entries.fetch_add(1, SeqCst);
            }
        }
    }
}

/// Runs [`a_nap_beside_a_task_that_enters_through`] up to three times and asserts that
/// the nap once ended within [`prompt`] of the start. Timing is the behaviour here: if
/// the combinator's wakers dodge the budget, the looping task never yields, so the nap
/// ends only when the loop gives up after [`SAFETY_NET`], every time. The retries only
/// absorb a run whose thread the machine did not schedule for a while.
fn assert_a_nap_ends_in_time(through: Through) {
    let mut runs = Vec::new();
    for _ in 0..3 {
        let (woke, entries) = a_nap_beside_a_task_that_enters_through(through);
        assert!(
            entries > BUDGET,
            "the looper made only {entries} entries: it hardly ran"
        );
        if woke < prompt() {
            return;
        }
        runs.push(woke);
    }
    panic!(
        "a nap of {NAP:?} ended after {runs:?}: the task entering through {through:?} \
         starved the runtime"
    );
}

#[test]
#[cfg_attr(miri, ignore = "a timing bound")]
fn a_task_that_enters_through_for_each_concurrent_does_not_dodge_the_budget_and_starve_a_sleeping_task(
) {
    assert_a_nap_ends_in_time(Through::ForEachConcurrent);
}

#[test]
#[cfg_attr(miri, ignore = "a timing bound")]
fn a_task_that_enters_through_buffer_unordered_does_not_dodge_the_budget_and_starve_a_sleeping_task(
) {
    assert_a_nap_ends_in_time(Through::BufferUnordered);
}

#[test]
#[cfg_attr(miri, ignore = "a timing bound")]
fn a_task_that_enters_through_join_all_over_many_futures_does_not_dodge_the_budget_and_starve_a_sleeping_task(
) {
    assert_a_nap_ends_in_time(Through::JoinAll);
}

#[test]
#[cfg_attr(miri, ignore = "a timing bound")]
fn a_task_that_enters_through_select_in_a_loop_does_not_dodge_the_budget_and_starve_a_sleeping_task(
) {
    assert_a_nap_ends_in_time(Through::SelectInALoop);
}

// ----- The count, poll by poll -----

/// Entries polled by hand, outside any runtime (where tokio's budget, with the `tokio`
/// feature, is unconstrained).
#[cfg(not(feature = "tokio"))]
mod count {
    use super::{common, BUDGET};
    use common::{poll_with, unlocked, within, CountingWaker};
    use fortress_gate::{Abort, Guest};
    use std::pin::pin;
    use std::task::{Poll, Waker};

    /// Makes `count` entries into `guest` (each left at once), entry `i` polled with
    /// `wakers[i % wakers.len()]`, re-polling an entry that yields: the indices of the
    /// entries that yielded.
    fn entries_that_yield(guest: &Guest, count: usize, wakers: &[Waker]) -> Vec<usize> {
        let never = Abort::never();
        let mut yielded = Vec::new();
        for i in 0..count {
            let waker = &wakers[i % wakers.len()];
            let mut entry = pin!(guest.enter_async(&never));
            match poll_with(entry.as_mut(), waker) {
                Poll::Ready(visit) => drop(visit.expect("open")),
                Poll::Pending => {
                    yielded.push(i);
                    match poll_with(entry.as_mut(), waker) {
                        Poll::Ready(visit) => drop(visit.expect("open")),
                        Poll::Pending => panic!("entry {i} yielded twice in a row"),
                    }
                }
            }
        }
        yielded
    }

    #[test]
    fn entries_polled_by_two_wakers_in_turn_still_yield_once_every_129_entries() {
        // The shape of `FuturesUnordered`: one waker per future. A budget that starts over
        // whenever the waker changes never ran out here.
        let fortress = unlocked();
        let guest = fortress.guest();
        // A thread of its own: its budget starts full.
        let (yielded, wakes) = within("entries by two wakers", move || {
            let (a, a_count) = CountingWaker::new();
            let (b, b_count) = CountingWaker::new();
            let yielded = entries_that_yield(&guest, 3 * (BUDGET + 1), &[a, b]);
            (yielded, a_count.wakes() + b_count.wakes())
        });
        // 128 entries go in, the 129th yields once, and then it and 128 more go in: the
        // yields are 129 entries apart.
        assert_eq!(yielded, [BUDGET, 2 * BUDGET + 1, 3 * BUDGET + 2]);
        assert_eq!(wakes, 3, "each yield wakes the waker it was polled with");
    }

    #[test]
    fn a_task_that_follows_another_tasks_128_entries_on_its_thread_yields_once_at_its_first_entry_and_not_again_in_129(
    ) {
        let fortress = unlocked();
        let guest = fortress.guest();
        let (first, second) = within("two tasks in turn", move || {
            let (a, _) = CountingWaker::new();
            let (b, _) = CountingWaker::new();
            let first = entries_that_yield(&guest, BUDGET, &[a]);
            let second = entries_that_yield(&guest, BUDGET + 1, &[b]);
            (first, second)
        });
        assert_eq!(first, [] as [usize; 0], "the thread's budget started full");
        // The second task inherits the spent budget: its first entry yields, and that
        // refills the budget for itself and the 128 after it.
        assert_eq!(second, [0]);
    }
}
