"""Accuracy per epoch for 1, 2, 4, 8, 16 workers (the foundation issue's figures).

    python benchmarks/accuracy_by_workers.py [--workers 1,8,16,32,64] [--seeds 0,...,9] [--epochs 32]
    python benchmarks/accuracy_by_workers.py --set sync_growth=1.5 --out benchmarks/results/schedule/growth-1.5.json
    python benchmarks/accuracy_by_workers.py --table benchmarks/results/accuracy_by_workers.json

Runs each (workers, seed) job on one embedded Ray cluster with real MNIST,
prints a table of medians over seeds and writes every run's history to
benchmarks/results/accuracy_by_workers.json (`--table` prints the table of a
saved file again). Ten seeds by default: one worker's constant-lr SGD hovers
around 97% for several epochs, so its "epochs to 97%" varies from 2 to 6 with
the seed, and three seeds are too few for a stable median.

`--set key=value` (repeatable) overrides a job setting in the flat form of
`dtrain submit` (sync_every, sync_growth, block_momentum, combine, lr, ...): the
way candidate schedules are compared (benchmarks/results/schedule/, docs/algorithms.md).
Every run records the spec it ran. Workers share the 2 cores, packed one process
per core, so 64 workers cost about what 8 do: this measures epochs, not seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from dtrain.cluster.connect import connect_local
from dtrain.cluster.runner import run_job
from dtrain.data.mnist import load_dataset
from dtrain.spec import JobSpec

SHOW_EPOCHS = (1, 2, 3, 5, 10, 20, 32)


def first_epoch_reaching(history: list[dict], target: float) -> int | None:
    return next((h["epoch"] for h in history if h["test_accuracy"] >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,4,8,16,32,64")
    parser.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9")
    parser.add_argument("--epochs", type=int, default=32)
    parser.add_argument("--out", default="benchmarks/results/accuracy_by_workers.json")
    parser.add_argument("--table", metavar="FILE", help="print the table of a saved run and exit")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a job setting, flat form (e.g. sync_growth=1.5); repeatable")
    args = parser.parse_args()
    overrides = dict(parse_setting(s) for s in args.set)
    if args.table:
        print_table(json.loads(Path(args.table).read_text()))
        return
    dataset = load_dataset()
    connect_local()
    runs = []
    for workers in [int(w) for w in args.workers.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            spec = JobSpec(**{**overrides, "workers": workers, "epochs": args.epochs, "seed": seed})
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                result = run_job(spec, Path(tmp), f"bench-{workers}-{seed}", dataset=dataset)
            runs.append(
                {
                    "workers": workers,
                    "seed": seed,
                    "settings": overrides,
                    "spec": spec.model_dump(mode="json"),
                    "history": result.history,
                    "final": result.evaluation.accuracy,
                    "train_s": result.report["timing"]["train_s"],
                    "total_s": time.perf_counter() - t0,
                }
            )
            print(f"workers={workers} seed={seed} final={result.evaluation.accuracy:.4f} "
                  f"e97={first_epoch_reaching(result.history, 0.97)} train={runs[-1]['train_s']:.1f}s", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(runs, indent=1))

    print_table(runs)


def parse_setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--set {text!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a string such as combine=average


def median_epoch(found: list[int | None]) -> float | None:
    """Median epoch of reaching a target over seeds, a seed that never reached it counting
    as later than any that did (None when most seeds never reached it)."""
    ordered = sorted(found, key=lambda e: float("inf") if e is None else e)
    mid = len(ordered) // 2
    middle = ordered[mid - 1 : mid + 1] if len(ordered) % 2 == 0 else ordered[mid : mid + 1]
    return None if None in middle else statistics.mean(middle)


def print_table(runs: list[dict]) -> None:
    epochs = min(len(r["history"]) for r in runs)
    seeds = sorted({r["seed"] for r in runs})
    shown = [e for e in SHOW_EPOCHS if e <= epochs]
    header = ["workers", "epochs to 97%", "vs 1 worker", "to 97.5%", *[f"ep {e}" for e in shown], "train s", "job s"]
    print(f"\nMedians over seeds {','.join(map(str, seeds))} (test accuracy %, epochs, seconds)")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    by_workers = {w: [r for r in runs if r["workers"] == w] for w in sorted({r["workers"] for r in runs})}
    reached = {w: [first_epoch_reaching(r["history"], 0.97) for r in mine] for w, mine in by_workers.items()}
    one = median_epoch(reached.get(1, [None]))
    for workers, mine in by_workers.items():

        def epochs_to(target: float) -> str:
            found = [first_epoch_reaching(r["history"], target) for r in mine]
            m, missing = median_epoch(found), sum(f is None for f in found)
            return ("never" if m is None else f"{m:g}") + (f" ({missing} of {len(found)} never)" if missing else "")

        m97 = median_epoch(reached[workers])
        ratio = f"{m97 / one:.2f}x" if m97 is not None and one else "-"
        cells = [str(workers), epochs_to(0.97), ratio, epochs_to(0.975)]
        cells += [f"{statistics.median([r['history'][e - 1]['test_accuracy'] for r in mine]) * 100:.2f}" for e in shown]
        cells += [f"{statistics.median([r['train_s'] for r in mine]):.1f}", f"{statistics.median([r['total_s'] for r in mine]):.1f}"]
        print("| " + " | ".join(cells) + " |")
    print("\nEpochs to 97% per seed (" + ",".join(map(str, seeds)) + "):")
    for workers, found in reached.items():
        print(f"  {workers:>2} workers: " + " ".join("-" if e is None else str(e) for e in found))


if __name__ == "__main__":
    main()
