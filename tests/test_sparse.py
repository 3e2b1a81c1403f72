"""Sparse rows: the training set as the kernels read it."""

from __future__ import annotations

import numpy as np
import pytest

from dtrain.model import mlp
from dtrain.model.kernels import sgd
from dtrain.model.sgd_setup import SGDSetup
from dtrain.model.sparse import SparseRows


def to_dense(rows: SparseRows) -> np.ndarray:
    out = np.zeros((len(rows), rows.n_cols), np.uint8)
    for i in range(len(rows)):
        lo, hi = rows.indptr[i], rows.indptr[i + 1]
        out[i, rows.indices[lo:hi]] = rows.values[lo:hi]
    return out


def test_round_trip_and_row_views(mnist):
    X = mnist.x_train[:500]
    rows = SparseRows.from_dense(X)
    assert len(rows) == 500 and rows.n_cols == 784
    assert np.array_equal(to_dense(rows), X)
    assert rows.values.min() > 0  # only non-zero pixels are kept
    assert rows.nbytes < 0.7 * X.nbytes  # 3 bytes per non-zero pixel, ~19% of them
    view = rows.rows(100, 200)
    assert view.indices is rows.indices  # zero-copy
    assert np.array_equal(to_dense(view), X[100:200])


def test_whole_mnist_is_about_a_fifth_non_zero(mnist):
    rows = SparseRows.from_dense(mnist.x_train)
    assert 0.17 < len(rows.values) / mnist.x_train.size < 0.21


def test_refuses_what_it_cannot_hold():
    with pytest.raises(ValueError, match="uint8"):
        SparseRows.from_dense(np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
def test_kernels_give_the_same_weights_from_sparse_and_dense_input(mnist, kernel):
    sizes = mlp.layer_sizes(784, (32,))
    theta0 = mlp.he_init(sizes, np.random.default_rng(3))
    order = np.random.default_rng(4).permutation(1000)[:300]
    dense, sparse = theta0.copy(), theta0.copy()
    r1 = sgd(kernel, dense, SGDSetup(sizes, "relu", mnist.x_train[:1000], mnist.y_train[:1000], 0.05), order)
    r2 = sgd(kernel, sparse, SGDSetup(sizes, "relu", SparseRows.from_dense(mnist.x_train[:1000]), mnist.y_train[:1000], 0.05), order)
    assert np.array_equal(dense, sparse)
    assert r1 == r2


def test_the_compiled_kernel_is_loaded_from_the_cache_in_a_new_process():
    """What the workers rely on: after one warm-up anywhere, a new process loads, not compiles."""
    import subprocess
    import sys

    script = (
        "from dtrain.model.kernels import warm_up; warm_up('numba');"
        "from dtrain.model.sgd_numba import sgd_numba;"
        "print(sum(sgd_numba.stats.cache_hits.values()), sum(sgd_numba.stats.cache_misses.values()))"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=120)
    second = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=120)
    hits, misses = map(int, second.stdout.split())
    assert hits >= 1 and misses == 0
