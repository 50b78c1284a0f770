#!/usr/bin/env python3
"""Prints the medians of the last `cargo bench -p fortress-gate-benches --bench sharded`
run and the ratios its targets are stated in.

Reads every target/criterion/**/new/estimates.json whose benchmark.json beside it names
a `sharded/...` group (criterion writes the group `sharded/one_thread` to the directory
`sharded_one_thread`, so the ids come from benchmark.json, not from the path).
Usage: python3 benches/report_sharded.py [criterion directory]
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
GROUPS = ["sharded/one_thread", "sharded/both_cores", "sharded/lockdown_unlock"]


def load():
    """{full id: median in ns per iteration} for the sharded groups."""
    medians = {}
    for est in ROOT.glob("**/new/estimates.json"):
        meta = est.with_name("benchmark.json")
        if not meta.exists():
            continue
        full_id = json.loads(meta.read_text())["full_id"]
        if any(full_id.startswith(group + "/") for group in GROUPS):
            medians[full_id] = json.loads(est.read_text())["median"]["point_estimate"]
    return medians


def order(full_id):
    """Named benchmarks first, alphabetically; then `shards/N` by N."""
    last = full_id.rsplit("/", 1)[-1]
    return (last.isdigit(), int(last) if last.isdigit() else 0, full_id)


def ratio(medians, a, b):
    if a not in medians or b not in medians:
        return None
    return medians[a] / medians[b]


def main():
    medians = load()
    if not medians:
        sys.exit(f"no sharded benchmarks under {ROOT}: run "
                 "`cargo bench -p fortress-gate-benches --bench sharded` first")

    print("medians (ns per visit or per lockdown + unlock)")
    for group in GROUPS:
        rows = sorted((k for k in medians if k.startswith(group + "/")), key=order)
        for name in rows:
            print(f"  {name:<48} {medians[name]:10.2f}")

    one, both, lock = (g + "/" for g in GROUPS)
    checks = [
        # (name, numerator, denominator, target)
        ("one thread: sharded enter+drop / atomic pair",
         one + "sharded_enter_drop", one + "atomic_pair", 1.30),
        ("one thread: sharded try_enter+drop / atomic pair",
         one + "sharded_try_enter_drop", one + "atomic_pair", 1.30),
        ("one thread: sharded / word (enter+drop)",
         one + "sharded_enter_drop", one + "word_enter_drop", None),
        ("both cores: sharded / word (per visit)",
         both + "sharded_enter_drop", both + "word_enter_drop", 0.60),
        ("both cores: sharded / sharded one thread",
         both + "sharded_enter_drop", one + "sharded_enter_drop", None),
        ("both cores: word / word one thread",
         both + "word_enter_drop", one + "word_enter_drop", None),
        ("lockdown+unlock: 1 slot / word", lock + "shards/1", lock + "word", None),
        ("lockdown+unlock: 64 slots / 8 slots", lock + "shards/64", lock + "shards/8", None),
    ]
    print("\nratios (target)")
    for name, a, b, target in checks:
        value = ratio(medians, a, b)
        goal = "" if target is None else f"<= {target:.2f}"
        if value is None:
            print(f"  {name:<50} {'-':>6}  {goal:8}  not run")
            continue
        verdict = "" if target is None else ("  ok" if value <= target else "  MISSED")
        print(f"  {name:<50} {value:6.3f}  {goal:8}{verdict}")

    # Slope of the guard's price: ns per extra slot, from the 8- and 64-slot medians.
    if lock + "shards/8" in medians and lock + "shards/64" in medians:
        slope = (medians[lock + "shards/64"] - medians[lock + "shards/8"]) / 56
        print(f"\nlockdown+unlock: {slope:.1f} ns per extra slot (8 -> 64 slots)")

    # A two-thread group means something only if both cores were free: each thread on
    # its own line should then cost what one thread alone does. (This checks the cores
    # while `atomic_pair_private` ran; a load that came and went during the other
    # benchmarks shows as a wide spread in criterion's output instead.)
    free = ratio(medians, both + "atomic_pair_private", one + "atomic_pair")
    if free is not None:
        state = "ok" if free <= 1.3 else "NOT FREE: another load shared the cores; rerun"
        print(f"both cores free? private-line pair / one-thread pair = {free:.2f} ({state})")


if __name__ == "__main__":
    main()
