"""Jobs that lose part of the cluster under them: a node, the job's runner, the whole cluster.

Each disturbed job is compared with an undisturbed run of the same spec. Every
step of a job is deterministic (a worker's round depends on its arguments
alone; the server rewinds to a checkpoint and redoes the epochs after it), so
the disturbed job must end with the same test accuracy, exactly.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

from dtrain.cluster.jobstore import JobStore

from clusters import TwoNodes, wait_until

#: Four workers on the two nodes' four CPUs, fitted by default to one CPU each, so a lost
#: node leaves no room to restart its workers: the job must place them again, on the
#: node left. A hidden layer of 1024 makes an epoch slow enough (~1 s) to disturb the
#: job in the middle.
EPOCHS = 8
SPEC = ["--workers", "4", "--epochs", str(EPOCHS), "--hidden", "1024", "--seed", "11"]


@pytest.fixture(scope="module")
def baseline(two_node_cluster) -> dict:
    """The undisturbed job: its final record."""
    job = two_node_cluster.json("submit", *SPEC, "--detach")
    return two_node_cluster.follow(job["job_id"])


def no_partial_files(job_dir) -> None:
    leftovers = [p.name for p in job_dir.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert not leftovers, leftovers


def epochs_recorded(job_dir) -> list[int]:
    return [json.loads(line)["epoch"] for line in (job_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_job_adopts_the_warm_workers_and_one_killed_mid_job_changes_nothing(two_node_cluster, baseline):
    """The job after the baseline runs on the baseline's workers, kept warm by the cluster's pool
    (cluster/pool.py); one of them killed mid-job is restarted by Ray, takes its shard back, and
    the job ends with the baseline's weights, bit for bit."""
    cluster = two_node_cluster
    job_id = cluster.json("submit", *SPEC, "--detach")["job_id"]
    running = cluster.wait_for_epoch(job_id, 2)
    assert running["epoch"] < EPOCHS - 1, "too late to disturb the job"
    assert sorted(running["worker_pids"]) == sorted(baseline["worker_pids"])  # adopted, not started anew
    assert running["owner"]["pid"] == baseline["owner"]["pid"]  # so was the baseline's runner, with its data (runners.py)
    os.kill(running["worker_pids"][1], signal.SIGKILL)

    final = cluster.follow(job_id)
    assert final["state"] == "SUCCEEDED", final["message"]
    assert final["worker_restarts"] >= 1
    assert final["test_accuracy"] == baseline["test_accuracy"]
    ours, theirs = (np.load(cluster.storage / "jobs" / j / "model.npz", allow_pickle=False) for j in (job_id, baseline["job_id"]))
    assert all(np.array_equal(ours[k], theirs[k]) for k in ("W1", "b1", "W2", "b2"))

    # Back in the pool, idle: the restarted one too, in a new process.
    def idle_pool() -> list | None:
        workers = cluster.json("status")["pool"]["workers"]
        return workers if all(w["job"] is None for w in workers) else None

    idle = wait_until(idle_pool, 60, "the job's workers to be back in the pool")
    assert set(baseline["worker_pids"]) - {running["worker_pids"][1]} <= {w["pid"] for w in idle}
    assert running["worker_pids"][1] not in {w["pid"] for w in idle}
    # An idle pool holds no CPUs: every CPU of the cluster is free for the next job, or anyone's.
    free = cluster.run_python("print(ray.available_resources().get('CPU', 0) == ray.cluster_resources()['CPU'])")
    assert free.strip().splitlines()[-1] == "True"


def parameter_servers() -> set[int]:
    """The processes on this machine that host a parameter server (Ray titles them by their actor's class)."""
    found = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::ParameterServer"):
                found.add(int(proc.name))
        except OSError:  # gone meanwhile
            continue
    return found


