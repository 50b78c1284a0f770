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
    ns = median(path)
    print(f"  {name:<44} {ns:10.2f} ns")
    return ns


print("medians")
u = {k: row(f"uncontended/{k}", f"uncontended/{k}") for k in
     ["atomic_pair", "fortress_visit", "fortress_enter_drop", "std_rwlock_read",
      "parking_lot_read", "condvar_fortress_visit"]}
l = {k: row(f"lockdown/{k}", f"lockdown/{k}") for k in
     ["fortress_lockdown_unlock", "std_rwlock_write", "parking_lot_write",
      "condvar_fortress_lockdown_unlock"]}
c = {k: row(f"contended/{k}", f"contended/{k}") for k in
     ["atomic_pair", "fortress_visit", "std_rwlock_read", "parking_lot_read",
      "condvar_fortress_visit"]}
w = {f"{a}/{b}": row(f"wakeup/{a}/{b}", f"wakeup/{a}/{b}") for a in
     ["unlock_to_visit", "leave_to_lockdown"] for b in ["fortress", "condvar"]}

checks = [
    ("visit / atomic pair", u["fortress_visit"] / u["atomic_pair"], 1.10),
    ("visit / std RwLock read", u["fortress_visit"] / u["std_rwlock_read"], 0.90),
    ("visit / parking_lot read", u["fortress_visit"] / u["parking_lot_read"], 0.90),
    ("enter+drop / atomic pair", u["fortress_enter_drop"] / u["atomic_pair"], 1.10),
    ("visit / Mutex+Condvar visit", u["fortress_visit"] / u["condvar_fortress_visit"], None),
    ("lockdown+unlock / std write+drop", l["fortress_lockdown_unlock"] / l["std_rwlock_write"], 1.20),
    ("lockdown+unlock / parking_lot write+drop", l["fortress_lockdown_unlock"] / l["parking_lot_write"], None),
    ("contended visit / contended std read", c["fortress_visit"] / c["std_rwlock_read"], 1.00),
    ("contended visit / contended parking_lot read", c["fortress_visit"] / c["parking_lot_read"], None),
    ("contended visit / contended atomic pair", c["fortress_visit"] / c["atomic_pair"], None),
    ("wake-up unlock->visit / Condvar", w["unlock_to_visit/fortress"] / w["unlock_to_visit/condvar"], None),
    ("wake-up leave->lockdown / Condvar", w["leave_to_lockdown/fortress"] / w["leave_to_lockdown/condvar"], None),
]
print("\nratios (target)")
for name, ratio, target in checks:
    verdict = "" if target is None else ("  ok" if ratio <= target else "  MISSED")
    goal = "" if target is None else f"<= {target:.2f}"
    print(f"  {name:<44} {ratio:6.3f}  {goal:8}{verdict}")
