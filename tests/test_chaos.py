"""The chaos soak, short: one SIGKILL of each kind (a worker, a parameter server, a job's
runner, the job registry, the second node's raylet) into jobs of every algorithm on a
two-node cluster; nothing may be lost (benchmarks/chaos.py does the checking).

Runs the real script in its own process (~2 min on 2 cores), as CI and a user would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHAOS = REPO / "benchmarks" / "chaos.py"
KINDS = ("worker", "server", "runner", "registry", "raylet")


def test_short_chaos_soak_loses_nothing(tmp_path):
    out = tmp_path / "chaos.json"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(CHAOS), "--short", "--out", str(out)],
                          capture_output=True, text=True, timeout=480)
    took = time.monotonic() - t0
    print(proc.stdout)
    print(f"short chaos soak took {took:.0f} s")
    assert out.exists(), f"exit {proc.returncode}, no results:\n{proc.stderr[-4000:]}"
    result = json.loads(out.read_text())

    made = [k["kind"] for k in result["kills"] if "skipped" not in k]
    assert sorted(made) == sorted(KINDS), result["kills"]  # one of each kind, each really made
    assert all(k["pid"] > 0 and k["jobs_running"] for k in result["kills"])  # each into running jobs
    raylet = next(k for k in result["kills"] if k["kind"] == "raylet")
    assert raylet.get("node_added")  # a new second node came back for the jobs after it

    jobs = result["jobs"]
    assert {j["algorithm"] for j in jobs} == {"sync", "async", "federated"} and len(jobs) >= 3
    problems = {j["job_id"]: j["problems"] for j in jobs if j["problems"]}
    assert not problems, problems
    assert all(j["state"] == "SUCCEEDED" for j in jobs)
    assert all(j["checks"]["bit_identical_to_baseline"] for j in jobs if j["algorithm"] in ("sync", "federated"))
    assert result["lost"] == 0 and result["ok"], result["failures"]
    assert proc.returncode == 0, proc.stderr[-4000:]


# ---------------------------------------------------------------- bugs the soak found

# `dtrain submit --detach --json` printed Ray's "(raylet) The node with node id ... has been
# marked dead" line on stdout, before the job's JSON, when it ran while a node was lost
# (benchmarks/chaos.py, a submit in the seconds after the raylet kill). Ray's error listener
# thread prints such messages to sys.stdout; `status`, `list` and the other job commands keep
# stdout for their results first (cli/stdout.py reserve_stdout, via jobs_or_fail), but the
# submit and resume commands talk to the cluster before they do (cli/submit.py: open_jobs
# and start_on_cluster run before drive() calls reserve_stdout, and the --detach branch
# never calls it). The tests below stand in for Ray with a fake cluster whose calls print
# from another thread, as Ray's listener does.

FAKE_CLUSTER = """
import sys, threading
from dtrain.cluster import client
from dtrain.cluster.jobstore import JobRecord, Owner
from dtrain.spec import JobSpec

RAY_SAYS = "(raylet) The node with node id: 90bc0b71 has been marked dead because the detector has missed too many heartbeats from it."

def ray_prints():  # as Ray's error listener thread does, while the command talks to the cluster
    t = threading.Thread(target=print, args=(RAY_SAYS,))
    t.start()
    t.join()

class FakeJobs:
    runtime = "cluster"
    where = "a fake cluster"
    root = "/nonexistent"
    def submit(self, spec):
        ray_prints()
        return JobRecord(id="0123abcd", spec=spec, owner=Owner(runtime="cluster", host="h"))
    def job(self, job_id):
        ray_prints()
        return JobRecord(id=job_id, spec=JobSpec(), owner=Owner(runtime="cluster", host="h"))

client.open_jobs = lambda *args, **kwargs: FakeJobs()
from dtrain.cli.main import main
sys.argv = ["dtrain", *sys.argv[1:]]
main()
"""


def run_with_fake_cluster(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", FAKE_CLUSTER, *args], capture_output=True, text=True, timeout=120)


def test_status_json_keeps_ray_messages_off_stdout():
    proc = run_with_fake_cluster("status", "0123abcd", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["job_id"] == "0123abcd"  # JSON alone on stdout
    assert "marked dead" in proc.stderr


def test_submit_detach_json_keeps_ray_messages_off_stdout():
    proc = run_with_fake_cluster("submit", "--workers", "2", "--epochs", "1", "--detach", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["job_id"] == "0123abcd"  # fails: the raylet line comes first


# A lost parameter server's recovery reason, in report.json's "recoveries" and in the job's
# record (`dtrain status` shows "recovering from epoch 2: ..."), is the first line of Ray's
# RayTaskError: its coloured task header, e.g. "\x1b[36mray::ParameterServer.end_epoch()\x1b[39m
# (pid=17668, ip=..., actor_id=..., repr=<dtrain.cluster.parameter_server.ParameterServer object
# at 0x7f...>)", with terminal escape codes in the JSON and nothing of what happened (the cause,
# "The actor died unexpectedly ...", is on a later line). cluster/runner.py train_epochs:
# `reason = str(e).strip().splitlines()[0]`.


def test_a_lost_servers_recovery_reason_is_plain_words(ray_cluster, small_mnist, tmp_path):
    import os
    import signal

    from dtrain.cluster.runner import run_job
    from dtrain.spec import JobSpec

    server: list[int] = []

    def kill_the_server(kind, payload):
        if kind == "started":
            server.append(payload["server_pid"])
        if kind == "epoch" and payload["epoch"] == 1:
            os.kill(server[0], signal.SIGKILL)

    result = run_job(JobSpec(workers=2, epochs=3, sync_every=250, seed=6), tmp_path, "r", on_event=kill_the_server,
                     dataset=small_mnist)
    [reason] = result.report["recoveries"]
    assert "\x1b[" not in reason, reason  # fails: "\x1b[36mray::ParameterServer.end_epoch()\x1b[39m (pid=..."
    assert not reason.startswith("ray::") and "actor" in reason.lower(), reason  # what happened, in Ray's words
