"""FedAdam and FedYogi (cluster/algorithms/fedadam.py, fedyogi.py): the server's steps worked
by hand from the paper's update rules, a checkpoint's round trip, and short jobs on real Ray."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dtrain.cluster.algorithms import algorithm_for
from dtrain.cluster.algorithms.fedadam import AdamRule
from dtrain.cluster.algorithms.fedyogi import YogiRule
from dtrain.cluster.parameter_server import ParameterServer
from dtrain.model import read_weights
from dtrain.spec import JobSpec
from dtrain.worker.tasks import Update

SIZES = (4, 3, 2)
ETA, B1, B2, TAU = 0.1, 0.9, 0.99, 1e-3


def by_hand(yogi: bool, deltas: list[float]) -> list[float]:
    """x_t - x_0 after each round whose pseudo-gradient is Δ (the same in every coordinate),
    from Reddi et al. (2021), Algorithm 2, in plain floats: m_{-1} = 0, v_{-1} = τ²."""
    m, v, x, steps = 0.0, TAU * TAU, 0.0, []
    for d in deltas:
        m = B1 * m + (1 - B1) * d
        v = v - (1 - B2) * d * d * math.copysign(1, v - d * d) if yogi else B2 * v + (1 - B2) * d * d
        x += ETA * m / (math.sqrt(v) + TAU)
        steps.append(x)
    return steps


@pytest.mark.parametrize("rule, yogi", [(AdamRule, False), (YogiRule, True)])
def test_three_rounds_step_as_the_paper_says(rule, yogi):
    # Rounds whose clients' mean is 1 above the model, then again, then equal to it (Δ = 1, 1, 0):
    # on the third round Adam's v decays (β2 v) while Yogi's stays (it moves by Δ² = 0 at most).
    server = ParameterServer(SIZES, seed=0, rule=rule(ETA, B1, B2, TAU))
    x0 = server.model().copy()
    for delta, expected in zip([1.0, 1.0, 0.0], by_hand(yogi, [1.0, 1.0, 0.0])):
        start = server.start()[0].copy()
        server.apply(Update(start + np.float32(delta), 10, 1.0, 5, 0, 0), Update(start + np.float32(delta), 30, 1.0, 5, 0, 0))
        np.testing.assert_allclose(server.model() - x0, expected, rtol=2e-6, atol=1e-7)
    assert by_hand(True, [1.0, 1.0, 0.0]) != by_hand(False, [1.0, 1.0, 0.0])  # the two rules do differ here


def test_the_step_follows_the_sign_of_the_clients_change_coordinate_by_coordinate():
    server = ParameterServer(SIZES, seed=0, rule=AdamRule(ETA, B1, B2, TAU))
    x0 = server.model().copy()
    change = np.where(np.arange(x0.size) % 2 == 0, 0.5, -0.002).astype(np.float32)
    server.apply(Update(x0 + change, 10, 1.0, 5, 0, 0))
    step = server.model() - x0
    assert np.array_equal(np.sign(step), np.sign(change))
    # Adam's normalisation: a change 250x smaller moves its coordinate far less than 250x less.
    assert np.abs(step[1]) > np.abs(step[0]) / 50


def test_a_checkpoint_restores_the_moments_and_the_next_step():
    def server() -> ParameterServer:
        return ParameterServer(SIZES, seed=0, rule=YogiRule(ETA, B1, B2, TAU))

    a, b = server(), server()
    for s in (a, b):
        s.apply(Update(s.start()[0].copy() + 1, 10, 1.0, 5, 0, 0))
    b.rule.load({k: v.copy() for k, v in a.rule.arrays().items()})
    for s in (a, b):
        s.apply(Update(s.start()[0].copy() + 0.5, 10, 1.0, 5, 0, 0))
    np.testing.assert_array_equal(a.model(), b.model())
    assert set(a.rule.arrays()) >= {"global_theta", "delta", "start", "m", "v"}


def test_fedadam_and_fedyogi_jobs_on_ray_learn_on_skewed_clients(ray_cluster, small_mnist, tmp_path):
    from dtrain.cluster.runner import run_job

    common = dict(workers=2, clients=10, clients_per_round=4, rounds=6, eval_every=3, lr=0.05, seed=4,
                  split="label-skew", server_lr=0.01)
    weights = {}
    for name in ("fedadam", "fedyogi"):
        spec = JobSpec(algorithm=name, **common)
        assert type(algorithm_for(spec)).name == name
        result = run_job(spec, tmp_path / name, name, dataset=small_mnist)
        assert result.report["spec"]["algorithm"]["name"] == name and [h["round"] for h in result.history] == [3, 6]
        assert result.evaluation.accuracy > 0.5  # label-skewed clients, 6 rounds
        weights[name] = read_weights(tmp_path / name / "model.npz")[0]
    assert not np.array_equal(weights["fedadam"], weights["fedyogi"])
