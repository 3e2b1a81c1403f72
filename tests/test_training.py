"""Distributed training on real Ray actors and real MNIST."""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np
import pytest

from dtrain.cluster.runner import JobFailed, run_job
from dtrain.data.partition import even_bounds as shard_bounds
from dtrain.errors import UserError
from dtrain.model import load_model, read_weights
from dtrain.spec import JobSpec


def test_shards_cover_the_training_set_once():
    for n, k in [(60000, 8), (4000, 3), (10, 10), (7, 16)]:
        bounds = shard_bounds(n, k)
        assert len(bounds) == k
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        sizes = [hi - lo for lo, hi in bounds]
        assert max(sizes) - min(sizes) <= 1


def test_small_distributed_run_learns_and_writes_its_run_directory(ray_cluster, small_mnist, tmp_path):
    spec = JobSpec(workers=3, epochs=3, sync_every=500, seed=1)
    events = []
    result = run_job(spec, tmp_path / "run", "t1", on_event=lambda k, p: events.append(k), dataset=small_mnist)

    assert result.state == "SUCCEEDED"
    assert result.evaluation.accuracy > 0.85  # chance is 0.10
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    # every sample trained exactly once per epoch, spread over the workers
    stats = result.report["workers"]
    assert sum(w["samples"] for w in stats) == 3 * 4000
    assert sorted(w["shard"] for w in stats) == [1333, 1333, 1334]
    assert [e for e in events if e != "pending"][:3] == ["connected", "placed", "started"]
    assert events.count("epoch") == 3

    run = tmp_path / "run"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3]
    assert {"epoch", "test_loss", "test_accuracy", "samples_per_s", "wall_time_s"} <= set(lines[0])
    report = json.loads((run / "report.json").read_text())
    assert report["spec"] == spec.model_dump(mode="json")
    assert np.asarray(report["test"]["confusion"]).sum() == 10000
    assert report["test"]["accuracy"] == pytest.approx(result.evaluation.accuracy)
    model = load_model(run / "model.npz")
    assert model.layer_sizes == (784, 64, 10)
    assert (model.predict(small_mnist.x_test) == small_mnist.y_test).mean() == pytest.approx(
        result.evaluation.accuracy
    )
    assert not list(run.glob(".*tmp"))  # atomic writes leave no partial files


def test_same_seed_same_weights_other_seed_other_weights(ray_cluster, small_mnist, tmp_path):
    def train(seed: int, name: str) -> np.ndarray:
        spec = JobSpec(workers=2, epochs=2, sync_every=400, seed=seed)
        run_job(spec, tmp_path / name, name, dataset=small_mnist)
        return read_weights(tmp_path / name / "model.npz")[0]

    first, again, other = train(7, "a"), train(7, "b"), train(8, "c")
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_full_mnist_four_workers_reach_97_percent_in_five_epochs(ray_cluster, mnist, tmp_path):
    spec = JobSpec(workers=4, epochs=5)
    result = run_job(spec, tmp_path / "run", "full", dataset=mnist)
    assert result.evaluation.accuracy >= 0.97


def test_until_accuracy_stops_at_the_first_epoch_that_reaches_it(ray_cluster, small_mnist, tmp_path):
    spec = JobSpec(workers=2, epochs=20, until_accuracy=0.80, sync_every=500)
    result = run_job(spec, tmp_path / "run", "u", dataset=small_mnist)
    accuracies = [h["test_accuracy"] for h in result.history]
    assert len(accuracies) < 20
    assert accuracies[-1] >= 0.80 and all(a < 0.80 for a in accuracies[:-1])
    assert result.report["until_accuracy"]["reached"] is True
    assert result.report["until_accuracy"]["epoch"] == len(accuracies)
    # The workers had started the next epoch before the target was seen: the report counts the epochs run only.
    for worker in result.report["workers"]:
        assert [e["epoch"] for e in worker["by_epoch"]] == list(range(1, len(accuracies) + 1))
        assert worker["samples"] == len(accuracies) * worker["shard"]


