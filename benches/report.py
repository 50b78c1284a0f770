#!/usr/bin/env python3
"""Prints the medians of the last `cargo bench -p fortress-gate-benches` run and the ratios
that the performance targets are stated in (README, "Benchmarks")."""
import json
import pathlib
import sys

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")


def median(path):
    est = json.loads((ROOT / path / "new" / "estimates.json").read_text())
    return est["median"]["point_estimate"]  # nanoseconds per iteration


def row(name, path):
    """The median, or None if this benchmark has not been run (e.g. after
    `cargo bench -p fortress-gate-benches -- async`, which runs only the async groups)."""
    try:
        ns = median(path)
    except FileNotFoundError:
        print(f"  {name:<44} {'not run':>10}")
        return None
    print(f"  {name:<44} {ns:10.2f} ns")
    return ns


def ratio(a, b):
    return None if a is None or b is None else a / b


print("medians")
u = {k: row(f"uncontended/{k}", f"uncontended/{k}") for k in
     ["atomic_pair", "fortress_visit", "fortress_enter_drop", "std_rwlock_read",
      "parking_lot_read", "condvar_fortress_visit", "fortress_value_enter_read"]}
l = {k: row(f"lockdown/{k}", f"lockdown/{k}") for k in
     ["fortress_lockdown_unlock", "std_rwlock_write", "parking_lot_write",
      "condvar_fortress_lockdown_unlock", "fortress_value_exclusive_write",
      "std_rwlock_u64_write"]}
c = {k: row(f"contended/{k}", f"contended/{k}") for k in
     ["atomic_pair", "fortress_visit", "std_rwlock_read", "parking_lot_read",
      "condvar_fortress_visit"]}
w = {f"{a}/{b}": row(f"wakeup/{a}/{b}", f"wakeup/{a}/{b}") for a in
     ["unlock_to_visit", "leave_to_lockdown"] for b in ["fortress", "condvar"]}
au = {k: row(f"async_uncontended/{k}", f"async_uncontended/{k}") for k in
      ["fortress_enter_drop", "tokio_rwlock_read", "async_lock_read",
       "fortress_value_enter_read", "tokio_rwlock_u64_read"]}
at = {k: row(f"async_in_tokio/{k}", f"async_in_tokio/{k}") for k in
      ["fortress_enter_drop", "tokio_rwlock_read"]}
aw = {k: row(f"async_wakeup/unlock_to_task/{k}", f"async_wakeup/unlock_to_task/{k}") for k in
      ["fortress", "tokio_rwlock"]}

checks = [
    ("visit / atomic pair", ratio(u["fortress_visit"], u["atomic_pair"]), 1.05),
    ("visit / std RwLock read", ratio(u["fortress_visit"], u["std_rwlock_read"]), 0.90),
    ("visit / parking_lot read", ratio(u["fortress_visit"], u["parking_lot_read"]), 0.90),
    ("enter+drop / atomic pair", ratio(u["fortress_enter_drop"], u["atomic_pair"]), 1.10),
    ("visit / Mutex+Condvar visit", ratio(u["fortress_visit"], u["condvar_fortress_visit"]), None),
    ("lockdown+unlock / std write+drop", ratio(l["fortress_lockdown_unlock"], l["std_rwlock_write"]), 1.10),
    ("enter+read u64+drop / enter+drop on Fortress<()>",
     ratio(u["fortress_value_enter_read"], u["fortress_enter_drop"]), 1.03),
    ("exclusive+write u64+drop / std write+write+drop",
     ratio(l["fortress_value_exclusive_write"], l["std_rwlock_u64_write"]), 1.10),
    ("lockdown+unlock / parking_lot write+drop", ratio(l["fortress_lockdown_unlock"], l["parking_lot_write"]), None),
    ("contended visit / contended std read", ratio(c["fortress_visit"], c["std_rwlock_read"]), 1.00),
    ("contended visit / contended parking_lot read", ratio(c["fortress_visit"], c["parking_lot_read"]), None),
    ("contended visit / contended atomic pair", ratio(c["fortress_visit"], c["atomic_pair"]), None),
    ("wake-up unlock->visit / Condvar", ratio(w["unlock_to_visit/fortress"], w["unlock_to_visit/condvar"]), None),
    ("wake-up leave->lockdown / Condvar", ratio(w["leave_to_lockdown/fortress"], w["leave_to_lockdown/condvar"]), None),
    ("async enter+drop / tokio RwLock read", ratio(au["fortress_enter_drop"], au["tokio_rwlock_read"]), 0.45),
    ("async enter+drop / async-lock read", ratio(au["fortress_enter_drop"], au["async_lock_read"]), 1.00),
    ("async enter+read u64+drop / tokio RwLock<u64> read",
     ratio(au["fortress_value_enter_read"], au["tokio_rwlock_u64_read"]), 0.45),
    ("in tokio: enter+drop / tokio RwLock read", ratio(at["fortress_enter_drop"], at["tokio_rwlock_read"]), None),
    ("async wake-up unlock->task / tokio RwLock", ratio(aw["fortress"], aw["tokio_rwlock"]), 1.00),
]
print("\nratios (target)")
for name, value, target in checks:
    goal = "" if target is None else f"<= {target:.2f}"
    if value is None:
        print(f"  {name:<52} {'-':>6}  {goal:8}  not run")
        continue
    verdict = "" if target is None else ("  ok" if value <= target else "  MISSED")
    print(f"  {name:<52} {value:6.3f}  {goal:8}{verdict}")
