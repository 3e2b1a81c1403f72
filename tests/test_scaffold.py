"""SCAFFOLD (cluster/algorithms/scaffold.py, model/corrected.py): the server's rounds and the
corrected client step worked by hand, a checkpoint's round trip, and short jobs on real Ray."""

from __future__ import annotations

import numpy as np
import pytest

from dtrain.cluster.algorithms import algorithm_for
from dtrain.cluster.algorithms.scaffold import ScaffoldRule
from dtrain.cluster.parameter_server import ParameterServer
from dtrain.errors import UserError
from dtrain.model import read_weights
from dtrain.model.corrected import sgd_corrected
from dtrain.model.kernels import sgd
from dtrain.model.mlp import he_init, layer_sizes, sgd_step, unflatten
from dtrain.model.sgd_setup import SGDSetup
from dtrain.model.sparse import SparseRows
from dtrain.spec import JobSpec
from dtrain.worker.tasks import ClientModels, ScaffoldStart, Update

SIZES = (4, 3, 2)
N, LR, ETA_G = 4, 0.05, 0.5
#: Each round: its clients, and for each (client, its change y_i − x in every weight, n_i, K).
ROUNDS = [
    [0, 2], [(0, 0.4, 10, 10), (2, 0.2, 30, 30)],
    [1, 2], [(1, -0.3, 20, 40), (2, 0.1, 30, 30)],
]


def by_hand() -> list[tuple[float, float, list[float]]]:
    """x − x_0, c and each c_i after each round of ROUNDS, from Karimireddy et al. (2020),
    Algorithm 1, option II, in plain floats (every weight moves alike): Δx weighted by n_i."""
    x, c, ci, after = 0.0, 0.0, [0.0] * N, []
    for _, answers in zip(ROUNDS[::2], ROUNDS[1::2]):
        dx = sum(n * dy for _, dy, n, _ in answers) / sum(n for _, _, n, _ in answers)
        dc = {i: -c + (-dy) / (k * LR) for i, dy, _, k in answers}  # c_i⁺ − c_i = −c + (x − y_i) / (K η_l)
        x += ETA_G * dx
        for i, d in dc.items():
            ci[i] += d
        c += sum(dc.values()) / N  # (|S| / N) Δc
        after.append((x, c, list(ci)))
    return after


def server() -> ParameterServer:
    # the rule draws the clients of the round after each one it applies: the sampler is any round's
    return ParameterServer(SIZES, seed=0, rule=ScaffoldRule(ETA_G, LR, N, lambda t: ROUNDS[2 * (t % 2)]))


def answer(start: ScaffoldStart, rows: list[tuple[int, float, int, int]]) -> Update:
    """One worker's answer: each client's y_i = x + its change."""
    models = np.stack([start.x + np.float32(dy) for _, dy, _, _ in rows])
    samples = sum(n for _, _, n, _ in rows)
    return Update(ClientModels(tuple(r[0] for r in rows), tuple(r[2] for r in rows), tuple(r[3] for r in rows), models),
                  samples, 1.0, 5, 0, 0)


def test_two_rounds_update_x_c_and_each_c_i_as_the_paper_says():
    s = server()
    x0 = s.model().copy()
    for (clients, answers), (x, c, ci) in zip(zip(ROUNDS[::2], ROUNDS[1::2]), by_hand()):
        start = s.start()[0]
        assert start.clients == tuple(clients)
        # each client gets c − c_i, from the state before the round
        np.testing.assert_allclose(start.corrections, (s.rule.c - s.rule.c_clients[clients]), rtol=0, atol=0)
        # the answers of two workers, the later client first: the order must not matter
        s.apply(answer(start, answers[1:]), answer(start, answers[:1]))
        np.testing.assert_allclose(s.model() - x0, x, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s.rule.c, c, rtol=1e-5, atol=1e-7)
        for i in range(N):
            np.testing.assert_allclose(s.rule.c_clients[i], ci[i], rtol=1e-5, atol=1e-7)
    # by hand, round 2's client 2 starts from c − c_2 = −7/30 + 2/15 = −0.1
    assert by_hand()[0][1] - by_hand()[0][2][2] == pytest.approx(-0.1)
    assert s.rule.rounds_done == 2 and s.version == 2


