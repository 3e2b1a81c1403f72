"""Shard layouts, mini-batch SGD, federated averaging and the asynchronous mode, on real MNIST and real Ray."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from dtrain.cli.main import app
from dtrain.cluster.layout import Layout
from dtrain.cluster.runner import run_job
from dtrain.data.partition import partition
from dtrain.model.kernels import sgd
from dtrain.model.mlp import backprop, he_init, layer_sizes, unflatten
from dtrain.model.sgd_setup import SGDSetup
from dtrain.model.sparse import SparseRows
from dtrain.spec import JobSpec
from dtrain.worker.shard import ShardTrainer


# ------------------------------------------------------------------ layouts


def test_label_skew_gives_each_worker_one_or_two_classes_and_keeps_every_sample(mnist):
    y = mnist.y_train
    order, bounds = partition(y, 8, "label-skew", seed=3)
    assert sorted(order.tolist()) == list(range(len(y)))  # a permutation: every sample once
    assert bounds[0][0] == 0 and bounds[-1][1] == len(y)
    shares = []
    for lo, hi in bounds:
        counts = np.bincount(y[order[lo:hi]], minlength=10)
        assert (counts > 0).sum() <= 4  # two label-sorted pieces, each across at most one class boundary
        shares.append(np.sort(counts)[-2:].sum() / counts.sum())
    assert np.mean(shares) > 0.85  # mostly one or two classes
    iid_order, iid_bounds = partition(y, 8, "iid")
    assert iid_order is None  # the data stays where it is
    for lo, hi in iid_bounds:
        assert (np.bincount(y[lo:hi], minlength=10) > 0.07 * (hi - lo)).all()  # every class, about a tenth


def test_a_federated_layout_gives_each_worker_whole_clients(mnist):
    spec = JobSpec(workers=3, clients=10, rounds=1)
    layout = Layout.for_job(spec, mnist.y_train)
    assert [len(c) for c in layout.clients] == [3, 4, 3]
    assert layout.first_client == [0] + np.cumsum([len(c) for c in layout.clients])[:-1].tolist()
    for (w_lo, w_hi), clients in zip(layout.workers, layout.clients):
        assert clients[0][0] == 0 and clients[-1][1] == w_hi - w_lo
        assert {hi - lo for lo, hi in clients} == {6000}
    assert [layout.owner(c) for c in range(10)] == [w for w, c in enumerate(layout.clients) for _ in c]


# ------------------------------------------------------------------ mini-batch SGD


def test_minibatch_steps_follow_the_batch_mean_gradient(mnist):
    sizes = layer_sizes(784, (16,), 10)
    theta0 = he_init(sizes, np.random.default_rng(0))
    images = SparseRows.from_dense(mnist.x_train[:40])
    y, order = mnist.y_train[:40], np.random.default_rng(1).permutation(40)

    theta = theta0.copy()
    sgd("numpy", theta, SGDSetup(sizes, "relu", images, y, 0.1, batch_size=10), order)
    expected = theta0.copy()
    params = unflatten(expected, sizes)
    for lo in range(0, 40, 10):
        rows = order[lo : lo + 10]
        _, grads = backprop(params, mnist.x_train[rows].astype(np.float32) / 255, y[rows].astype(np.int64), "relu")
        for (W, b), (dW, db) in zip(params, grads):
            W -= np.float32(0.1) * dW
            b -= np.float32(0.1) * db
    np.testing.assert_allclose(theta, expected, rtol=1e-5, atol=1e-6)

    full = theta0.copy()  # batch size 0: one step on all of them (FedSGD)
    sgd("numpy", full, SGDSetup(sizes, "relu", images, y, 0.1, batch_size=0), order)
    one = theta0.copy()
    params = unflatten(one, sizes)
    _, grads = backprop(params, mnist.x_train[:40].astype(np.float32) / 255, y.astype(np.int64), "relu")
    for (W, b), (dW, db) in zip(params, grads):
        W -= np.float32(0.1) * dW
        b -= np.float32(0.1) * db
    np.testing.assert_allclose(full, one, rtol=1e-5, atol=1e-6)


def test_a_clients_update_does_not_depend_on_the_worker_that_hosts_it(mnist):
    sizes = layer_sizes(784, (16,), 10)
    start = he_init(sizes, np.random.default_rng(0))
    images, y = SparseRows.from_dense(mnist.x_train[:600]), mnist.y_train[:600]
    common = dict(sizes=sizes, activation="relu", lr=0.05, kernel="numpy", seed=7, batch_size=10, local_epochs=2)
    # six clients of 100: hosted by one worker, or the last three by another
    alone = ShardTrainer(images, y, rank=0, clients=[(i * 100, i * 100 + 100) for i in range(6)], **common)
    second = ShardTrainer(images.rows(300, 600), y[300:600], rank=1, first_client=3,
                          clients=[(i * 100, i * 100 + 100) for i in range(3)], **common)
    theta_a, n_a, *_ = alone.train_clients(start, round_index=4, clients=[4])
    theta_b, n_b, *_ = second.train_clients(start, round_index=4, clients=[4])
    assert n_a == n_b == 200  # two local epochs of 100 samples
    np.testing.assert_array_equal(theta_a, theta_b)
    # several clients: the mean of their updates weighted by their data sizes
    mean, n, *_ = alone.train_clients(start, round_index=4, clients=[1, 4])
    one, _, *_ = alone.train_clients(start, round_index=4, clients=[1])
    np.testing.assert_allclose(mean, (one + theta_a) / 2, rtol=1e-5, atol=1e-6)
    assert n == 400


# ------------------------------------------------------------------ federated jobs on Ray


def test_federated_averaging_learns_and_the_model_does_not_depend_on_the_worker_count(ray_cluster, small_mnist, tmp_path):
    common = dict(clients=20, clients_per_round=5, batch_size=10, rounds=6, eval_every=2, lr=0.05, seed=2)
    one = run_job(JobSpec(workers=1, **common), tmp_path / "one", "f1", dataset=small_mnist)
    two = run_job(JobSpec(workers=2, **common), tmp_path / "two", "f2", dataset=small_mnist)
    assert [h["round"] for h in one.history] == [2, 4, 6]
    assert one.evaluation.accuracy > 0.8
    # each round: 5 clients of 200 samples, one pass each
    assert [h["samples"] for h in one.history] == [2000, 2000, 2000]
    # the same clients train the same way wherever they are hosted; only the order of the
    # float32 sums that average them differs
    theta_one, theta_two = one.report, two.report
    assert theta_one["rounds_run"] == theta_two["rounds_run"] == 6
    from dtrain.model import read_weights

    w1, _ = read_weights(tmp_path / "one" / "model.npz")
    w2, _ = read_weights(tmp_path / "two" / "model.npz")
    np.testing.assert_allclose(w1, w2, rtol=1e-4, atol=1e-5)


def test_label_skew_costs_accuracy_against_iid(ray_cluster, small_mnist, tmp_path):
    common = dict(workers=4, epochs=2, seed=0, combine="average")
    iid = run_job(JobSpec(**common), tmp_path / "iid", "s1", dataset=small_mnist)
    skew = run_job(JobSpec(shard="label-skew", **common), tmp_path / "skew", "s2", dataset=small_mnist)
    assert skew.evaluation.accuracy < iid.evaluation.accuracy - 0.02
    # on its own one-or-two-class shard, a skewed worker's training loss is far below the iid workers'
    def own_loss(result):
        return np.median([w["by_epoch"][-1]["train_loss"] for w in result.report["workers"]])

    assert own_loss(skew) < own_loss(iid)
    assert skew.evaluation.accuracy > 0.3  # it still learns something of every class it averages over


# ------------------------------------------------------------------ asynchronous mode


def test_async_mode_learns_with_stale_updates_scaled(ray_cluster, small_mnist, tmp_path):
    result = run_job(JobSpec(workers=2, epochs=3, mode="async", seed=0), tmp_path / "a", "a1", dataset=small_mnist)
    assert result.evaluation.accuracy > 0.85
    for h in result.history:
        assert h["dropped_updates"] == 0
        assert 0.5 <= h["mean_staleness"] <= 1.5  # two workers taking turns: each push is one update old
    assert sum(w["samples"] for w in result.report["workers"]) >= 3 * 4000


def test_async_drops_updates_staler_than_the_bound(ray_cluster, small_mnist, tmp_path):
    result = run_job(
        JobSpec(workers=2, epochs=2, mode="async", max_staleness=0, sync_every=100, seed=0),
        tmp_path / "a", "a2", dataset=small_mnist,
    )
    dropped = sum(h["dropped_updates"] for h in result.history)
    assert dropped > 0
    assert all(h["mean_staleness"] == 0 for h in result.history)


def test_async_does_not_wait_for_a_straggler_and_sync_does(ray_cluster, small_mnist, tmp_path):
    common = dict(workers=2, epochs=2, sync_every=1000, straggler_delay=0.5, seed=0)
    sync = run_job(JobSpec(**common), tmp_path / "s", "st1", dataset=small_mnist)
    asyn = run_job(JobSpec(mode="async", **common), tmp_path / "a", "st2", dataset=small_mnist)
    # sync: every round waits 0.5 s for worker 0 (2 + 1 rounds)
    assert sync.history[-1]["train_time_s"] >= 3 * 0.5
    slow, fast = sorted(asyn.report["workers"], key=lambda w: w["rank"])
    assert fast["samples"] >= 3 * slow["samples"]  # the others went on without it
    assert asyn.history[-1]["train_time_s"] < sync.history[-1]["train_time_s"] / 2


# ------------------------------------------------------------------ the CLI refuses what does not fit


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rounds", "3"], "--rounds: only for --algorithm fedavg, fedprox, fedadam, fedyogi or scaffold, not sync"),
        (["--clients", "10"], "--rounds: required with --algorithm fedavg"),
        (["--clients", "2", "--rounds", "1"], "--clients: 2 clients for 8 workers"),
        (["--clients", "10", "--rounds", "1", "--clients-per-round", "11"], "--clients-per-round: 11 is more than the 10 clients"),
        (["--max-staleness", "2"], "--max-staleness: only for --algorithm async, not sync"),
        (["--mu", "0.01"], "--clients: required with --algorithm fedprox"),
        (["--algorithm", "fedavg", "--clients", "10", "--rounds", "2", "--mu", "0.01"], "--mu: only for --algorithm fedprox, not fedavg"),
        (["--clients", "10", "--rounds", "2", "--mu", "-1"], "--mu:"),
        (["--algorithm", "later"], "--algorithm: expected one of sync, async, fedavg, fedprox"),
        (["--mode", "later"], "--algorithm:"),
        (["--shard", "by-colour"], "--split:"),
        (["--batch-size", "-1"], "--batch-size:"),
        (["--clients", "10", "--rounds", "2", "--epochs", "5"], "--epochs: only for --algorithm sync or async, not fedavg"),
        (["--clients", "10", "--rounds", "2", "--sync-every", "5"], "--sync-every: only for --algorithm sync or async, not fedavg"),
        (["--combine", "average", "--block-momentum", "0.9"], "--block-momentum: only with --combine bmuf"),
        (["--algorithm", "async", "--block-momentum", "0.5"], "--block-momentum: only for --algorithm sync, fedavg or fedprox, not async"),
        (["--algorithm", "sync", "--clients", "10"], "--clients: only for --algorithm fedavg, fedprox, fedadam, fedyogi or scaffold, not sync"),
        (["--algorithm", "async", "--reduce", "tree"], "--reduce: only for --algorithm sync, fedavg, fedprox, fedadam, fedyogi or scaffold, not async"),
    ],
)
def test_submit_refuses_options_that_do_not_fit_together(args, message, tmp_path):
    result = CliRunner().invoke(app, ["submit", "--local", "--storage", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------ recovery in the new modes


def _kill_server_after(epoch: int):
    import os
    import signal

    server: list[int] = []

    def on_event(kind, payload):
        if kind == "started":
            server.append(payload["server_pid"])
        if kind == "epoch" and payload["epoch"] == epoch:
            os.kill(server[0], signal.SIGKILL)

    return on_event


def test_a_federated_job_that_loses_its_server_ends_exactly_as_an_undisturbed_one(ray_cluster, small_mnist, tmp_path):
    from dtrain.model import read_weights

    spec = JobSpec(workers=2, clients=10, clients_per_round=4, batch_size=10, rounds=8, eval_every=2, lr=0.05, seed=3)
    undisturbed = run_job(spec, tmp_path / "a", "fa", dataset=small_mnist)
    disturbed = run_job(spec, tmp_path / "b", "fb", on_event=_kill_server_after(2), dataset=small_mnist)
    assert len(disturbed.report["recoveries"]) == 1
    assert [h["round"] for h in disturbed.history] == [2, 4, 6, 8]
    a, _ = read_weights(tmp_path / "a" / "model.npz")
    b, _ = read_weights(tmp_path / "b" / "model.npz")
    np.testing.assert_array_equal(a, b)  # the same clients, the same rounds: the same model
    # and each worker's own figures count every scoring period once, as undisturbed
    for calm, worker in zip(undisturbed.report["workers"], disturbed.report["workers"]):
        assert worker["by_epoch"] == [{**e, "samples_per_s": w["samples_per_s"]} for e, w in zip(calm["by_epoch"], worker["by_epoch"])]


def test_an_async_job_that_loses_its_server_goes_back_to_its_checkpoint_and_finishes(ray_cluster, small_mnist, tmp_path):
    spec = JobSpec(workers=2, epochs=4, mode="async", sync_every=250, seed=4)
    result = run_job(spec, tmp_path / "a", "aa", on_event=_kill_server_after(2), dataset=small_mnist)
    assert result.state == "SUCCEEDED"
    assert len(result.report["recoveries"]) == 1
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert result.evaluation.accuracy > 0.85


def test_a_jobs_kind_and_progress_read_as_its_mode():
    from dtrain.reports.words import job_kind

    assert job_kind(JobSpec(), short=True) == "sync" and JobSpec().period_label(3) == "epoch 3/32"
    assert job_kind(JobSpec(mode="async", shard="label-skew"), short=True) == "async+skew"
    federated = JobSpec(clients=100, rounds=87, eval_every=5, batch_size=10)
    assert job_kind(federated, short=True) == "fedavg" and federated.period_label(18) == "round 87/87"
    assert job_kind(JobSpec(clients=100, rounds=10, batch_size=0), short=True) == "fedsgd"
