"""The tree reduction (cluster/reduce.py): per-node partial sums merge like the flat merge.

First by hand, without Ray; then real jobs: a tree forced on the session's
one-node Ray against the flat merge, and a job on the real two-node cluster
with a tree asked for, one reducer on each node.
"""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from dtrain.cluster.algorithms.bmuf import BlockMomentumRule
from dtrain.cluster.parameter_server import ParameterServer
from dtrain.cluster.reduce import groups_by_node, sum_partials, partial_sum, use_tree
from dtrain.cluster.runner import run_job
from dtrain.model import read_weights
from dtrain.spec import JobSpec
from dtrain.worker.tasks import Update


def random_round(rng: np.random.Generator, start: np.ndarray, k: int, diverge: bool = False) -> list[tuple]:
    """K results near `start`, as workers return them; uneven blocks, so n_k / total are not powers of two."""
    results = []
    for i, n in enumerate(rng.integers(30, 40, k)):
        theta = (start + rng.normal(0, 0.01, start.size) * (rng.random(start.size) < 0.3)).astype(np.float32)
        loss = float("inf") if diverge and i == 2 else float(rng.uniform(0.1, 2.5) * n)
        results.append(Update(theta, int(n), loss, int(rng.integers(0, n)), int(i == 5), 0, rank=i, busy_s=n / 1000))
    return results


@pytest.mark.parametrize("sizes, k, groups", [((784, 16, 10), 12, [4, 4, 4]), ((784, 64, 10), 7, [1, 3, 2, 1])])
def test_partials_merge_to_the_flat_merges_weights_and_identical_totals(sizes, k, groups):
    rng = np.random.default_rng(3)
    flat = ParameterServer(sizes, seed=0, rule=BlockMomentumRule([0.8]))
    tree = ParameterServer(sizes, seed=0, rule=BlockMomentumRule([0.8]))
    for round_ in range(4):
        results = random_round(rng, flat.rule.start(), k, diverge=round_ == 3)
        a, version = flat.apply(*results)
        assert version == round_ + 1
        cuts = np.cumsum([0, *groups])
        partials = [partial_sum(results[lo:hi]) for lo, hi in zip(cuts, cuts[1:])]
        b, _ = tree.apply(*partials[::-1])  # the nodes' partials in any order
        np.testing.assert_allclose(b, a, rtol=0, atol=4 * np.finfo(np.float32).eps * np.abs(a).max())
        # The products n_k * theta_k are exact in float64, so the sums agree to the last bit.
        assert np.array_equal(a, b) and np.array_equal(flat.model(), tree.model())
        if round_ == 1:
            a_totals, b_totals = flat.end_epoch(), tree.end_epoch()
            assert a_totals == b_totals and a_totals["worker_restarts"] == 2 and a_totals["finite"]
            assert a_totals["worker_samples_per_s"] == pytest.approx([1000.0] * k)  # each worker's own n / busy
    # The last round's loss was infinite: both flag it, at the same round.
    a_totals, b_totals = flat.end_epoch(), tree.end_epoch()
    assert a_totals == b_totals
    assert not a_totals["finite"] and a_totals["diverged_at_round"] == 4 and a_totals["train_loss"] is None


def test_a_partial_carries_its_nodes_sums():
    rng = np.random.default_rng(1)
    results = random_round(rng, np.zeros(50, np.float32), 6)
    total, samples, losses, correct, restarted, speeds = partial_sum(results)
    assert total.dtype == np.float64
    np.testing.assert_allclose(total, sum(n * t.astype(np.float64) for t, n, *_ in results), rtol=1e-15)
    assert samples == sum(r[1] for r in results) and restarted == 1
    assert losses == tuple(r[2] for r in results) and correct == sum(r[3] for r in results)
    whole = sum_partials([partial_sum(results[:2]), partial_sum(results[2:])])
    assert np.array_equal(whole[0], total) and whole[1:] == (samples, losses, correct, restarted, speeds)
    assert speeds == tuple((r.rank, r.samples, r.busy_s) for r in results)
    with pytest.raises(ValueError):
        partial_sum([])


def test_the_tree_is_used_for_many_workers_on_two_nodes_or_more_unless_asked_otherwise():
    from dtrain.cluster.algorithms import algorithm_for
    from dtrain.cluster.reduce import Flat

    one, two = ["a", "a", "a"], ["a", "b", "a", "b"]
    many_on_one, many_on_two = ["a"] * 64, ["a", "b"] * 32
    assert not use_tree(JobSpec(), one) and not use_tree(JobSpec(), two)  # few workers: the hop costs more
    assert not use_tree(JobSpec(), many_on_one) and use_tree(JobSpec(), many_on_two)
    assert use_tree(JobSpec(reduce="tree"), one) and not use_tree(JobSpec(reduce="flat"), many_on_two)
    assert isinstance(algorithm_for(JobSpec(algorithm="async")).reduction(many_on_two, None), Flat)  # async pushes per worker
    assert groups_by_node(two) == {"a": [0, 2], "b": [1, 3]}
    with pytest.raises(ValueError, match="reduce"):  # async has no reduction to choose
        JobSpec(algorithm="async", reduce="tree")