def test_answers_for_other_clients_than_the_rounds_are_refused():
    s = server()
    with pytest.raises(RuntimeError, match="expected \\[0, 2\\]"):
        s.apply(answer(s.start()[0], [(1, 0.1, 10, 10)]))


def test_a_checkpoint_restores_the_control_variates_and_the_round(tmp_path):
    a, b = server(), server()
    a.checkpoints = b.checkpoints = tmp_path
    a.apply(answer(a.start()[0], ROUNDS[1]))
    a.end_epoch()  # writes the checkpoint of period 1
    assert b.rewind(1) == 1 and b.rule.rounds_done == 1
    for s in (a, b):
        s.apply(answer(s.start()[0], ROUNDS[3]))
    np.testing.assert_array_equal(a.model(), b.model())
    np.testing.assert_array_equal(a.rule.c_clients, b.rule.c_clients)
    np.testing.assert_array_equal(a.rule.c, b.rule.c)


# ------------------------------------------------------------------ the client's corrected step

MODEL = layer_sizes(784, (16,), 10)


@pytest.fixture(scope="module")
def data(mnist):
    theta0 = he_init(MODEL, np.random.default_rng(0))
    correction = (np.random.default_rng(1).standard_normal(theta0.size) * 0.5).astype(np.float32)  # c − c_i
    return theta0, correction, SparseRows.from_dense(mnist.x_train[:50]), mnist.y_train[:50], mnist.x_train[:50]


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
def test_one_corrected_step_is_the_sgd_step_minus_lr_times_c_minus_c_i(data, kernel):
    theta0, correction, images, y, x = data
    theta = theta0.copy()
    loss, correct = sgd_corrected(kernel, theta, correction, SGDSetup(MODEL, "relu", images, y, LR), np.array([7]))
    # by hand: y − η_l (g(y) + c − c_i), the gradient at y = theta0
    by_hand = theta0.copy()
    sgd_step(unflatten(by_hand, MODEL), x[7].astype(np.float32) / 255, int(y[7]), np.float32(LR), "relu")
    by_hand -= np.float32(LR) * correction
    np.testing.assert_allclose(theta, by_hand, rtol=1e-5, atol=1e-6)
    plain = theta0.copy()
    assert (loss, correct) == sgd(kernel, plain, SGDSetup(MODEL, "relu", images, y, LR), np.array([7]))  # scored before the step
    assert not np.allclose(theta, plain, atol=1e-3)  # the correction is there


@pytest.mark.parametrize("kernel, batch_size", [("numpy", 1), ("numba", 1), ("numba", 10), ("numpy", 0)])
def test_every_step_is_corrected_alike_and_no_correction_is_plain_sgd(data, kernel, batch_size):
    theta0, correction, images, y, _ = data
    order = np.random.default_rng(2).permutation(30)
    setup = SGDSetup(MODEL, "relu", images, y, LR, batch_size=batch_size)
    theta = theta0.copy()
    sgd_corrected(kernel, theta, correction, setup, order)
    expected, size = theta0.copy(), len(order) if batch_size == 0 else batch_size
    for lo in range(0, len(order), size):
        sgd(kernel, expected, setup, order[lo : lo + size])
        expected -= np.float32(LR) * correction
    np.testing.assert_array_equal(theta, expected)
    a, b = theta0.copy(), theta0.copy()
    assert sgd_corrected(kernel, a, np.zeros_like(correction), setup, order) == sgd(kernel, b, setup, order)
    np.testing.assert_array_equal(a, b)


def test_a_workers_clients_answer_their_own_models_and_steps(data):
    from dtrain.worker.shard import ShardTrainer

    theta0, correction, images, y, _ = data
    trainer = ShardTrainer(images, y, sizes=MODEL, activation="relu", lr=LR, kernel="numba", seed=0, rank=0,
                           clients=[(0, 20), (20, 50)], first_client=4, local_epochs=2)
    zero = ScaffoldStart(theta0, (4, 5), np.zeros((2, theta0.size), np.float32))
    models, samples, *_ = trainer.train_scaffold(zero, 3, [4, 5])
    assert (models.clients, models.sizes, models.steps, samples) == ((4, 5), (20, 30), (40, 60), 100)
    # without corrections each client is FedAvg's: their weighted mean is FedAvg's worker answer
    mean = trainer.train_clients(theta0, 3, [4, 5])[0]
    np.testing.assert_allclose((20 * models.models[0] + 30 * models.models[1]) / 50, mean, atol=1e-6)
    corrected = trainer.train_scaffold(ScaffoldStart(theta0, (4, 5), np.stack([correction, -correction])), 3, [4, 5])[0]
    assert not np.allclose(corrected.models, models.models, atol=1e-3)


