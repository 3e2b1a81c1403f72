"""Reproduce McMahan et al. (2017), "Communication-Efficient Learning of Deep Networks from
Decentralized Data", Table 1/2 rows for the MNIST 2NN: rounds of federated training to
reach 97% test accuracy.

Setup as in the paper: 784-200-200-10 with ReLU, 100 clients of 600 samples, a fraction
C = 0.1 of them (10) sampled each round, E = 1 local epoch; IID (shuffled, split evenly)
or pathological non-IID (sorted by label, 200 pieces of 300, two per client). Every row
runs the real `dtrain submit` (local mode, embedded data) with --until-accuracy 0.97.

    python benchmarks/fedavg.py                  # every row, 3 seeds (~40 min on 2 cores; SCAFFOLD's the longest)
    python benchmarks/fedavg.py --rows fedavg-iid --lr 0.05 0.1

The FedAdam and FedYogi rows (Reddi et al., 2021) run the non-IID row with the server
stepping with Adam or Yogi (`--server-lr`, swept with --server-lr), and the SCAFFOLD row
(Karimireddy et al., 2020) with control variates correcting the clients' steps (server
step η_g = 1, the paper's); McMahan et al. have no figure for them. Prints a table
beside the paper's figures and writes
benchmarks/results/fedavg.json, keeping the rows of an earlier file that were not run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NON_IID = ["--batch-size", "10", "--shard", "label-skew"]

#: name: (paper's rounds to 97%, dtrain options, learning rate used here, rounds at most)
ROWS = {
    "fedsgd-iid": (1474, ["--batch-size", "0"], 0.2, 3000),
    "fedavg-iid": (87, ["--batch-size", "10"], 0.05, 400),
    "fedavg-noniid": (664, NON_IID, 0.05, 1500),
    "fedadam-noniid": (None, [*NON_IID, "--algorithm", "fedadam"], 0.05, 1500),
    "fedyogi-noniid": (None, [*NON_IID, "--algorithm", "fedyogi"], 0.05, 1500),
    "scaffold-noniid": (None, [*NON_IID, "--algorithm", "scaffold"], 0.05, 1500),
}

#: The server's step size of the rows with a server optimiser: FedAdam's and FedYogi's chosen
#: with --server-lr (docs/algorithms.md), SCAFFOLD's η_g the paper's 1 (the clients' mean change).
SERVER_LR = {"fedadam-noniid": 0.01, "fedyogi-noniid": 0.01, "scaffold-noniid": 1.0}

#: The installed console script, next to this Python (as the README's install puts it).
DTRAIN = shutil.which("dtrain", path=os.path.dirname(sys.executable)) or shutil.which("dtrain") or "dtrain"

COMMON = [
    "--hidden", "200,200", "--activation", "relu",
    "--clients", "100", "--clients-per-round", "10", "--local-epochs", "1",
    "--workers", "2", "--until-accuracy", "0.97",
]


def command(row: str, lr: float, rounds: int, eval_every: int, seed: int, storage: str, server_lr: float | None) -> list[str]:
    _, options, _, _ = ROWS[row]
    if server_lr is not None:
        options = [*options, "--server-lr", str(server_lr)]
    return [
        DTRAIN, "submit", "--local", "--storage", storage, "--json", *COMMON, *options,
        "--lr", str(lr), "--rounds", str(rounds), "--eval-every", str(eval_every), "--seed", str(seed),
    ]


def run(row: str, lr: float, rounds: int, eval_every: int, seed: int, server_lr: float | None = None) -> dict:
    storage = tempfile.mkdtemp(prefix="dtrain-fedavg-")
    cmd = command(row, lr, rounds, eval_every, seed, storage, server_lr)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:  # e.g. diverged at this learning rate: a row of the sweep, not the end of it
        why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit status {done.returncode}"
        return {"row": row, "lr": lr, "server_lr": server_lr, "paper_rounds": ROWS[row][0], "rounds_to_97": None, "failed": why,
                "final_accuracy": None, "rounds_run": 0, "seconds": round(seconds, 1)}
    payload = json.loads(done.stdout)
    metrics = [json.loads(line) for line in (Path(storage) / "jobs" / payload["job_id"] / "metrics.jsonl").read_text().splitlines()]
    reached = next((m for m in metrics if m["test_accuracy"] >= 0.97), None)
    return {
        "row": row,
        "lr": lr,
        "seed": seed,
        "server_lr": server_lr,
        "paper_rounds": ROWS[row][0],
        "rounds_to_97": reached["round"] if reached else None,
        "eval_every": eval_every,
        "final_accuracy": metrics[-1]["test_accuracy"],
        "rounds_run": metrics[-1]["round"],
        "seconds": round(seconds, 1),
        "command": " ".join(["dtrain", *cmd[1:]]).replace(f"--storage {storage} ", ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--lr", nargs="+", type=float, help="learning rates to try (default: each row's own)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="the median over these seeds is reported")
    parser.add_argument("--server-lr", nargs="+", type=float, help=f"server step sizes of the rows with a server optimiser (default {SERVER_LR})")
    parser.add_argument("--rounds", type=int, default=None, help="rounds at most (default: each row's own)")
    parser.add_argument("--eval-every", type=int, default=None, help="rounds between scorings (default: 1; 5 for FedSGD)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fedavg.json"))
    args = parser.parse_args()
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="dtf", dir="/tmp"))  # never join a cluster by accident

    results, table = [], []
    print(f"{'row':<15} {'lr':>6} {'paper':>7} {'dtrain':>7} {'ratio':>6} {'by seed':>20} {'final':>7} {'time':>7}")
    for row in args.rows:
        paper, options, lr_default, rounds = ROWS[row]
        rounds = args.rounds or rounds
        eval_every = args.eval_every or (5 if row.startswith("fedsgd") else 1)
        server_lrs = (args.server_lr or [SERVER_LR[row]]) if "--algorithm" in options else [None]
        for lr, server_lr in [(lr, slr) for lr in args.lr or [lr_default] for slr in server_lrs]:
            runs = [run(row, lr, rounds, eval_every, seed, server_lr) for seed in args.seeds]
            results.extend(runs)
            failed = [r["failed"] for r in runs if r.get("failed")]
            if failed:
                print(f"{row:<15} {lr:>6g} {paper or '-':>7}  {failed[0]}", flush=True)
                continue
            got = [r["rounds_to_97"] for r in runs]
            reached = sorted(g for g in got if g is not None)
            median = statistics.median(reached) if len(reached) == len(got) else None
            seconds = statistics.median(r["seconds"] for r in runs)
            final = statistics.median(r["final_accuracy"] for r in runs)
            table.append({"row": row, "lr": lr, "server_lr": server_lr, "paper_rounds": paper, "median_rounds_to_97": median,
                          "by_seed": got, "ratio": median / paper if median and paper else None, "command": runs[0]["command"]})
            by_seed = ", ".join(str(g) if g else f">{rounds}" for g in got)
            print(
                f"{row:<15} {lr:>6g} {paper or '-':>7} {median if median else '-':>7} "
                f"{f'{median / paper:.2f}' if median and paper else '-':>6} {by_seed:>20} {final * 100:6.2f}% {seconds:6.0f}s"
                + (f"  server lr {server_lr:g}" if server_lr else ""),
                flush=True,
            )
    out = Path(args.out)
    if out.exists():  # keep the rows of the earlier file that were not run this time
        earlier = json.loads(out.read_text())
        table = [t for t in earlier["table"] if t["row"] not in args.rows] + table
        results = [r for r in earlier["runs"] if r["row"] not in args.rows] + results
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"table": table, "runs": results, "setup": COMMON}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
