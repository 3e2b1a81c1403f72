"""SGD with SCAFFOLD's control-variate correction (Karimireddy et al., 2020).

A SCAFFOLD client i corrects every local step by the server's control variate c
less its own c_i (cluster/algorithms/scaffold.py keeps both):

    y <- y - lr * (grad loss(y) + c - c_i)

The correction d = c - c_i is the same at every step of the client's round, so the
step is computed as the plain kernel's step followed by ``y -= float32(lr) * d``
over all the weights, `float32(lr) * d` computed once: the gradient part is bit for
bit the plain kernel's, and with d = 0 the whole is exactly plain SGD (the plain
kernel is then called as it is). As FedProx's (model/prox.py), the correction
touches every weight at every step where the kernels touch only the rows of W_1 of
a sample's non-zero pixels: with the numba kernel the loop runs compiled
(corrected_numba.py); mini-batches and the NumPy kernel loop in Python, one kernel
call a step.
"""

from __future__ import annotations

import numpy as np

from dtrain.model.kernels import numba_arguments, resolve_kernel, sgd, warm_up_setup
from dtrain.model.mlp import n_params
from dtrain.model.sgd_setup import SGDSetup
from dtrain.model.sparse import SparseRows


def sgd_corrected(kernel: str, theta: np.ndarray, correction: np.ndarray, setup: SGDSetup, order: np.ndarray) -> tuple[float, int]:
    """`kernels.sgd` with every step moved by -lr * `correction` (c - c_i: float32, theta's
    shape (P,)); theta is trained in place. Returns (loss sum, correct count), each sample
    scored before its step."""
    if not correction.any():  # a client's first round, or c = c_i: plain SGD, bit for bit
        return sgd(kernel, theta, setup, order)
    step = np.float32(setup.lr) * correction.astype(np.float32, copy=False)  # the same every step: once
    if setup.batch_size == 1 and resolve_kernel(kernel) == "numba" and isinstance(setup.images, SparseRows):
        from dtrain.model.corrected_numba import sgd_corrected_numba

        return sgd_corrected_numba(theta, step, *numba_arguments(setup, np.asarray(order, np.int64)))
    size = len(order) if setup.batch_size == 0 else setup.batch_size
    loss, correct = 0.0, 0
    for lo in range(0, len(order), max(size, 1)):
        l, c = sgd(kernel, theta, setup, order[lo : lo + size])
        theta -= step
        loss, correct = loss + l, correct + c
    return loss, correct


def steps_per_pass(samples: int, batch_size: int) -> int:
    """SGD steps in one pass over `samples` samples: K_i per local epoch in SCAFFOLD's c_i update."""
    if batch_size == 0:
        return 1  # one step on all of them (FedSGD)
    return -(-samples // batch_size)


def warm_up_corrected(kernel: str, n_features: int = 784) -> None:
    """Compile (first run) or load the compiled corrected loop, as kernels.warm_up does the kernel."""
    if resolve_kernel(kernel) != "numba":
        return
    setup = warm_up_setup(n_features)
    theta = np.zeros(n_params(setup.sizes), np.float32)
    sgd_corrected("numba", theta, np.ones_like(theta), setup, np.zeros(1, np.int64))
