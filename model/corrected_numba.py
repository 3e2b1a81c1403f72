"""SCAFFOLD's corrected SGD loop compiled with numba (model/corrected.py says what it computes).

It calls the unchanged per-sample kernel (sgd_numba) on one sample at a time, so the
gradient part of each step is exactly the kernel's, then moves every weight by
-step = -lr * (c - c_i). No fastmath: the dense step rounds as NumPy's
``theta -= step`` does, one float32 subtraction a weight.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from dtrain.model.sgd_numba import sgd_numba


@njit(cache=True, nogil=True)
def sgd_corrected_numba(theta, step, sizes, is_relu, indptr, indices, values, y, order, lr, scale):  # pragma: no cover
    """Train theta (float32, flat (P,)) in place on sparse rows `order`, each step corrected by
    `step` (float32 (P,), lr * (c - c_i)); returns (loss sum, correct)."""
    one = np.empty(1, np.int64)
    loss = 0.0
    correct = 0
    for k in range(order.shape[0]):
        one[0] = order[k]
        l, c = sgd_numba(theta, sizes, is_relu, indptr, indices, values, y, one, lr, scale)
        loss += l
        correct += c
        for i in range(theta.shape[0]):
            theta[i] -= step[i]
    return loss, correct
