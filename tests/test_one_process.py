"""benchmarks/one_process.py, speed.py's baseline, trains what a 1-worker job trains (no Ray, a tiny slice)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from dtrain.cluster.algorithms.bmuf import SyncRounds
from dtrain.cluster.combine import BlockMomentum
from dtrain.model.average import weighted_mean
from dtrain.model.evaluate import scale_pixels
from dtrain.model.mlp import he_init
from dtrain.model.sparse import SparseRows
from dtrain.spec import JobSpec
from dtrain.worker.shard import ShardTrainer

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "one_process.py"


def test_one_process_trains_the_one_worker_jobs_weights(mnist):
    spec = importlib.util.spec_from_file_location("one_process", BENCH)
    one_process = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(one_process)
    n, epochs = 600, 2
    images, y = SparseRows.from_dense(mnist.x_train[:n]), mnist.y_train[:n]
    x_test, y_test = scale_pixels(mnist.x_test[:300]), mnist.y_test[:300]
    scores: list[dict] = []
    plain = one_process.train(images, y, x_test, y_test, epochs, on_epoch=scores.append)

    # The job's way: one round an epoch, no momentum (the schedule says so), the worker's
    # shard trainer, the server's update.
    plan = SyncRounds(JobSpec(workers=1, epochs=epochs)).schedule(n)
    assert plan.rounds == [1] * epochs and set(plan.momenta) == {0.0}
    sizes = (784, *one_process.HIDDEN, 10)
    trainer = ShardTrainer(images, y, sizes=sizes, activation="relu", lr=one_process.LR, kernel="numba", seed=0, rank=0)
    server = BlockMomentum(he_init(sizes, np.random.default_rng(0)), 0.0)
    for epoch in range(epochs):
        trained, *_ = trainer.train_block(server.start, epoch, 0, 1)
        server.combine_mean(weighted_mean([trained], [n]))
    # the same weights up to the server's float32 rounding of global + (trained - global)
    np.testing.assert_allclose(plain, server.global_theta, rtol=0, atol=1e-5)
    assert [s["epoch"] for s in scores] == [1, 2] and 0 < scores[-1]["test_accuracy"] <= 1
