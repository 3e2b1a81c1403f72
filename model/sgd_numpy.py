"""Per-sample SGD over a list of samples, in pure NumPy: the reference kernel.

Exactly the update of ``mlp.sgd_step`` for each sample in turn, made fast by
working on the flat float32 buffer in place and, with images as sparse rows,
touching only the rows of W_1 that belong to non-zero pixels (MNIST is ~80%
zeros; a zero input has a zero gradient, so skipping it changes nothing).

With one sample per step, the time goes into NumPy calls rather than arithmetic,
so the loop makes as few as it can: the rows of W_1 a sample touches are gathered
once for both passes and written back once, activations and softmax work in
place, and outer products use the ufunc (``np.outer`` adds Python-level work).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from dtrain.model.mlp import DERIVATIVES, unflatten
from dtrain.model.sgd_setup import SGDSetup

#: The smallest positive float32: the probability a loss is taken of, at least.
TINY = float(np.finfo(np.float32).tiny)


def sgd_numpy(theta: np.ndarray, setup: SGDSetup, order: np.ndarray) -> tuple[float, int]:
    """Train theta (flat float32) in place on the images `order` ((k,) indices into
    setup.images, sparse uint8 rows), one sample a step, pixels scaled by setup.scale.

    Returns (sum of per-sample losses before each step, number predicted right).
    """
    params = unflatten(theta, setup.sizes)
    relu = setup.activation == "relu"
    f_prime = DERIVATIVES[setup.activation]
    lr, scale = np.float32(setup.lr), np.float32(setup.scale)
    (W1, b1), rest = params[0], params[1:]
    loss, correct = 0.0, 0
    indices, values = setup.images.indices, setup.images.values
    order = np.asarray(order)
    starts, stops = setup.images.indptr[order].tolist(), setup.images.indptr[order + 1].tolist()
    for lo, hi, label in zip(starts, stops, setup.y[order].tolist()):
        nz = indices[lo:hi]
        x = values[lo:hi] * scale  # a_0's non-zero entries, float32
        rows = W1[nz]  # the rows of W_1 that x meets: gathered once, written back at the end
        a = _forward(x, rows, b1, rest, relu)
        p = a[-1]
        _softmax_in_place(p)
        loss -= math.log(max(float(p[label]), TINY))
        correct += int(p.argmax() == label)
        delta = _backward(params, a, label, lr, f_prime)
        rows -= np.multiply.outer(lr * x, delta)
        W1[nz] = rows
        b1 -= lr * delta
    return loss, correct


def _forward(
    x: np.ndarray, rows: np.ndarray, b1: np.ndarray, rest: list[tuple[np.ndarray, np.ndarray]], relu: bool
) -> list[np.ndarray]:
    """One sample's forward pass from x (m,), its non-zero inputs, and rows (m, n_1), their
    rows of W_1; rest holds the (W, b) of layers 2..L. Returns [x, a_1, ..., a_{L-1}, z_L]
    ((n_l,) each), each a_l computed in place over z_l."""
    z = x @ rows
    z += b1
    a = [x, z]
    for W, b in rest:
        _activate_in_place(z, relu)
        z = z @ W
        z += b
        a.append(z)
    return a


def _activate_in_place(z: np.ndarray, relu: bool) -> None:
    """a = relu(z) or sigmoid(z), in place over z (n,): mlp.relu and mlp.sigmoid allocate."""
    if relu:
        np.maximum(z, 0, out=z)
    else:  # 1 / (1 + exp(-z))
        np.negative(z, out=z)
        np.exp(z, out=z)
        z += 1
        np.reciprocal(z, out=z)


def _softmax_in_place(z: np.ndarray) -> None:
    """z (n_L,) to softmax(z), in place: mlp.softmax allocates."""
    z -= z.max()
    np.exp(z, out=z)
    z /= z.sum()


def _backward(
    params: list[tuple[np.ndarray, np.ndarray]], a: list[np.ndarray], label: int, lr: np.float32, f_prime: Callable
) -> np.ndarray:
    """One sample's backward pass from a (as `_forward` returns it, the softmax output last,
    which becomes delta_L in place), updating the (W, b) of layers L..2 each after using its
    old weights. Returns delta_1 (n_1,), for the caller to update layer 1's rows."""
    delta = a[-1]
    delta[label] -= 1
    for l in range(len(params) - 1, 0, -1):
        W, b = params[l]
        a_prev = a[l]
        delta_prev = W @ delta
        delta_prev *= f_prime(a_prev)
        W -= np.multiply.outer(lr * a_prev, delta)
        b -= lr * delta
        delta = delta_prev
    return delta
