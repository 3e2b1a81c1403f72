"""Per-sample SGD over a list of samples, in pure NumPy: the reference kernel.

Exactly the update of ``mlp.sgd_step`` for each sample in turn, made fast by
working on the flat float32 buffer in place and, with images as sparse rows,
touching only the rows of W_1 that belong to non-zero pixels (MNIST is ~80%
zeros; a zero input has a zero gradient, so skipping it changes nothing).
"""

from __future__ import annotations

import numpy as np

from dtrain.model.mlp import DERIVATIVES, unflatten
from dtrain.model.sparse import SparseRows


def sgd_numpy(
    theta: np.ndarray,
    sizes: tuple[int, ...],
    activation: str,
    images: SparseRows,
    y: np.ndarray,
    order: np.ndarray,
    lr: float,
    scale: float,
) -> tuple[float, int]:
    """Train theta in place on the images (sparse uint8 rows) `order`, pixels scaled by `scale`.

    Returns (sum of per-sample losses before each step, number predicted right).
    """
    params = unflatten(theta, sizes)
    f_prime = DERIVATIVES[activation]
    relu = activation == "relu"
    lr = np.float32(lr)
    (W1, b1), rest = params[0], params[1:]
    loss, correct = 0.0, 0
    indptr, indices, values = images.indptr, images.indices, images.values
    for s in order:
        lo, hi = indptr[s], indptr[s + 1]
        nz = indices[lo:hi]
        xv = values[lo:hi].astype(np.float32) * np.float32(scale)
        # forward
        a = [None, b1 + xv @ W1[nz]]
        for W, b in rest:
            z = a[-1]
            z = np.maximum(z, 0) if relu else 1 / (1 + np.exp(-z))
            a[-1] = z
            a.append(z @ W + b)
        z = a[-1]
        e = np.exp(z - z.max())
        p = e / e.sum()
        label = y[s]
        loss -= float(np.log(max(p[label], np.finfo(np.float32).tiny)))
        correct += int(p.argmax() == label)
        # backward, updating each layer after using its old weights
        delta = p
        delta[label] -= 1
        for l in range(len(params) - 1, 0, -1):
            W, b = params[l]
            a_prev = a[l]
            delta_prev = (W @ delta) * f_prime(a_prev)
            W -= lr * np.outer(a_prev, delta)
            b -= lr * delta
            delta = delta_prev
        W1[nz] -= lr * np.outer(xv, delta)
        b1 -= lr * delta
    return loss, correct
