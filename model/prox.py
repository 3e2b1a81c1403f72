"""SGD on a local objective with FedProx's proximal term (Li et al., 2020).

A FedProx client minimises loss(w) + mu/2 * ||w - w_global||^2, w_global being the
round's start weights (the anchor). Each SGD step, one sample (or one mini-batch),
is then

    w <- w - lr * (grad loss(w) + mu * (w - w_global))

with both terms taken at the weights before the step. The step is computed as the
plain kernel's step followed by ``w -= float32(lr * mu) * (w_before - w_global)`` over
all the weights, so the gradient part is bit for bit the plain kernel's, and with
mu = 0 the whole is exactly plain SGD (the plain kernel is then called as it is).

The proximal part touches every weight at every step, where the kernels touch only
the rows of W_1 of a sample's non-zero pixels: with the numba kernel the loop runs
compiled (prox_numba.py: the unchanged kernel, called one sample at a time, then the
dense step); mini-batches and the NumPy kernel loop in Python, one kernel call a step.
"""

from __future__ import annotations

import numpy as np

from dtrain.model.kernels import numba_arguments, resolve_kernel, sgd, warm_up_setup
from dtrain.model.mlp import n_params
from dtrain.model.sgd_setup import SGDSetup
from dtrain.model.sparse import SparseRows


def sgd_prox(
    kernel: str, theta: np.ndarray, anchor: np.ndarray, mu: float, setup: SGDSetup, order: np.ndarray
) -> tuple[float, int]:
    """`kernels.sgd` with the proximal term toward `anchor` (float32, theta's shape); theta is
    trained in place. Returns (loss sum, correct count), each sample scored before its step."""
    if mu == 0:
        return sgd(kernel, theta, setup, order)
    shrink = np.float32(setup.lr * mu)
    if setup.batch_size == 1 and resolve_kernel(kernel) == "numba" and isinstance(setup.images, SparseRows):
        from dtrain.model.prox_numba import sgd_prox_numba

        return sgd_prox_numba(theta, anchor, shrink, *numba_arguments(setup, np.asarray(order, np.int64)))
    step = len(order) if setup.batch_size == 0 else setup.batch_size
    loss, correct = 0.0, 0
    before = np.empty_like(theta)
    for lo in range(0, len(order), max(step, 1)):
        np.copyto(before, theta)
        l, c = sgd(kernel, theta, setup, order[lo : lo + step])
        before -= anchor
        before *= shrink
        theta -= before
        loss, correct = loss + l, correct + c
    return loss, correct


def warm_up_prox(kernel: str, n_features: int = 784) -> None:
    """Compile (first run) or load the compiled proximal loop, as kernels.warm_up does the kernel."""
    if resolve_kernel(kernel) != "numba":
        return
    setup = warm_up_setup(n_features)
    theta = np.zeros(n_params(setup.sizes), np.float32)
    anchor = theta.copy()
    anchor.flags.writeable = False  # as the round's start weights arrive through Ray
    sgd_prox("numba", theta, anchor, 0.5, setup, np.zeros(1, np.int64))
