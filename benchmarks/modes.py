"""Synchronous against asynchronous training, a straggler, and the cost of label-skewed shards.

    python benchmarks/modes.py                 # ~6 min on 2 cores
    python benchmarks/modes.py --repeats 1 --workers 2 4

In one Ray session, on real MNIST, the same jobs `dtrain submit` runs (`run_job`):
1. sync and async at 2, 4 and 8 workers: training throughput (samples/s over the
   training phase), time and epochs to 97% test accuracy, final accuracy after
   --epochs epochs;
2. one worker 0.2 s late for every block (--straggler-delay): sync waits for it
   each round, async does not;
3. --shard label-skew against iid at 8 workers, with block momentum (bmuf) and
   plain averaging: the accuracy skew costs, and what the combine rule recovers;
4. the federated algorithms (fedavg, fedadam, fedyogi, scaffold) on the same
   label-skewed data at 8 workers, for as many epochs: on the workers' shards
   (--clients = workers, every client each round: a round is an epoch), and on 8
   label-skewed clients per worker, one worker's worth sampled each round (a round
   is 1/8 of an epoch, about as many rounds as sync's schedule runs);
5. SCAFFOLD on the workers' shards with rounds of --local-steps steps, as many as
   sync's first-epoch blocks (2000 / workers samples) and half that, all epochs long.

Medians over --repeats runs with different seeds (0, 1, ...). Prints tables and writes
benchmarks/results/modes.json; with --parts, only those parts run and the others
are kept from the file, each with the seeds it was run with (`repeats_of`).

    python benchmarks/modes.py --parts federated   # part 4 alone (~8 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from dtrain.spec import JobSpec


#: The measurements main() can run (--parts), each a key of modes.json.
PARTS = ("modes", "straggler", "skew", "federated", "scaffold-steps")


def job(spec: JobSpec, dataset) -> dict:
    from dtrain.cluster.runner import run_job

    run_dir = Path(tempfile.mkdtemp(prefix="dtrain-modes-"))
    result = run_job(spec, run_dir, "bench", dataset=dataset)
    history = result.history
    samples = sum(h["samples"] for h in history)
    train_s = history[-1]["train_time_s"]
    at_97 = next((h for h in history if h["test_accuracy"] >= 0.97), None)
    return {
        "samples_per_s": samples / train_s,
        "train_s": train_s,
        "final_accuracy": result.evaluation.accuracy,
        "epochs_to_97": at_97["epoch"] if at_97 else None,
        "train_s_to_97": at_97["train_time_s"] if at_97 else None,
        "workers": result.report["workers"],
        "mean_staleness": statistics.mean(h.get("mean_staleness", 0) for h in history),
    }


def median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    return statistics.median(values) if len(values) > len(runs) / 2 else None


def fmt(value: float | None, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", nargs="+", type=int, default=[2, 4, 8])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--straggler-delay", type=float, default=0.2)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which measurements to run (default all)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "modes.json"))
    args = parser.parse_args()
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="dtm", dir="/tmp"))  # a private Ray

    from dtrain.cluster.connect import connect_local
    from dtrain.data.mnist import load_dataset

    dataset = load_dataset()
    connect_local()
    seeds = range(args.repeats)
    out: dict = {"epochs": args.epochs, "repeats": args.repeats, **{part: [] for part in args.parts}}
    out["repeats_of"] = {part: args.repeats for part in PARTS}  # the seeds each part's medians are of
    if set(args.parts) != set(PARTS) and Path(args.out).exists():  # keep the parts not run this time
        earlier = json.loads(Path(args.out).read_text())
        if earlier["epochs"] != args.epochs:
            raise SystemExit(f"error: {args.out} has {earlier['epochs']} epochs: run them all")
        kept = {part: earlier.get("repeats_of", {}).get(part, earlier["repeats"]) for part in PARTS if part not in args.parts}
        out = {**earlier, **out, "repeats_of": {**out["repeats_of"], **kept}}
    k = max(args.workers)
    if "modes" in args.parts:
        sync_and_async(out, args.workers, args.epochs, seeds, dataset)
    if "straggler" in args.parts:
        straggler(out, k, args.epochs, seeds, dataset, args.straggler_delay)
    if "skew" in args.parts:
        skew(out, k, args.epochs, seeds, dataset)
    if "federated" in args.parts:
        federated(out, k, args.epochs, seeds, dataset)
    if "scaffold-steps" in args.parts:
        scaffold_steps(out, k, args.epochs, seeds, dataset)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")


def sync_and_async(out: dict, workers: list[int], epochs: int, seeds: range, dataset) -> None:
    print(f"sync vs async, {epochs} epochs, medians of {len(seeds)}")
    print(f"{'workers':>7} {'mode':>5} {'samples/s':>10} {'to 97%':>8} {'epochs':>6} {'final':>7} {'staleness':>9}")
    for k in workers:
        for mode in ("sync", "async"):
            runs = [job(JobSpec(workers=k, epochs=epochs, mode=mode, seed=s), dataset) for s in seeds]
            row = {
                "workers": k, "mode": mode,
                **{key: median(runs, key) for key in ("samples_per_s", "train_s_to_97", "epochs_to_97", "final_accuracy", "mean_staleness")},
            }
            out["modes"].append(row)
            print(
                f"{k:>7} {mode:>5} {fmt(row['samples_per_s'], ',.0f'):>10} {fmt(row['train_s_to_97'], '.2f') + ('s' if row['train_s_to_97'] else ''):>8} "
                f"{fmt(row['epochs_to_97'], '.0f'):>6} {row['final_accuracy'] * 100:6.2f}% {row['mean_staleness']:9.2f}",
                flush=True,
            )


def straggler(out: dict, k: int, epochs: int, seeds: range, dataset, delay: float) -> None:
    print(f"\none straggler ({delay:g} s per block), {k} workers, {epochs} epochs")
    print(f"{'mode':>5} {'train s':>8} {'straggler samples':>18} {'others (median)':>16} {'final':>7}")
    for mode in ("sync", "async"):
        runs = [job(JobSpec(workers=k, epochs=epochs, mode=mode, seed=s, straggler_delay=delay), dataset) for s in seeds]
        slow = statistics.median(r["workers"][0]["samples"] for r in runs)
        others = statistics.median(statistics.median(w["samples"] for w in r["workers"][1:]) for r in runs)
        row = {"mode": mode, "train_s": median(runs, "train_s"), "straggler_samples": slow, "others_samples": others,
               "final_accuracy": median(runs, "final_accuracy")}
        out["straggler"].append(row)
        print(f"{mode:>5} {row['train_s']:8.2f} {slow:>18,.0f} {others:>16,.0f} {row['final_accuracy'] * 100:6.2f}%", flush=True)


def skew(out: dict, k: int, epochs: int, seeds: range, dataset) -> None:
    print(f"\nlabel-skewed shards, {k} workers, {epochs} epochs (sync)")
    print(f"{'shard':>10} {'combine':>8} {'final':>7} {'epochs to 97%':>14}")
    for shard in ("iid", "label-skew"):
        for combine in ("bmuf", "average"):
            runs = [job(JobSpec(workers=k, epochs=epochs, shard=shard, combine=combine, seed=s), dataset) for s in seeds]
            row = {"shard": shard, "combine": combine, "final_accuracy": median(runs, "final_accuracy"),
                   "epochs_to_97": median(runs, "epochs_to_97")}
            out["skew"].append(row)
            print(f"{shard:>10} {combine:>8} {row['final_accuracy'] * 100:6.2f}% {fmt(row['epochs_to_97'], '.0f', 'not reached'):>14}", flush=True)


#: Part 4's clients: on the workers' shards (one client each, all each round), or CLIENTS_PER_WORKER
#: label-skewed clients per worker with one worker's worth of them sampled each round.
CLIENTS_PER_WORKER = 8
FEDERATED = ("fedavg", "fedadam", "fedyogi", "scaffold")


def federated(out: dict, k: int, epochs: int, seeds: range, dataset) -> None:
    """Part 4: each federated algorithm at its defaults (--lr 0.01, per-sample SGD, one local
    epoch) on label-skewed data, scored once an epoch (a pass over the training set)."""
    print(f"\nfederated algorithms on label-skewed data, {k} workers, {epochs} epochs")
    print(f"{'clients':>16} {'algorithm':>9} {'rounds':>6} {'final':>7} {'epochs to 97%':>14}")
    for clients, per_round in ((k, None), (CLIENTS_PER_WORKER * k, k)):
        rounds_per_epoch = clients // (per_round or clients)
        for name in FEDERATED:
            options = dict(algorithm=name, clients=clients, clients_per_round=per_round, rounds=epochs * rounds_per_epoch,
                           eval_every=rounds_per_epoch, split="label-skew")
            runs = [job(JobSpec(workers=k, seed=s, **options), dataset) for s in seeds]
            row = {"algorithm": name, "clients": clients, "clients_per_round": per_round or clients, "rounds": options["rounds"],
                   "final_accuracy": median(runs, "final_accuracy"), "epochs_to_97": median(runs, "epochs_to_97"),
                   "by_seed": [r["final_accuracy"] for r in runs]}
            out["federated"].append(row)
            print(f"{f'{per_round or clients} of {clients}':>16} {name:>9} {row['rounds']:>6} {row['final_accuracy'] * 100:6.2f}% "
                  f"{fmt(row['epochs_to_97'], '.0f', 'not reached'):>14}", flush=True)



def scaffold_steps(out: dict, k: int, epochs: int, seeds: range, dataset) -> None:
    """Part 5: SCAFFOLD on the label-skewed shards, each round K per-sample steps per worker in
    every epoch, scored once an epoch: K = DEFAULT_ROUND_SAMPLES / k (sync's first-epoch block),
    and half that."""
    from dtrain.spec import DEFAULT_ROUND_SAMPLES

    for steps in (DEFAULT_ROUND_SAMPLES // k, DEFAULT_ROUND_SAMPLES // k // 2):
        rounds_per_epoch = len(dataset.y_train) // k // steps
        options = dict(algorithm="scaffold", clients=k, local_steps=steps, rounds=epochs * rounds_per_epoch,
                       eval_every=rounds_per_epoch, split="label-skew")
        runs = [job(JobSpec(workers=k, seed=s, **options), dataset) for s in seeds]
        row = {"algorithm": "scaffold", "clients": k, "clients_per_round": k, "local_steps": steps, "rounds": options["rounds"],
               "final_accuracy": median(runs, "final_accuracy"), "epochs_to_97": median(runs, "epochs_to_97"),
               "by_seed": [r["final_accuracy"] for r in runs]}
        out["scaffold-steps"].append(row)
        print(f"\nSCAFFOLD on {k} label-skewed shards, {steps} steps a round, {row['rounds']} rounds: "
              f"{row['final_accuracy'] * 100:.2f}% {row['by_seed']}", flush=True)

if __name__ == "__main__":
    main()
