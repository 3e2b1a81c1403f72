"""FedProx: the proximal SGD step by hand, on both kernels, and FedProx jobs on real Ray."""

from __future__ import annotations

import numpy as np
import pytest

from dtrain.model import read_weights
from dtrain.model.kernels import sgd
from dtrain.model.mlp import he_init, layer_sizes, sgd_step, unflatten
from dtrain.model.prox import sgd_prox
from dtrain.model.sgd_setup import SGDSetup
from dtrain.model.sparse import SparseRows
from dtrain.spec import JobSpec

SIZES = layer_sizes(784, (16,), 10)


@pytest.fixture(scope="module")
def setup(mnist):
    theta0 = he_init(SIZES, np.random.default_rng(0))
    anchor = he_init(SIZES, np.random.default_rng(1))  # the round's global weights, elsewhere than theta0
    images = SparseRows.from_dense(mnist.x_train[:50])
    return theta0, anchor, images, mnist.y_train[:50], mnist.x_train[:50]


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
def test_one_fedprox_step_is_the_sgd_step_plus_a_pull_toward_the_global_weights(setup, kernel):
    theta0, anchor, images, y, x = setup
    lr, mu = 0.05, 0.3
    theta = theta0.copy()
    loss, correct = sgd_prox(kernel, theta, anchor, mu, SGDSetup(SIZES, "relu", images, y, lr), np.array([7]))
    # by hand: w - lr * (grad loss(w) + mu * (w - w_global)), everything at w = theta0
    by_hand = theta0.copy()
    sgd_step(unflatten(by_hand, SIZES), x[7].astype(np.float32) / 255, int(y[7]), np.float32(lr), "relu")
    by_hand -= np.float32(lr * mu) * (theta0 - anchor)
    np.testing.assert_allclose(theta, by_hand, rtol=1e-5, atol=1e-6)
    assert not np.allclose(theta, by_hand + np.float32(lr * mu) * (theta0 - anchor), atol=1e-4)  # the pull is there
    # and exactly: the kernel's own step, then the proximal part in float32
    plain = theta0.copy()
    plain_loss, plain_correct = sgd(kernel, plain, SGDSetup(SIZES, "relu", images, y, lr), np.array([7]))
    np.testing.assert_array_equal(theta, plain - np.float32(lr * mu) * (theta0 - anchor))
    assert (loss, correct) == (plain_loss, plain_correct)  # scored before the step, as plain SGD


@pytest.mark.parametrize("kernel, batch_size", [("numpy", 1), ("numba", 1), ("numba", 10), ("numpy", 0)])
def test_each_step_pulls_from_the_weights_before_it(setup, kernel, batch_size):
    theta0, anchor, images, y, _ = setup
    lr, mu = 0.05, 0.5
    order = np.random.default_rng(2).permutation(30)
    theta = theta0.copy()
    sgd_prox(kernel, theta, anchor, mu, SGDSetup(SIZES, "relu", images, y, lr, batch_size=batch_size), order)
    expected = theta0.copy()
    step = len(order) if batch_size == 0 else batch_size
    for lo in range(0, len(order), step):
        before = expected.copy()
        sgd(kernel, expected, SGDSetup(SIZES, "relu", images, y, lr, batch_size=batch_size), order[lo : lo + step])
        expected -= np.float32(lr * mu) * (before - anchor)
    np.testing.assert_array_equal(theta, expected)


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
def test_mu_zero_is_plain_sgd_bit_for_bit(setup, kernel):
    theta0, anchor, images, y, _ = setup
    order = np.random.default_rng(3).permutation(50)
    a, b = theta0.copy(), theta0.copy()
    plain = SGDSetup(SIZES, "relu", images, y, 0.05)
    assert sgd_prox(kernel, a, anchor, 0.0, plain, order) == sgd(kernel, b, plain, order)
    np.testing.assert_array_equal(a, b)


def test_the_proximal_term_keeps_a_client_nearer_the_global_weights(setup):
    from dtrain.worker.shard import ShardTrainer

    theta0, _, images, y, _ = setup
    trainer = ShardTrainer(images, y, sizes=SIZES, activation="relu", lr=0.05, kernel="numba", seed=0, rank=0,
                           clients=[(0, 25), (25, 50)], local_epochs=3)
    drift = {mu: np.linalg.norm(trainer.train_clients(theta0, 0, [0, 1], mu)[0] - theta0) for mu in (0.0, 1.0, 5.0)}
    assert drift[5.0] < drift[1.0] < drift[0.0]


def test_a_fedprox_spec_names_its_algorithm():
    assert JobSpec(clients=10, rounds=2, mu=0.01).algorithm.name == "fedprox"
    assert JobSpec(clients=10, rounds=2).algorithm.name == "fedavg"
    with pytest.raises(ValueError, match="clients"):  # fedprox is federated
        JobSpec(mu=0.01)
    with pytest.raises(ValueError, match="mu"):  # fedavg has no proximal term
        JobSpec(algorithm="fedavg", clients=10, rounds=2, mu=0.01)


def test_fedprox_jobs_on_ray_mu_zero_is_fedavg_and_mu_pulls_the_clients(ray_cluster, small_mnist, tmp_path):
    from dtrain.cluster.runner import run_job

    common = dict(workers=2, clients=10, clients_per_round=4, local_epochs=2, rounds=4, eval_every=2,
                  lr=0.05, seed=4, shard="label-skew")
    runs = {}
    for name, mu in (("fedavg", None), ("mu0", 0.0), ("mu", 0.05)):
        result = run_job(JobSpec(mu=mu, **common), tmp_path / name, name, dataset=small_mnist)
        runs[name] = (result, read_weights(tmp_path / name / "model.npz")[0])
    assert runs["mu"][0].report["spec"]["algorithm"]["mu"] == 0.05
    np.testing.assert_array_equal(runs["mu0"][1], runs["fedavg"][1])  # mu = 0 is FedAvg, bit for bit
    assert not np.allclose(runs["mu"][1], runs["fedavg"][1])
    assert [h["round"] for h in runs["mu"][0].history] == [2, 4]
    assert runs["mu"][0].evaluation.accuracy > 0.5  # label-skewed clients, 4 rounds
