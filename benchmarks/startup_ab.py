"""Local `dtrain submit` end to end: this checkout against an earlier commit, alternated in one run.

    python benchmarks/startup_ab.py [--before REV] [--runs 5] [--workers 8] [--out benchmarks/results/startup_ab.json]

Each run is a real `dtrain submit --local --workers N --json` in a new process, with
a fresh HOME and storage, timed from process start to exit; its report gives the
start-up (command start to the first trained sample) and the training phase.
Before and after alternate run by run, so a change in the machine's speed touches
both alike; the figures are medians, and the ratio after/before is the result
(the host's absolute speed varies up to 3x between days). The earlier commit is
unpacked with `git archive` into a temporary directory and imported from there;
each side runs one unmeasured job first, which compiles its numba kernel.

Default --before: 6c0a3e8^, the last commit before dtrain stopped patching Ray's
internals during `ray.init` (issue 15).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BEFORE = "d961316"


def unpack(rev: str, into: Path) -> Path:
    """`rev` of this repository as an importable `dtrain` package under `into`; returns the sys.path entry."""
    package = into / "dtrain"
    package.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(package)], input=archive, check=True)
    return into


def checkout_path(into: Path) -> Path:
    """This checkout as an importable `dtrain` package (a link), so both sides import the same way."""
    into.mkdir(parents=True)
    (into / "dtrain").symlink_to(REPO)
    return into


def one_job(path: Path, workers: int, scratch: Path) -> dict:
    home = Path(tempfile.mkdtemp(dir=scratch))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DTRAIN_"))}
    env.update(HOME=str(home), PYTHONPATH=str(path), DTRAIN_STORAGE=str(home / "storage"))
    # The program's entry point: cli/entry.py since it set the BLAS environment, cli/main.py before.
    entry = "entry" if (path / "dtrain" / "cli" / "entry.py").exists() else "main"
    command = [sys.executable, "-c", f"from dtrain.cli.{entry} import main; main()", "submit", "--local",
               "--workers", str(workers), "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=home)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"failed": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    result = json.loads(proc.stdout)
    return {
        "end_to_end_s": wall,
        "startup_s": result["timing"]["startup_s"],
        "train_s": result["timing"]["train_s"],
        "test_accuracy": result["test_accuracy"],
    }


def summary(runs: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="the earlier commit")
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each side")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "startup_ab.json")
    args = parser.parse_args()

    after_rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory(prefix="dtrain-ab-") as tmp:
        scratch = Path(tmp)
        sides = {"before": unpack(args.before, scratch / "before"), "after": checkout_path(scratch / "after")}
        runs: dict[str, list[dict]] = {name: [] for name in sides}
        for name, path in sides.items():
            print(f"warm-up: {name}", file=sys.stderr, flush=True)
            one_job(path, args.workers, scratch)  # compiles the kernel; a failure here is not counted
        failures: dict[str, list[str]] = {name: [] for name in sides}
        for i in range(args.runs):
            for name, path in sides.items():
                # A run that fails (a loaded host can time Ray's start-up out) is recorded and run again.
                while "failed" in (run := one_job(path, args.workers, scratch)):
                    failures[name].append(run["failed"])
                    print(f"run {i + 1}/{args.runs} {name}: failed, again: {run['failed']}", file=sys.stderr, flush=True)
                    if len(failures[name]) > args.runs:
                        raise SystemExit(f"{name}: too many failed runs")
                runs[name].append(run)
                print(f"run {i + 1}/{args.runs} {name:6}  end to end {run['end_to_end_s']:5.2f} s  "
                      f"start-up {run['startup_s']:5.2f} s  accuracy {run['test_accuracy']:.4f}", file=sys.stderr, flush=True)

    medians = {name: summary(r) for name, r in runs.items()}
    result = {
        "script": "benchmarks/startup_ab.py",
        "command": f"dtrain submit --local --workers {args.workers}",
        "before": args.before,
        "after": after_rev + ("+uncommitted" if dirty else ""),
        "runs": args.runs,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "loadavg_end": os.getloadavg()},
        "medians": medians,
        "failed_runs": failures,
        "ratio_after_before": {k: medians["after"][k] / medians["before"][k] for k in ("end_to_end_s", "startup_s")},
        "all": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'':8} {'end to end':>11} {'start-up':>9} {'training':>9} {'accuracy':>9}")
    for name, m in medians.items():
        print(f"{name:8} {m['end_to_end_s']:10.2f}s {m['startup_s']:8.2f}s {m['train_s']:8.2f}s {m['test_accuracy']:9.4f}")
    ratio = result["ratio_after_before"]
    print(f"after / before: end to end {ratio['end_to_end_s']:.3f}, start-up {ratio['startup_s']:.3f} "
          f"(medians of {args.runs} alternated runs; {args.out.resolve().relative_to(REPO)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