def test_divergence_fails_the_job_instead_of_saving_garbage(ray_cluster, small_mnist, tmp_path):
    spec = JobSpec(workers=2, epochs=3, lr=50.0, sync_every=500)
    with pytest.raises(JobFailed, match="diverged at epoch 1.*lower --lr"):
        run_job(spec, tmp_path / "run", "d", dataset=small_mnist)
    assert not (tmp_path / "run" / "model.npz").exists()


def test_more_workers_than_samples_is_refused(small_mnist, tmp_path):
    spec = JobSpec(workers=5000, epochs=1)
    with pytest.raises(UserError, match="^workers: 5000 workers for 4000 training samples"):
        run_job(spec, tmp_path / "run", "w", dataset=small_mnist)


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
def test_both_kernels_train_through_ray(ray_cluster, small_mnist, tmp_path, kernel):
    spec = JobSpec(workers=2, epochs=1, kernel=kernel, sync_every=1000)
    result = run_job(spec, tmp_path / kernel, kernel, dataset=small_mnist)
    assert result.report["kernel"] == kernel
    assert result.evaluation.accuracy > 0.8


def test_a_killed_worker_takes_its_shard_back_and_the_job_ends_as_if_nothing_happened(ray_cluster, small_mnist, tmp_path):
    """SIGKILL a worker process mid-job: Ray restarts it with its shards and redoes its round.

    train_block depends on its arguments alone, so the final weights are exactly
    those of an undisturbed run: no sample lost or counted twice.
    """
    spec = JobSpec(workers=3, epochs=4, sync_every=300, seed=5)
    undisturbed = run_job(spec, tmp_path / "a", "a", dataset=small_mnist)

    pids: list[int] = []
    killed: list[int] = []

    def kill_a_worker(kind, payload):
        if kind == "started":
            pids.extend(payload["pids"])
        if kind == "epoch" and payload["epoch"] == 1:
            os.kill(pids[1], signal.SIGKILL)
            killed.append(pids[1])

    disturbed = run_job(spec, tmp_path / "b", "b", on_event=kill_a_worker, dataset=small_mnist)
    assert killed and disturbed.state == "SUCCEEDED"
    assert disturbed.report["worker_restarts"] == 1
    restarted = [w for w in disturbed.report["workers"] if w["restarted"]]
    hosted = [rank for rank, pid in enumerate(pids) if pid == killed[0]]  # workers that share the cores share a process
    assert 1 in hosted and [w["rank"] for w in restarted] == hosted
    assert [h["samples"] for h in disturbed.history] == [4000] * 4  # every sample once per epoch
    assert not [f for f in (tmp_path / "b").rglob("*") if f.name.startswith(".")]  # no partial files
    a, _ = read_weights(tmp_path / "a" / "model.npz")
    b, _ = read_weights(tmp_path / "b" / "model.npz")
    np.testing.assert_array_equal(a, b)
    assert disturbed.evaluation.accuracy == undisturbed.evaluation.accuracy