class Calls:
    """Stands in for an actor method: records each .remote(*args) and returns a label."""

    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def remote(self, *args):
        self.log.append((self.name, args))
        return f"{self.name}-out"


def test_a_round_goes_to_each_nodes_reducer_and_a_node_with_no_results_is_left_out():
    from types import SimpleNamespace

    from dtrain.cluster.reduce import Flat, Tree

    log: list = []
    reducers = [SimpleNamespace(reduce=Calls(f"reducer-{n}", log)) for n in "ab"]
    server = SimpleNamespace(apply=Calls("apply", log))
    tree = Tree(reducers, [[0, 2], [1, 3]], ["a", "b"])
    assert tree.apply_round(server, {0: "r0", 1: "r1", 2: "r2", 3: "r3"}) == "apply-out"
    assert log == [("reducer-a", ("r0", "r2")), ("reducer-b", ("r1", "r3")), ("apply", ("reducer-a-out", "reducer-b-out"))]
    log.clear()
    tree.apply_round(server, {2: "r2"})  # a federated round that sampled clients of worker 2 only
    assert log == [("reducer-a", ("r2",)), ("apply", ("reducer-a-out",))]
    log.clear()
    Flat().apply_round(server, {0: "r0", 3: "r3"})
    assert log == [("apply", ("r0", "r3"))]


def test_a_tree_on_one_node_trains_the_flat_jobs_weights_even_if_its_reducer_is_killed(ray_cluster, small_mnist, tmp_path):
    """Forced on one node, the tree ends with the flat merge's weights, to the last bit; a reducer
    SIGKILLed mid-job is restarted in its place by Ray and its pending reduce runs again."""
    killed: list[int] = []

    def kill_the_reducer(kind, payload):
        if kind == "started":
            killed.extend(r["pid"] for r in payload["reducers"])
        if kind == "epoch" and payload["epoch"] == 1:
            os.kill(killed[0], signal.SIGKILL)

    def train(reduce: str, on_event=None):
        spec = JobSpec(workers=3, epochs=3, sync_every=300, seed=3, reduce=reduce)
        return run_job(spec, tmp_path / reduce, reduce, on_event=on_event, dataset=small_mnist)

    flat, tree = train("flat"), train("tree", kill_the_reducer)
    assert flat.report["reduce"] == "flat" and flat.report["reducers"] == []
    assert tree.report["reduce"] == "tree"
    [reducer] = tree.report["reducers"]  # one node, one reducer, all three workers
    assert reducer["workers"] == [0, 1, 2] and killed == [reducer["pid"]]
    assert tree.report["recoveries"] == []  # restarted by Ray, no rewind
    assert tree.evaluation.accuracy > 0.85
    assert [h["samples"] for h in tree.history] == [4000] * 3
    assert [h["train_loss"] for h in tree.history] == [h["train_loss"] for h in flat.history]  # identical totals
    a, _ = read_weights(tmp_path / "flat" / "model.npz")
    b, _ = read_weights(tmp_path / "tree" / "model.npz")
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    assert np.array_equal(a, b), "the tree should give the flat merge's weights to the last bit"
    assert tree.evaluation.accuracy == flat.evaluation.accuracy


def test_a_federated_round_skips_the_workers_it_sampled_none_of(ray_cluster, small_mnist, tmp_path):
    def train(reduce: str):
        spec = JobSpec(workers=2, clients=8, clients_per_round=1, rounds=4, eval_every=2, seed=2, reduce=reduce)
        return run_job(spec, tmp_path / reduce, reduce, dataset=small_mnist)

    flat, tree = train("flat"), train("tree")
    assert tree.report["reduce"] == "tree"
    a, _ = read_weights(tmp_path / "flat" / "model.npz")
    b, _ = read_weights(tmp_path / "tree" / "model.npz")
    assert np.array_equal(a, b)


def test_on_two_nodes_a_tree_has_one_reducer_per_node(two_node_cluster):
    cluster = two_node_cluster
    # Four workers of one CPU fill both 2-CPU nodes: two on each.
    job = cluster.json("submit", "--workers", "4", "--epochs", "1", "--reduce", "tree")
    assert job["state"] == "SUCCEEDED" and job["test_accuracy"] > 0.9
    report = json.loads((cluster.storage / "jobs" / job["job_id"] / "report.json").read_text())
    status = cluster.job(job["job_id"])
    assert report["spec"]["algorithm"]["reduce"] == "tree" and report["reduce"] == "tree"
    reducers = report["reducers"]
    assert sorted(r["node"] for r in reducers) == sorted(status["nodes"])  # one per node, as each reducer says
    assert cluster.second_node in status["nodes"]
    assert sorted(w for r in reducers for w in r["workers"]) == [0, 1, 2, 3]
    assert {r["node"]: len(r["workers"]) for r in reducers} == status["nodes"]
