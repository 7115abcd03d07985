#!/usr/bin/env python3
"""Creates and gets, interleaved: every system is up at once and they take turns in short bursts.

    .venv/bin/python bench/interleaved.py                      # alyx, floor, pocketbase; 20 rounds
    .venv/bin/python bench/interleaved.py --systems alyx,baseline,floor --baseline /tmp/base
    .venv/bin/python bench/interleaved.py --ops create         # sequential creates only

bench/crud.py runs one system at a time, for tens of seconds each; on a shared machine whose speed
drifts by 2x within minutes, its create ratio moved from 0.69x to 0.86x from one run to the next,
and its get ratio from 0.81x to 0.96x. Here each round gives every system, in a rotating order, a
burst of each operation: --burst sequential POSTs on one keep-alive client, then --get-seconds of
gets by id from --clients client processes (random ids among those created so far). A slow minute
slows all systems alike; the figure is each round's ratio of the first system to each other one,
and the median of those ratios. After each burst a pause (--settle) lets that system's background
work (Alyx's WAL checkpoints) finish in its own turn. The servers, schema, bodies and clients are
bench/crud.py's (the same Target classes and workers); nothing else should run.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from pathlib import Path

from common import machine_line, percentile, pocketbase_binary
from crud import SYSTEMS, Baseline, Target, concurrent_reads, create_many

OPS = {"create": "sequential creates/s", "get": "gets by id/s"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default="alyx,floor,pocketbase", help="comma-separated; the first is the one "
                        "the ratios are of")
    parser.add_argument("--ops", default="create,get", help="comma-separated: create, get")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--burst", type=int, default=200, help="sequential creates per system per round")
    parser.add_argument("--get-seconds", type=float, default=1.5, help="length of a system's get burst")
    parser.add_argument("--clients", type=int, default=8, help="client processes of a get burst")
    parser.add_argument("--warmup", type=int, default=300, help="creates per system before the first round")
    parser.add_argument("--settle", type=float, default=0.5, help="seconds of pause after each burst, so one "
                        "system's background work (Alyx's WAL checkpoints) ends before the next one's burst")
    parser.add_argument("--baseline", type=Path, help="checkout for --systems baseline")
    args = parser.parse_args()
    Baseline.root = args.baseline
    names, ops = args.systems.split(","), args.ops.split(",")
    if unknown := set(ops) - set(OPS):
        parser.error(f"unknown --ops {', '.join(sorted(unknown))}")
    if "pocketbase" in names:
        pocketbase_binary()
    targets: list[Target] = [SYSTEMS[name]() for name in names]
    print(machine_line(), flush=True)
    print(f"rounds {args.rounds}, ops {args.ops}, create burst {args.burst}, get burst {args.get_seconds}s "
          f"x {args.clients} clients, warm-up {args.warmup}, settle {args.settle}s", flush=True)
    rates: dict[tuple[str, str], list[float]] = {(op, t.name): [] for op in ops for t in targets}
    latencies: dict[tuple[str, str], list[float]] = {(op, t.name): [] for op in ops for t in targets}
    ids: dict[str, list[str]] = {}
    pool = mp.get_context("fork").Pool(args.clients)
    try:
        for target in targets:
            target.start()
            ids[target.name], _, errors = create_many(target.port, target.create_path, list(range(args.warmup)),
                                                      target.create_status)
            if errors:
                raise SystemExit(f"{target.name}: {errors} failed creates in the warm-up")
        start = args.warmup
        for round_no in range(args.rounds):
            order = targets[round_no % len(targets):] + targets[:round_no % len(targets)]
            for op in ops:
                for target in order:
                    if op == "create":
                        made, lat, errors = create_many(target.port, target.create_path,
                                                        list(range(start, start + args.burst)), target.create_status)
                        ids[target.name] += made
                        latencies[op, target.name] += lat
                        rate = len(lat) / sum(lat)
                    else:
                        paths = [target.get_prefix + i for i in ids[target.name]]
                        got = concurrent_reads(pool, target, paths, args.clients, args.get_seconds, 10**9,
                                               keep=latencies[op, target.name])
                        errors, rate = got["errors"], got["rps"]
                    if errors:
                        raise SystemExit(f"{target.name}: {errors} failed requests ({op})")
                    rates[op, target.name].append(rate)
                    time.sleep(args.settle)
            start += args.burst
    finally:
        pool.terminate()
        for target in targets:
            target.stop()
    first = targets[0].name
    for op in ops:
        print(f"\n| system | {OPS[op]} (median of rounds) | p50 ms | p99 ms "
              f"| {first}/system per round (median, min–max) |")
        print("|---|---:|---:|---:|---:|")
        for target in targets:
            name = target.name
            ratios = [a / b for a, b in zip(rates[op, first], rates[op, name], strict=True)]
            lat = sorted(latencies[op, name])
            spread = "—" if name == first else \
                f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}–{max(ratios):.2f})"
            print(f"| {name} | {statistics.median(rates[op, name]):.0f} | {percentile(lat, 50) * 1000:.2f} | "
                  f"{percentile(lat, 99) * 1000:.2f} | {spread} |")
    print("\ncreates/s per burst: creates / the sum of their latencies (one keep-alive connection); gets/s per burst:"
          " requests / the burst's wall time (all clients)")


if __name__ == "__main__":
    main()
