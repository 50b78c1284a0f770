//! With the `tokio` feature, a blocking call that is about to sleep on a thread that
//! runs tokio tasks panics with a message that names the async form; one that needs no
//! sleep, or runs in `spawn_blocking` or `block_in_place`, does not. The panic leaves
//! nothing behind: no waiter flag, and a scoped lockdown backs out.
#![cfg(feature = "tokio")]

use fortress_gate::internals::{snapshot, WAITERS};
use fortress_gate::{Abort, Error, Fortress};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("it did not panic");
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_default(),
    }
}

#[test]
fn a_blocking_entry_about_to_sleep_in_a_task_panics_naming_enter_async_and_leaves_no_flag() {
    let fortress = Fortress::holding(7_u32); // locked: an entry must wait
    let guest = fortress.guest();
    let message = panic_message(|| {
        current_thread().block_on(async {
            // A deadline, so that without the check the test fails instead of hanging.
            let _ = guest.read(|n| *n, &Abort::after(Duration::from_secs(2)));
        })
    });
    assert!(message.contains("`enter_async`"), "{message}");
    assert_eq!(snapshot(&fortress).0 & WAITERS, 0, "a flag was left");
    fortress.guard().unlock().unwrap();
    assert_eq!(guest.read(|n| *n, &Abort::never()), Ok(7));
}

#[test]
fn a_blocking_exclusive_that_must_drain_in_a_task_panics_and_backs_out() {
    let fortress = Fortress::holding(String::from("old"));
    let (guard, guest) = (fortress.guard(), fortress.guest());
    guard.unlock().unwrap();
    let visit = guest.enter_owned(&Abort::never()).unwrap();
    let message = panic_message(|| {
        current_thread().block_on(async {
            let deadline = Abort::after(Duration::from_secs(2));
            let _ = guard.exclusive(&deadline).map(|mut v| *v = "new".into());
        })
    });
    assert!(message.contains("`exclusive_async`"), "{message}");
    assert!(
        !fortress.is_locked(),
        "the exclusive's close was not backed out"
    );
    assert_eq!(snapshot(&fortress).0 & WAITERS, 0, "a flag was left");
    assert_eq!(&*visit, "old");
    drop(visit);
    assert_eq!(guest.read(String::clone, &Abort::never()).unwrap(), "old");
}

#[test]
fn blocking_calls_that_need_no_sleep_in_a_task_go_on() {
    let fortress = Fortress::holding(1_u8);
    let (guard, guest) = (fortress.guard(), fortress.guest());
    current_thread().block_on(async {
        guard.unlock().unwrap();
        assert_eq!(guest.read(|n| *n, &Abort::never()), Ok(1));
        *guard.exclusive(&Abort::never()).unwrap() = 2;
        guard.lockdown(&Abort::never()).unwrap();
        guard.unlock().unwrap();
        assert_eq!(guest.read(|n| *n, &Abort::never()), Ok(2));
    });
}

#[test]
fn blocking_calls_in_spawn_blocking_and_block_in_place_may_sleep() {
    let fortress = Fortress::holding(());
    let guest = fortress.guest();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .expect("a multi-thread runtime");
    let soon = || Abort::after(Duration::from_millis(20));
    let in_spawn_blocking = {
        let guest = guest.clone();
        runtime.block_on(async move {
            tokio::task::spawn_blocking(move || guest.visit(|| (), &soon()))
                .await
                .expect("spawn_blocking")
        })
    };
    assert_eq!(
        in_spawn_blocking,
        Err(Error::Aborted),
        "it slept, then gave up"
    );
    let in_block_in_place = runtime.block_on(async {
        tokio::spawn(async move { tokio::task::block_in_place(|| guest.visit(|| (), &soon())) })
            .await
            .expect("the task")
    });
    assert_eq!(in_block_in_place, Err(Error::Aborted));
}
