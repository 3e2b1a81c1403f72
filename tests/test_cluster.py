"""The cluster service, end to end: a real two-node Ray cluster and the real `dtrain` CLI in subprocesses.

Every command runs in a new process that exits, as a user's would; jobs live in
the cluster between them.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dtrain.model import load_model
from clusters import DTRAIN, wait_until


@pytest.fixture(scope="module")
def cluster(two_node_cluster):
    return two_node_cluster


def test_detached_job_outlives_its_client_and_new_processes_find_it(cluster, tmp_path, mnist):
    t0 = time.monotonic()
    submitted = cluster.json("submit", "--workers", "4", "--epochs", "3", "--detach")
    job_id = submitted["job_id"]
    assert submitted["state"] in ("PENDING", "RUNNING") and len(job_id) == 8
    assert time.monotonic() - t0 < 60  # returned without waiting for the job

    # `logs --follow` in a new process: one line per epoch, then the final state.
    follow = cluster.run("logs", job_id, "--follow", "--json")
    assert follow.returncode == 0, follow.stderr
    events = [json.loads(line) for line in follow.stdout.splitlines()]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2, 3]
    assert events[-1]["event"] == "state" and events[-1]["state"] == "SUCCEEDED"

    listed = {j["job_id"]: j for j in cluster.json("list")}
    assert listed[job_id]["state"] == "SUCCEEDED" and listed[job_id]["epoch"] == 3

    status = cluster.job(job_id)
    assert status["test_accuracy"] > 0.95
    # The workers were spread over both nodes, one shard each.
    assert len(status["nodes"]) == 2 and sum(status["nodes"].values()) == 4
    assert cluster.second_node in status["nodes"]

    human = cluster.run("status", job_id)
    assert human.returncode == 0 and "SUCCEEDED" in human.stdout and "4 alive of 4" not in human.stdout

    pulled = cluster.json("pull", job_id, "-o", str(tmp_path / "pulled"))
    assert sorted(pulled["files"]) == ["metrics.jsonl", "model.npz", "report.json", "spec.json"]
    model = load_model(tmp_path / "pulled" / "model.npz")
    accuracy = float(np.mean(model.predict(mnist.x_test) == mnist.y_test))
    assert accuracy == pytest.approx(status["test_accuracy"])

    report = cluster.run("report", job_id)
    assert report.returncode == 0 and "Test accuracy" in report.stdout and "Per class" in report.stdout


def test_three_jobs_at_once_succeed_while_the_registry_keeps_answering(cluster):
    """Three jobs share the cluster; a fourth is followed, detached with Ctrl-C, then cancelled."""
    submits = [
        subprocess.Popen(
            [*DTRAIN, "submit", "--workers", "2", "--cpus-per-worker", "0.5", "--epochs", "24", "--seed", str(seed),
             "--detach", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env,
        )
        for seed in range(3)
    ]
    ids = [json.loads(p.communicate(timeout=120)[0])["job_id"] for p in submits]
    # While they run, another client times the registry's answers until all three have ended.
    timing = subprocess.Popen(
        [sys.executable, "-c", LATENCY_SCRIPT, cluster.address, *ids],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env,
    )
    # A followed submit of a long job: Ctrl-C detaches the client and leaves the job running.
    follower = subprocess.Popen(
        [*DTRAIN, "submit", "--workers", "2", "--cpus-per-worker", "0.5", "--epochs", "1000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env,
    )

    def long_job_running():
        return next((j for j in cluster.json("list") if j["spec"]["algorithm"]["epochs"] == 1000 and j["state"] == "RUNNING"), None)

    long_job = wait_until(long_job_running, 120, "the long job to run")["job_id"]

    out, err = timing.communicate(timeout=300)
    assert timing.returncode == 0, err
    # The script's one JSON line; the raylet may print warnings to a raw driver's stdout, before or after it.
    latency = json.loads(next(line for line in reversed(out.splitlines()) if line.startswith("{")))
    assert latency["calls"] >= 10
    # status and list answer while jobs run, not after them (a job takes tens of seconds here);
    # the bound leaves room for a loaded host, where single answers took up to 0.65 s.
    assert latency["max_s"] < 2.0, latency

    jobs = [cluster.job(i) for i in ids]
    assert [j["state"] for j in jobs] == ["SUCCEEDED"] * 3
    assert all(j["test_accuracy"] > 0.96 for j in jobs)
    # They ran at once: each held its CPUs before any of them ended. (Not their first trained
    # sample: a job given the idle runner and warm workers can train seconds before one whose
    # runner and workers are new processes on a loaded 2-core host, and end before it starts.)
    assert max(j["placed_at"] for j in jobs) < min(j["ended_at"] for j in jobs)

    follower.send_signal(signal.SIGINT)
    _, err = follower.communicate(timeout=60)
    assert follower.returncode == 130
    # The client's own last line (Ray's raylet may add a warning of its own, which the driver prints as it likes).
    ours = [line for line in err.strip().splitlines() if not line.startswith("\x1b[33m(raylet)")]
    assert ours[-1].startswith(f"detached from job {long_job}; it keeps running"), err
    assert "Traceback" not in err
    assert cluster.job(long_job)["state"] == "RUNNING"

    cancelled = cluster.json("cancel", long_job)
    assert cancelled["state"] == "CANCELLED" and cancelled["epoch"] >= 1
    logs = cluster.run("logs", long_job, "--json").stdout.splitlines()
    assert [json.loads(line)["event"] for line in logs][0] == "epoch"  # its metrics so far are kept
    again = cluster.run("cancel", long_job)
    assert again.returncode == 2 and again.stderr.strip() == f"error: job {long_job} has already ended: CANCELLED"
    assert [cluster.job(i)["state"] for i in ids] == ["SUCCEEDED"] * 3  # untouched by the cancel


LATENCY_SCRIPT = """
import json, sys, time
from dtrain.cluster.client import open_jobs
jobs = open_jobs(sys.argv[1])
ids, worst, calls = sys.argv[2:], 0.0, 0
while True:
    t = time.perf_counter()
    records = [jobs.job(i) for i in ids]
    jobs.jobs()
    worst = max(worst, (time.perf_counter() - t) / (len(ids) + 1))
    calls += len(ids) + 1
    if all(r.done for r in records):
        break
    time.sleep(0.05)
