#!/usr/bin/env python3
"""Sequential creates, interleaved: every system is up at once and takes turns in short bursts.

    .venv/bin/python bench/create_pairs.py                      # alyx, floor, pocketbase; 30 rounds
    .venv/bin/python bench/create_pairs.py --systems alyx,baseline,floor --baseline /tmp/base

bench/crud.py runs one system at a time, for tens of seconds each; on a shared machine whose speed
drifts by 2x within minutes, the create ratio of one run against the next moved from 0.69x to
0.86x. Here each round gives every system a burst of --burst sequential POSTs (one keep-alive
client, bench/crud.py's body and schema) in a rotating order, so a slow minute slows all of them
alike; the figure is each round's ratio to the first system, and the median of those ratios.
After each burst a pause (--settle) lets that system's background work finish in its own turn.
The servers, schema and bodies are bench/crud.py's (the same Target classes); nothing else runs.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import machine_line, percentile, pocketbase_binary
from crud import SYSTEMS, Baseline, Target, create_many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default="alyx,floor,pocketbase", help="comma-separated; the first is the one "
                        "the ratios are of")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--burst", type=int, default=200, help="sequential creates per system per round")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--settle", type=float, default=0.5, help="seconds of pause after each burst, so one "
                        "system's background work (Alyx's WAL checkpoints) ends before the next one's burst")
    parser.add_argument("--baseline", type=Path, help="checkout for --systems baseline")
    args = parser.parse_args()
    Baseline.root = args.baseline
    names = args.systems.split(",")
    if "pocketbase" in names:
        pocketbase_binary()
    targets: list[Target] = [SYSTEMS[name]() for name in names]
    print(machine_line(), flush=True)
    print(f"rounds {args.rounds}, burst {args.burst}, warm-up {args.warmup}, settle {args.settle}s", flush=True)
    rates: dict[str, list[float]] = {t.name: [] for t in targets}
    latencies: dict[str, list[float]] = {t.name: [] for t in targets}
    try:
        for target in targets:
            target.start()
            create_many(target.port, target.create_path, list(range(args.warmup)), target.create_status)
        start = args.warmup
        for round_no in range(args.rounds):
            order = targets[round_no % len(targets):] + targets[:round_no % len(targets)]
            for target in order:
                indexes = list(range(start, start + args.burst))
                _, lat, errors = create_many(target.port, target.create_path, indexes, target.create_status)
                if errors:
                    raise SystemExit(f"{target.name}: {errors} failed creates")
                rates[target.name].append(len(lat) / sum(lat))
                latencies[target.name] += lat
                time.sleep(args.settle)
            start += args.burst
    finally:
        for target in targets:
            target.stop()
    first = targets[0].name
    print(f"\n| system | creates/s (median of rounds) | p50 ms | p99 ms | {first}/system per round (median, min–max) |")
    print("|---|---:|---:|---:|---:|")
    for target in targets:
        name = target.name
        ratios = [a / b for a, b in zip(rates[first], rates[name], strict=True)]
        lat = sorted(latencies[name])
        spread = "—" if name == first else \
            f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}–{max(ratios):.2f})"
        print(f"| {name} | {statistics.median(rates[name]):.0f} | {percentile(lat, 50) * 1000:.2f} | "
              f"{percentile(lat, 99) * 1000:.2f} | {spread} |")
    print("\nrates are per burst: creates / the sum of their latencies (client-side, one keep-alive connection)")


if __name__ == "__main__":
    main()