def test_a_lost_parameter_server_is_restarted_and_the_next_job_gets_a_new_one(two_node_cluster, baseline):
    """A runner keeps the parameter server of a job that succeeded for its next job, which
    configures it afresh (job_runner.py). Killed mid-job, the server is restarted by Ray and
    rewound to the last checkpoint: the job ends with the baseline's accuracy. Having used one
    of its restarts, it then serves no other job: the next job gets a new one."""
    cluster = two_node_cluster
    store = JobStore(cluster.storage)
    previous = max((r for r in store.records() if r.state == "SUCCEEDED"), key=lambda r: r.ended_at)
    job_id = cluster.json("submit", *SPEC, "--detach")["job_id"]
    running = cluster.wait_for_epoch(job_id, 2)
    assert running["epoch"] < EPOCHS - 1, "too late to disturb the job"
    assert running["owner"]["pid"] == previous.owner.pid  # the idle runner took it...
    assert running["server_pid"] == previous.server_pid  # ...with the last job's server
    os.kill(running["server_pid"], signal.SIGKILL)

    final = cluster.follow(job_id)
    assert final["state"] == "SUCCEEDED", final["message"]
    assert final["recoveries"] >= 1
    assert final["test_accuracy"] == baseline["test_accuracy"]
    restarted = wait_until(lambda: parameter_servers() - {running["server_pid"]} or None, 60, "the restarted server")

    after = cluster.json("submit", "--workers", "2", "--epochs", "1", "--detach")["job_id"]
    done = cluster.follow(after)
    assert done["state"] == "SUCCEEDED", done["message"]
    assert done["server_pid"] not in restarted | {running["server_pid"]}
    wait_until(lambda: not (restarted & parameter_servers()), 60, "the restarted server to be let go")


def test_a_lost_node_takes_its_workers_which_are_placed_again_on_the_node_left(two_node_cluster, baseline):
    cluster = two_node_cluster
    job_id = cluster.json("submit", *SPEC, "--detach")["job_id"]
    running = cluster.wait_for_epoch(job_id, 2)
    assert running["epoch"] < EPOCHS - 1, "too late to disturb the job"
    assert cluster.second_node in running["nodes"]  # one of its workers is on the node we remove

    removed = cluster.command("remove-node")
    try:
        final = cluster.follow(job_id)
        assert final["state"] == "SUCCEEDED", final["message"]
        assert final["test_accuracy"] == baseline["test_accuracy"]
        assert final["recoveries"] >= 1 and "was lost" in " ".join(json.loads((cluster.storage / "jobs" / job_id / "report.json").read_text())["recoveries"])
        assert list(final["nodes"]) == [n for n in running["nodes"] if n != cluster.second_node]  # all on the node left
        assert epochs_recorded(cluster.storage / "jobs" / job_id) == list(range(1, EPOCHS + 1))
        no_partial_files(cluster.storage / "jobs" / job_id)
        # The delay the loss cost: how much longer the job ran than the undisturbed one.
        delay = (final["ended_at"] - final["started_at"]) - (baseline["ended_at"] - baseline["started_at"])
        print(f"node loss cost the job {delay:.1f} s (it ended {final['ended_at'] - removed['at']:.1f} s after the loss)")
        assert delay < 60
    finally:
        cluster.second_node = cluster.command("add-node")["added"]


def test_a_lost_runner_is_restarted_and_resumes_the_job_from_its_checkpoint(two_node_cluster, baseline):
    cluster = two_node_cluster
    job_id = cluster.json("submit", *SPEC, "--detach")["job_id"]
    running = cluster.wait_for_epoch(job_id, 2)
    assert running["epoch"] < EPOCHS - 1, "too late to disturb the job"
    runner = running["owner"]["pid"]  # the runner records its process in the job's record
    assert runner > 0
    os.kill(runner, signal.SIGKILL)  # this job's runner only, whatever else runs on the machine

    final = cluster.follow(job_id)
    assert final["state"] == "SUCCEEDED", final["message"]
    assert final["recoveries"] >= 1
    assert final["owner"]["pid"] not in (0, runner)  # the restarted runner finished it
    assert final["test_accuracy"] == baseline["test_accuracy"]
    delay = (final["ended_at"] - final["started_at"]) - (baseline["ended_at"] - baseline["started_at"])
    print(f"runner loss cost the job {delay:.1f} s")
    assert epochs_recorded(cluster.storage / "jobs" / job_id) == list(range(1, EPOCHS + 1))
    no_partial_files(cluster.storage / "jobs" / job_id)


