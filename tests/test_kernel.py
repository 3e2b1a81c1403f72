"""The numba kernel's layout work: padded, aligned copies of the weights must change no result.

sgd_numba trains a copy of the weights whose rows are padded to whole chunks and
start on 64-byte boundaries, and copies it back. These tests hold it to
sgd_numpy (the reference) on real MNIST samples for layer sizes that are and are
not multiples of the chunk and vector widths, and check that where theta lies in
memory, empty orders and blank images change nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

from dtrain.model import mlp
from dtrain.model.kernels import sgd
from dtrain.model.sgd_setup import SGDSetup
from dtrain.model.sparse import SparseRows

pytest.importorskip("numba")

#: hidden layers: none (W_1 is the output layer), under, at and over one 16-float
#: vector and one 64-float chunk, and two hidden layers
HIDDEN = [(), (7,), (50,), (64,), (65,), (128,), (100, 30), (7, 5), (32, 16, 12)]


@pytest.fixture(scope="module")
def images(mnist):
    return SparseRows.from_dense(mnist.x_train[:3000]), mnist.y_train[:3000]


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("hidden", HIDDEN, ids=lambda h: "h" + "-".join(map(str, h)) if h else "none")
def test_numba_equals_numpy_to_float32_rounding(images, hidden, activation):
    X, y = images
    sizes = mlp.layer_sizes(784, hidden, 10)
    theta0 = mlp.he_init(sizes, np.random.default_rng(1))
    order = np.random.default_rng(2).permutation(len(y))[:600]
    t_np, t_nb = theta0.copy(), theta0.copy()
    loss_np, correct_np = sgd("numpy", t_np, SGDSetup(sizes, activation, X, y, 0.05), order)
    loss_nb, correct_nb = sgd("numba", t_nb, SGDSetup(sizes, activation, X, y, 0.05), order)
    assert np.abs(t_np - theta0).max() > 1e-2  # trained well past the tolerance
    np.testing.assert_allclose(t_nb, t_np, rtol=0, atol=2e-5)
    assert correct_nb == correct_np
    assert loss_nb == pytest.approx(loss_np, rel=1e-4)


@pytest.mark.parametrize("hidden", [(64,), (50,), (7, 5)], ids=["h64", "h50", "h7-5"])
@pytest.mark.parametrize("shift", [1, 3, 8, 15])
def test_where_theta_lies_changes_no_bit(images, hidden, shift):
    """theta at any float offset from a 64-byte line (as NumPy, Ray or a slice put it) and
    read-only inputs: bit for bit the result of an aligned theta."""
    X, y = images
    sizes = mlp.layer_sizes(784, hidden, 10)
    theta0 = mlp.he_init(sizes, np.random.default_rng(3))
    order = np.random.default_rng(4).permutation(len(y))[:400]
    buffer = np.zeros(theta0.size + 32, np.float32)
    first = (-(buffer.ctypes.data // 4)) % 16  # buffer[first] starts a 64-byte line
    aligned = buffer[first : first + theta0.size]
    shifted = np.zeros(theta0.size + 32, np.float32)[shift : shift + theta0.size]
    aligned[...] = theta0
    shifted[...] = theta0
    ro = SparseRows(*(a.copy() for a in (X.indptr, X.indices, X.values)), X.n_cols)
    for a in (ro.indptr, ro.indices, ro.values):
        a.flags.writeable = False
    a = sgd("numba", aligned, SGDSetup(sizes, "relu", X, y, 0.01), order)
    b = sgd("numba", shifted, SGDSetup(sizes, "relu", ro, y, 0.01), order)
    assert a == b
    assert np.array_equal(aligned, shifted)


def test_empty_order_and_blank_images(images):
    X, y = images
    sizes = mlp.layer_sizes(784, (50,), 10)
    theta0 = mlp.he_init(sizes, np.random.default_rng(5))

    theta = theta0.copy()
    assert sgd("numba", theta, SGDSetup(sizes, "relu", X, y, 0.01), np.zeros(0, np.int64)) == (0.0, 0)
    assert np.array_equal(theta, theta0)

    # blank images: only the biases and the layers above the first move, in both kernels
    blank = SparseRows.from_dense(np.zeros((3, 784), np.uint8))
    labels = np.array([1, 2, 3], np.uint8)
    t_np, t_nb = theta0.copy(), theta0.copy()
    sgd("numpy", t_np, SGDSetup(sizes, "relu", blank, labels, 0.1), np.arange(3))
    sgd("numba", t_nb, SGDSetup(sizes, "relu", blank, labels, 0.1), np.arange(3))
    (W1_np, _), *_ = mlp.unflatten(t_np, sizes)
    (W1_nb, _), *_ = mlp.unflatten(t_nb, sizes)
    (W1_0, _), *_ = mlp.unflatten(theta0, sizes)
    assert np.array_equal(W1_nb, W1_0) and np.array_equal(W1_np, W1_0)
    assert not np.array_equal(t_nb, theta0)
    np.testing.assert_allclose(t_nb, t_np, rtol=0, atol=1e-6)


def test_only_the_model_weights_are_written(images):
    """The padded copy is copied back row by row: no float next to theta is touched."""
    X, y = images
    sizes = mlp.layer_sizes(784, (50, 20), 10)
    n = mlp.n_params(sizes)
    guarded = np.full(n + 64, 7.0, np.float32)
    theta = guarded[32 : 32 + n]
    theta[...] = mlp.he_init(sizes, np.random.default_rng(6))
    sgd("numba", theta, SGDSetup(sizes, "relu", X, y, 0.05), np.arange(200))
    assert (guarded[:32] == 7.0).all() and (guarded[32 + n :] == 7.0).all()
    assert np.isfinite(theta).all()
