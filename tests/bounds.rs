//! The thread bounds of the handles, as a table of compile-time checks: the handles
//! and futures follow `Arc<RwLock<T>>` (`Send` and `Sync` when `T: Send + Sync`); a
//! `Visit`, an `OwnedVisit` or an `Exclusive` can be shared with other threads when
//! `T: Sync`, as std's guards. What must not compile is in the doc tests of
//! `Fortress` ("The value and threads").

use fortress_gate::{Exclusive, Fortress, Guard, Guest, OwnedExclusive, OwnedVisit, Visit};
use std::sync::MutexGuard;

fn send<T: Send>() {}
fn sync<T: Sync>() {}

/// `Sync` but not `Send`: a std mutex guard.
type SyncOnly = MutexGuard<'static, ()>;

#[test]
fn the_handles_are_send_and_sync_when_the_value_is() {
    send::<Fortress<String>>();
    sync::<Fortress<String>>();
    send::<Guard<String>>();
    sync::<Guard<String>>();
    send::<Guest<String>>();
    sync::<Guest<String>>();
    send::<OwnedVisit<String>>();
    send::<OwnedExclusive<String>>();
    sync::<OwnedExclusive<String>>();
    send::<Visit<'static, String>>();
    send::<Exclusive<'static, String>>();
    // 0.3's types are the `()` forms.
    send::<Fortress>();
    sync::<Visit<'static>>();
}

#[test]
fn a_visit_or_an_exclusive_of_a_value_that_is_only_sync_can_be_shared() {
    sync::<Visit<'static, SyncOnly>>();
    sync::<OwnedVisit<SyncOnly>>();
    sync::<Exclusive<'static, SyncOnly>>();
}