def test_a_killed_parameter_server_is_restarted_and_rewound_to_its_last_checkpoint(ray_cluster, small_mnist, tmp_path):
    """SIGKILL the parameter server mid-job: Ray restarts it, the runner rewinds it to the
    checkpoint of the last scored epoch and redoes the epochs after it, exactly."""
    spec = JobSpec(workers=2, epochs=5, sync_every=250, seed=6)
    undisturbed = run_job(spec, tmp_path / "a", "a", dataset=small_mnist)

    server: list[int] = []

    def kill_the_server(kind, payload):
        if kind == "started":
            server.append(payload["server_pid"])
        if kind == "epoch" and payload["epoch"] == 2:
            os.kill(server[0], signal.SIGKILL)

    disturbed = run_job(spec, tmp_path / "b", "b", on_event=kill_the_server, dataset=small_mnist)
    assert disturbed.state == "SUCCEEDED"
    assert len(disturbed.report["recoveries"]) == 1
    assert [h["epoch"] for h in disturbed.history] == [1, 2, 3, 4, 5]
    lines = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3, 4, 5]  # no epoch recorded twice
    a, _ = read_weights(tmp_path / "a" / "model.npz")
    b, _ = read_weights(tmp_path / "b" / "model.npz")
    np.testing.assert_array_equal(a, b)
    assert disturbed.evaluation.accuracy == undisturbed.evaluation.accuracy
    # Each worker's own figures count every epoch once, as in the undisturbed job: not the
    # blocks it trained before the rewind as well as the same blocks again after it.
    for calm, worker in zip(undisturbed.report["workers"], disturbed.report["workers"]):
        assert [e["epoch"] for e in worker["by_epoch"]] == [1, 2, 3, 4, 5]
        assert [e["samples"] for e in worker["by_epoch"]] == [e["samples"] for e in calm["by_epoch"]]
        assert worker["samples"] == calm["samples"] == 5 * worker["shard"]
    checkpoints = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert checkpoints == ["epoch-00003.npz", "epoch-00004.npz", "epoch-00005.npz"]  # the last three, no temp files
    assert not [f for f in (tmp_path / "b").rglob("*") if f.name.startswith(".")]  # no partial files


def test_a_run_directory_with_checkpoints_resumes_where_it_stopped(ray_cluster, small_mnist, tmp_path):
    """The runner resumes from the run directory's checkpoints (as after a lost runner or `dtrain resume`)."""
    spec = JobSpec(workers=2, epochs=4, sync_every=250, seed=7)
    whole = run_job(spec, tmp_path / "whole", "w", dataset=small_mnist)

    def stop_after_two(kind, payload):
        if kind == "epoch" and payload["epoch"] == 2:
            raise KeyboardInterrupt  # the driver dies mid-job

    with pytest.raises(KeyboardInterrupt):
        run_job(spec, tmp_path / "r", "r", on_event=stop_after_two, dataset=small_mnist)
    assert not (tmp_path / "r" / "model.npz").exists()
    # what a writer killed between writing and renaming leaves (storage.write_atomic's temporary file)
    (tmp_path / "r" / ".metrics.jsonl.k3j9x.tmp").write_text('{"epoch": 3, "test_acc')
    resumed = run_job(spec, tmp_path / "r", "r", dataset=small_mnist)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert not list((tmp_path / "r").rglob("*.tmp"))
    a, _ = read_weights(tmp_path / "whole" / "model.npz")
    b, _ = read_weights(tmp_path / "r" / "model.npz")
    np.testing.assert_array_equal(a, b)
    assert resumed.evaluation.accuracy == whole.evaluation.accuracy