def test_a_lost_registry_is_restarted_and_the_running_job_runs_on(two_node_cluster, baseline):
    """Kill the job registry's process mid-job: Ray restarts it under the same name, it takes
    the job up again from the storage directory, the job never reads FAILED and succeeds,
    trained by the one runner it had from the start."""
    cluster = two_node_cluster
    job_id = cluster.json("submit", *SPEC, "--detach")["job_id"]
    running = cluster.wait_for_epoch(job_id, 1)
    runner = running["owner"]["pid"]
    registry = cluster.registry_pid()

    seen: list[dict] = []  # what `dtrain status` says meanwhile, over and over, until the job ends
    def watch_status() -> None:
        while not (seen and seen[-1].get("state") in ("SUCCEEDED", "FAILED", "CANCELLED")):
            proc = cluster.run("status", job_id, "--json", timeout=120)
            seen.append(json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr})
    watcher = threading.Thread(target=watch_status, daemon=True)
    watcher.start()

    os.kill(registry, signal.SIGKILL)
    assert cluster.registry_pid() != registry  # a new registry process answers, under the same name
    assert cluster.job(job_id)["state"] == "RUNNING" and cluster.job(job_id)["epoch"] < EPOCHS, "too late"

    final = cluster.follow(job_id)
    watcher.join(timeout=120)
    assert final["state"] == "SUCCEEDED", final["message"]
    assert final["test_accuracy"] == baseline["test_accuracy"]
    states = [s.get("state") or s["error"] for s in seen]
    assert len(states) >= 2 and set(states) <= {"RUNNING", "SUCCEEDED"}, states
    # One runner trained it: the same process throughout, no recovery (a second runner would
    # have resumed the job from a checkpoint), and each epoch recorded once.
    assert final["owner"]["pid"] == runner
    assert final["recoveries"] == 0
    # It kept the job's runner (idle now), and lets go of the idle runner the lost registry kept, which no record names.
    runners = ("import json; print(json.dumps(sorted(a['name'] for a in ray.util.list_named_actors(all_namespaces=True) "
               "if a['name'].startswith('runner-')), separators=(',', ':')))")
    wait_until(lambda: json.loads(cluster.run_python(runners)) == [running["owner"]["runner"]], 60,
               "the lost registry's idle runner to go")
    assert epochs_recorded(cluster.storage / "jobs" / job_id) == list(range(1, EPOCHS + 1))
    no_partial_files(cluster.storage / "jobs" / job_id)


def test_a_job_interrupted_by_a_cluster_restart_is_resumed(tmp_path_factory, baseline):
    """Stop the whole cluster mid-job; on a new cluster with the same storage the job reads
    FAILED (interrupted), `dtrain resume` continues it, and it ends as the undisturbed run."""
    storage = tmp_path_factory.mktemp("restart-storage")
    first = TwoNodes(storage)
    try:
        job_id = first.json("submit", *SPEC, "--detach")["job_id"]
        assert first.wait_for_epoch(job_id, 2)["epoch"] < EPOCHS - 1, "too late to disturb the job"
    finally:
        first.stop()

    second = TwoNodes(storage)
    try:
        interrupted = second.job(job_id)
        assert interrupted["state"] == "FAILED" and "interrupted" in interrupted["message"]
        resumed = second.json("resume", job_id)
        assert resumed["state"] == "SUCCEEDED" and resumed["epochs"] == EPOCHS
        assert resumed["test_accuracy"] == baseline["test_accuracy"]
        final = second.job(job_id)
        assert final["recoveries"] >= 1
        assert epochs_recorded(storage / "jobs" / job_id) == list(range(1, EPOCHS + 1))
        no_partial_files(storage / "jobs" / job_id)
        again = second.run("resume", job_id)
        assert again.returncode == 2
        assert again.stderr.strip() == f"error: job {job_id} has already SUCCEEDED; there is nothing to resume"
    finally:
        second.stop()


def test_divergence_ends_the_job_failed_with_the_reason_and_no_model(two_node_cluster):
    cluster = two_node_cluster
    proc = cluster.run("submit", "--workers", "2", "--epochs", "3", "--lr", "50", "--json")
    assert proc.returncode == 1
    payload = json.loads(proc.stdout)
    assert payload["state"] == "FAILED"
    assert payload["error"].startswith("diverged at epoch 1") and payload["error"].endswith("lower --lr")
    job_dir = cluster.storage / "jobs" / payload["job_id"]
    assert not (job_dir / "model.npz").exists() and not (job_dir / "report.json").exists()
    assert not list((job_dir / "checkpoints").glob("*.npz"))  # a diverged model is nothing to resume from
    no_partial_files(job_dir)
