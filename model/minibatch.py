"""Mini-batch SGD over a list of samples: the step FedAvg's clients take (McMahan et al., 2017).

Per-sample SGD (batch size 1) is the kernels' job (`kernels.sgd`); this covers
batch sizes above one, and the whole-data batch of FedSGD, with the batch-mean
gradient of `mlp.backprop`.
"""

from __future__ import annotations

import numpy as np

from dtrain.model.mlp import cross_entropy, forward, gradients, unflatten
from dtrain.model.sgd_setup import SGDSetup
from dtrain.model.sparse import SparseRows


def dense_rows(images: SparseRows, rows: np.ndarray, scale: float) -> np.ndarray:
    """The images `rows` of sparse uint8 rows as a dense float32 batch (len(rows), n_cols), scaled."""
    X = np.zeros((len(rows), images.n_cols), np.float32)
    for i, s in enumerate(rows):
        lo, hi = images.indptr[s], images.indptr[s + 1]
        X[i, images.indices[lo:hi]] = images.values[lo:hi] * np.float32(scale)
    return X


def sgd_minibatch(theta: np.ndarray, setup: SGDSetup, order: np.ndarray) -> tuple[float, int]:
    """SGD on theta (flat float32) in place over the samples `order` ((k,) indices into
    setup.images, sparse rows), `setup.batch_size` at a time.

    Each step moves theta by -lr times the batch-mean gradient; batch size 0 means
    one step on all of `order` (FedSGD). Returns (sum of per-sample losses, correct
    predictions), each batch scored before its own step.
    """
    params = unflatten(theta, setup.sizes)
    step = len(order) if setup.batch_size <= 0 else setup.batch_size
    loss_sum, correct = 0.0, 0
    for lo in range(0, len(order), max(step, 1)):
        rows = order[lo : lo + step]
        X, labels = dense_rows(setup.images, rows, setup.scale), setup.y[rows].astype(np.int64)
        a = forward(params, X, setup.activation)
        loss_sum += float(cross_entropy(a[-1], labels).sum())
        correct += int((a[-1].argmax(axis=1) == labels).sum())
        grads = gradients(params, a, labels, setup.activation)
        for (W, b), (dW, db) in zip(params, grads):
            W -= np.float32(setup.lr) * dW
            b -= np.float32(setup.lr) * db
    return loss_sum, correct
