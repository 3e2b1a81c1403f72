"""`dtrain status` over HTTP against through Ray, and how soon `logs --follow` shows an epoch, in one run.

    python benchmarks/api_speed.py [--runs 7] [--out benchmarks/results/api_speed.json]

Starts a one-node cluster with `ray start --head` (a private temp dir, HOME and
storage; stopped by killing its process group, never `ray stop`), trains one small
job through Ray, which starts the registry and its HTTP API, then:

1. `dtrain status JOB --json`, each in a new process timed from start to exit,
   through Ray (`RAY_ADDRESS`) and over HTTP (`--address http://...`) alternated, so
   the machine's speed touches both alike; medians, and their ratio HTTP / Ray. In the
   same alternation, the floor under the HTTP figure: a bare `python -c pass`, and
   `python -c "import dtrain.cli.main"` (the CLI's own start: Typer, Rich, pydantic).
2. A job submitted over HTTP and followed with `dtrain logs JOB --follow` over HTTP:
   for each epoch, the time from its line landing in metrics.jsonl on the head's disk
   (this machine's: watched every 5 ms) to the follower printing it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DTRAIN = [sys.executable, "-c", "from dtrain.cli.entry import main; main()"]
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(args: list[str], env: dict[str, str], command: list[str] = DTRAIN) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"dtrain {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return took


def follow_latencies(env: dict[str, str], api: str, storage: Path, epochs: int) -> list[float]:
    """Seconds from each epoch's line landing on disk to `logs --follow` printing it."""
    submitted = subprocess.run([*DTRAIN, "submit", "--workers", "2", "--epochs", str(epochs), "--detach", "--json",
                                "--address", api], env=env, capture_output=True, text=True, timeout=120)
    job_id = json.loads(submitted.stdout)["job_id"]
    metrics = storage / "jobs" / job_id / "metrics.jsonl"
    landed: list[float] = []

    def watch() -> None:
        while len(landed) < epochs:
            lines = len(metrics.read_text().splitlines()) if metrics.exists() else 0
            while len(landed) < lines:
                landed.append(time.perf_counter())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    follower = subprocess.Popen([*DTRAIN, "logs", job_id, "--follow", "--json", "--address", api], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    printed = []
    for line in follower.stdout:  # type: ignore[union-attr]
        if '"epoch"' in line and '"state"' not in line:
            printed.append(time.perf_counter())
    follower.wait(timeout=300)
    watcher.join(timeout=10)
    return [p - l for p, l in zip(printed, landed)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="status calls of each kind")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the followed job")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "api_speed.json")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="dtr", dir="/tmp"))
    port, api_port = free_port(), free_port()
    storage = scratch / "home" / ".dtrain"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DTRAIN_"))}
    env.update(HOME=str(scratch / "home"), RAY_TMPDIR=str(scratch), RAY_USAGE_STATS_ENABLED="0",
               DTRAIN_API_PORT=str(api_port))
    head = subprocess.Popen([RAY, "start", "--head", "--port", str(port), "--num-cpus", "2", "--disable-usage-stats"],
                            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = head.communicate(timeout=120)
        if head.returncode != 0:
            raise SystemExit(f"ray start failed: {out[-1000:]}")
        ray_env = {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}
        first = subprocess.run([*DTRAIN, "submit", "--workers", "2", "--epochs", "1", "--json"], env=ray_env,
                               capture_output=True, text=True, timeout=300)
        job_id = json.loads(first.stdout)["job_id"]
        api = f"http://127.0.0.1:{api_port}"
        http_env = {k: v for k, v in env.items() if k != "DTRAIN_API_PORT"}
        http_env["DTRAIN_TOKEN"] = (storage / "api_token").read_text().strip()
        through_ray, over_http, python, cli_import = [], [], [], []
        for i in range(args.runs):
            through_ray.append(timed(["status", job_id, "--json"], ray_env))
            over_http.append(timed(["status", job_id, "--json", "--address", api], http_env))
            python.append(timed([], http_env, [sys.executable, "-c", "pass"]))
            cli_import.append(timed([], http_env, [sys.executable, "-c", "import dtrain.cli.main"]))
            print(f"run {i + 1}/{args.runs}  status through Ray {through_ray[-1]:.2f} s  over HTTP {over_http[-1]:.2f} s  "
                  f"(python alone {python[-1]:.2f} s, importing the CLI {cli_import[-1]:.2f} s)")
        latencies = follow_latencies(http_env, api, storage, args.epochs)
        print("logs --follow over HTTP, disk to screen: " + ", ".join(f"{x:.2f} s" for x in latencies))
    finally:
        os.killpg(head.pid, signal.SIGKILL)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": args.runs,
        "status_through_ray_s": through_ray,
        "status_over_http_s": over_http,
        "python_alone_s": python,
        "cli_import_s": cli_import,
        "medians": {"through_ray_s": statistics.median(through_ray), "over_http_s": statistics.median(over_http),
                    "python_alone_s": statistics.median(python), "cli_import_s": statistics.median(cli_import)},
        "ratio_http_ray": statistics.median(over_http) / statistics.median(through_ray),
        "follow_latency_s": latencies,
        "follow_latency_max_s": max(latencies) if latencies else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"status over HTTP / through Ray: {result['ratio_http_ray']:.3f} (medians of {args.runs}); "
          f"follow latency max {result['follow_latency_max_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