print(json.dumps({"max_s": worst, "calls": calls}))
"""


def test_followed_submit_joins_the_running_cluster_and_exits_with_the_job_state(cluster):
    # No --address: the cluster that was started on this machine is joined.
    ok = cluster.json("submit", "--workers", "2", "--epochs", "1")
    assert ok["state"] == "SUCCEEDED" and ok["runtime"] == "cluster" and ok["test_accuracy"] > 0.9

    diverged = cluster.run("submit", "--workers", "2", "--epochs", "3", "--lr", "50")
    assert diverged.returncode == 1
    assert "diverged" in diverged.stderr and "lower --lr" in diverged.stderr and "Traceback" not in diverged.stderr
    failed = [j for j in cluster.json("list") if j["spec"]["lr"] == 50]
    assert failed and failed[-1]["state"] == "FAILED" and "diverged" in failed[-1]["message"]

    local = cluster.json("submit", "--local", "--workers", "1", "--epochs", "1")
    assert local["runtime"] == "local"


def test_a_request_the_cluster_cannot_hold_is_refused_at_submit(cluster):
    before = len(cluster.json("list"))
    refused = cluster.run("submit", "--workers", "8", "--cpus-per-worker", "1")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "error: --cpus-per-worker: 8 workers x 1 CPU cannot be placed: the cluster has 4 CPUs on 2 nodes (2 + 2)"
    )
    assert len(cluster.json("list")) == before  # a refused job is not recorded


@pytest.mark.parametrize("command", ["status", "logs", "cancel", "pull", "report"])
def test_an_unknown_job_id_is_one_line(cluster, command):
    proc = cluster.run(command, "deadbeef")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: no job 'deadbeef' in {cluster.storage} (`dtrain list` shows the jobs)"
    ]


def test_bad_addresses_fail_fast_in_one_line(cluster):
    for args, env, expected in [
        (["--address", "127.0.0.1:1"], None, "error: --address: cannot reach a Ray cluster at 127.0.0.1:1: Connection refused"),
        (["--address", "nonsense"], None, "error: --address: expected host:port, 'auto' or 'local', got 'nonsense'"),
        (["--address", cluster.address], {**cluster.env, "RAY_AUTH_TOKEN": secrets.token_hex(16)}, "refused this client's authentication token"),
        (["--storage", "/somewhere/else"], None, "this cluster's dtrain registry keeps its jobs in"),
    ]:
        t0 = time.monotonic()
        proc = cluster.run("list", *args, env=env)
        elapsed = time.monotonic() - t0
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(lines) == 1 and expected in lines[0], (args, lines)
        assert elapsed < 10, (args, elapsed)  # not Ray's minute of retries
