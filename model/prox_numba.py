"""FedProx's proximal SGD loop compiled with numba (model/prox.py says what it computes).

It calls the unchanged per-sample kernel (sgd_numba) on one sample at a time, so the
gradient part of each step is exactly the kernel's, then moves every weight by
-lr * mu * (w_before - w_global). No fastmath here: the dense step rounds as NumPy's
``theta -= shrink * (before - anchor)`` does, one float32 operation at a time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from dtrain.model.sgd_numba import sgd_numba


@njit(cache=True, nogil=True)
def sgd_prox_numba(theta, anchor, shrink, sizes, is_relu, indptr, indices, values, y, order, lr, scale):  # pragma: no cover
    """Train theta (float32, flat) in place on sparse rows `order`, pulled toward `anchor`
    by the proximal term; returns (loss sum, correct)."""
    before = np.empty_like(theta)
    one = np.empty(1, np.int64)
    loss = 0.0
    correct = 0
    for step in range(order.shape[0]):
        before[:] = theta
        one[0] = order[step]
        l, c = sgd_numba(theta, sizes, is_relu, indptr, indices, values, y, one, lr, scale)
        loss += l
        correct += c
        for i in range(theta.shape[0]):
            theta[i] -= shrink * (before[i] - anchor[i])
    return loss, correct