def test_with_local_steps_consecutive_rounds_tile_a_clients_passes(data):
    from dtrain.worker.shard import ShardTrainer

    theta0, correction, images, y, _ = data
    trainer = ShardTrainer(images, y, sizes=MODEL, activation="relu", lr=LR, kernel="numba", seed=0, rank=0,
                           clients=[(0, 20), (20, 50)], first_client=4)
    rounds = np.concatenate([trainer.stream(5, r, 12) for r in range(5)])  # 60 samples: two passes over 30
    assert sorted(rounds[:30]) == sorted(rounds[30:]) == list(range(20, 50)) and not np.array_equal(rounds[:30], rounds[30:])
    start = ScaffoldStart(theta0, (4, 5), np.stack([correction, -correction]))
    models, samples, *_ = trainer.train_scaffold(start, 2, [4, 5], local_steps=12)
    assert (models.sizes, models.steps, samples) == ((20, 30), (12, 12), 24)
    expected = theta0.copy()
    sgd_corrected("numba", expected, -correction, trainer.setup, trainer.stream(5, 2, 12))
    np.testing.assert_array_equal(models.models[1], expected)


def test_the_spec_takes_a_server_step_and_refuses_what_does_not_apply():
    from dtrain.cli.submit import build_spec

    spec = JobSpec(algorithm="scaffold", clients=8, rounds=2)
    assert spec.algorithm.server_lr == 1.0 and spec.federated
    for options, field in ([{"block_momentum": 0.5}, "block_momentum"], [{"reduce": "tree"}, "reduce"], [{"server_lr": 0}, "server_lr"],
                           [{"mu": 0.1}, "mu"], [{"local_steps": 10, "local_epochs": 2}, "local_steps"],
                           [{"local_steps": 10, "batch_size": 0}, "local_steps"], [{"local_steps": 0}, "local_steps"]):
        with pytest.raises(UserError) as refused:
            build_spec({"algorithm": "scaffold", "clients": 8, "rounds": 2, **options})
        assert refused.value.field == field and "\n" not in str(refused.value)


# ------------------------------------------------------------------ on Ray


def kill_server_after(period: int):
    """An on_event that kills the job's parameter server once scored period `period` is in."""
    import os
    import signal

    server: list[int] = []

    def on_event(kind, payload):
        if kind == "started":
            server.append(payload["server_pid"])
        if kind == "epoch" and payload["epoch"] == period:
            os.kill(server[0], signal.SIGKILL)

    return on_event


def test_scaffold_jobs_on_ray_learn_on_skewed_clients_whatever_the_workers_and_a_lost_server(ray_cluster, small_mnist, tmp_path):
    from dtrain.cluster.runner import run_job

    common = dict(algorithm="scaffold", clients=8, clients_per_round=4, rounds=4, eval_every=2, lr=0.05, seed=4,
                  split="label-skew")
    weights = {}
    for workers, disturb in ((2, None), (1, kill_server_after(1))):
        spec = JobSpec(workers=workers, **common)
        assert type(algorithm_for(spec)).name == "scaffold"
        result = run_job(spec, tmp_path / str(workers), f"scaffold{workers}", on_event=disturb, dataset=small_mnist)
        assert result.report["spec"]["algorithm"]["name"] == "scaffold" and [h["round"] for h in result.history] == [2, 4]
        assert result.evaluation.accuracy > 0.5  # label-skewed clients, 4 rounds
        assert len(result.report["recoveries"]) == (1 if disturb else 0)
        weights[workers] = read_weights(tmp_path / str(workers) / "model.npz")[0]
    # Every c_i stays on the server and its checkpoints: neither which worker hosts a client nor
    # a server that went back to its checkpoint after round 2 changes the model.
    np.testing.assert_array_equal(weights[1], weights[2])