def test_worker_processes_import_no_pydantic():
    """Workers get plain settings, so the 8 worker processes of a job skip pydantic's import;
    nor does a period's rule that a worker process is handed (cluster/hosted.py) bring it in."""
    import subprocess
    import sys

    check = (
        "import sys, dtrain.worker.actor, dtrain.cluster.hosted, dtrain.cluster.algorithms; "
        "print(sorted(m for m in ('pydantic', 'dtrain.spec') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.mark.parametrize(
    "settings",
    [
        dict(epochs=2),
        # Federated rules keep each worker's answer (SCAFFOLD's are not even arrays): no sums in the process.
        dict(algorithm="scaffold", clients=4, rounds=4, local_steps=50, batch_size=1),
        dict(algorithm="fedadam", clients=8, clients_per_round=4, rounds=3),
    ],
    ids=["sync", "scaffold", "fedadam"],
)
def test_workers_that_share_the_cores_share_processes_and_train_the_same_bits(ray_cluster, small_mnist, tmp_path, settings):
    """In local mode workers that share the cores share a process (cluster/workers.py:
    OwnWorkers(pack=True)), which trains them on a thread per CPU (Worker.train_many); each call
    carries its worker's assignment and each worker's result stays apart, so the job trains
    exactly what one process per worker does."""
    from dtrain.cluster.placement import node_cpus
    from dtrain.cluster.workers import OwnWorkers, hosts

    spec = JobSpec(workers=4, seed=3, **settings)
    cpus = sum(node_cpus())
    pids: dict[str, list[int]] = {}
    results = {}
    for name, pack in (("packed", True), ("apart", False)):
        def started(kind, payload, name=name):
            if kind == "started":
                pids[name] = payload["pids"]
        results[name] = run_job(spec, tmp_path / name, name, on_event=started, dataset=small_mnist, crew=OwnWorkers(pack=pack))

    assert len(set(pids["apart"])) == 4
    assert len(set(pids["packed"])) == len(hosts(4, min(1.0, cpus / 4))) < 4
    a, _ = read_weights(tmp_path / "packed" / "model.npz")
    b, _ = read_weights(tmp_path / "apart" / "model.npz")
    np.testing.assert_array_equal(a, b)
    assert [w["samples"] for w in results["packed"].report["workers"]] == [w["samples"] for w in results["apart"].report["workers"]]


def test_workers_that_share_the_cores_share_a_process_per_four_cpus_with_a_thread_per_cpu():
    from dtrain.cluster.rounds import threads
    from dtrain.cluster.workers import hosts

    assert hosts(8, 0.25) == [[0, 1, 2, 3, 4, 5, 6, 7]] and threads(8, 0.25) == 2
    assert hosts(3, 0.6666) == [[0, 1, 2]] and threads(3, 0.6666) == 2
    assert hosts(4, 1.0) == [[0], [1], [2], [3]] and threads(1, 1.0) == 1
    assert hosts(1, 0.5) == [[0]] and threads(1, 0.5) == 1
    # 64 workers on 32 CPUs: 8 processes of 4 threads, ranks dealt round-robin
    many = hosts(64, 0.5)
    assert len(many) == 8 and many[0] == list(range(0, 64, 8)) and {threads(len(r), 0.5) for r in many} == {4}


def test_sixteen_workers_keep_one_workers_accuracy_per_epoch_with_rounds_in_units_of_k(ray_cluster, small_mnist, tmp_path):
    """The default sync schedule counts rounds in units of K (spec.py, docs/algorithms.md): 4K rounds in
    epoch 1. On 4,000 samples 16 workers then end epochs 1 and 2 within a point of one worker, where the
    schedule of 2000-sample rounds at any K (2 rounds an epoch here) fell 5-10 points behind."""
    def accuracy(name: str, **settings) -> list[float]:
        result = run_job(JobSpec(epochs=2, seed=0, **settings), tmp_path / name, name, dataset=small_mnist)
        return [h["test_accuracy"] for h in result.history]

    one = accuracy("one", workers=1)
    sixteen = accuracy("sixteen", workers=16)
    before = accuracy("before", workers=16, sync_every=2000 // 16, late_rounds=1, late_momentum=0.5)
    assert all(s > o - 0.01 for s, o in zip(sixteen, one)), (sixteen, one)
    assert all(s > b + 0.03 for s, b in zip(sixteen, before)), (sixteen, before)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a niceness per thread is Linux's")
def test_epochs_are_scored_at_a_lower_priority_than_training_and_so_are_the_threads_scoring_starts():
    import threading

    from dtrain.cluster import scoring

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def here_and_in_a_thread_started_here() -> tuple[int, int]:
        seen = []
        started = threading.Thread(target=lambda: seen.append(niceness()))
        started.start()
        started.join()
        return niceness(), seen[0]

    before = niceness()
    expected = max(before, scoring.SCORING_NICENESS)  # already nicer than that: no privilege to go back
    assert scoring._scoring_thread.submit(here_and_in_a_thread_started_here).result() == (expected, expected)
    assert niceness() == before  # the caller's own priority is untouched
