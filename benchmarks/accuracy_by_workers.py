"""Accuracy per epoch for 1, 2, 4, 8, 16 workers (the foundation issue's figures).

    python benchmarks/accuracy_by_workers.py [--workers 1,2,4,8,16] [--seeds 0,1,2] [--epochs 32]

Runs each (workers, seed) job on one embedded Ray cluster with real MNIST,
prints a table of medians over seeds and writes every run's history to
benchmarks/results/accuracy_by_workers.json.
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
    parser.add_argument("--workers", default="1,2,4,8,16")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=32)
    parser.add_argument("--out", default="benchmarks/results/accuracy_by_workers.json")
    args = parser.parse_args()
    dataset = load_dataset()
    connect_local()
    runs = []
    for workers in [int(w) for w in args.workers.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            spec = JobSpec(workers=workers, epochs=args.epochs, seed=seed)
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                result = run_job(spec, Path(tmp), f"bench-{workers}-{seed}", dataset=dataset)
            runs.append(
                {
                    "workers": workers,
                    "seed": seed,
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

    shown = [e for e in SHOW_EPOCHS if e <= args.epochs]
    header = ["workers", "epochs to 97%", "to 97.5%", *[f"ep {e}" for e in shown], "train s", "job s"]
    print("\nMedians over seeds " + args.seeds + " (test accuracy %, epochs, seconds)")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for workers in sorted({r["workers"] for r in runs}):
        mine = [r for r in runs if r["workers"] == workers]

        def med(values):
            values = [v for v in values if v is not None]
            return statistics.median(values) if values else None

        def epochs_to(target):
            found = [first_epoch_reaching(r["history"], target) for r in mine]
            missing = sum(f is None for f in found)
            m = med(found)
            return ("-" if m is None else f"{m:g}") + (f" ({missing} never)" if missing else "")

        cells = [str(workers), epochs_to(0.97), epochs_to(0.975)]
        cells += [f"{med([r['history'][e - 1]['test_accuracy'] for r in mine]) * 100:.2f}" for e in shown]
        cells += [f"{med([r['train_s'] for r in mine]):.1f}", f"{med([r['total_s'] for r in mine]):.1f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
