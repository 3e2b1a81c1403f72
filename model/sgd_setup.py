"""What an SGD call trains with, besides the weights and the order it visits the samples in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtrain.model.sparse import SparseRows


@dataclass(frozen=True, eq=False)
class SGDSetup:
    """The model, the data and the step size of SGD calls (`kernels.sgd`, `prox.sgd_prox`).

    A worker trains with one setup call after call; what changes between calls, the
    weights and the samples visited, are the calls' own arguments.
    """

    sizes: tuple[int, ...]  # layer sizes (n_0, ..., n_L)
    activation: str  # of the hidden layers: "relu" or "sigmoid"
    images: SparseRows | np.ndarray  # n images of n_0 uint8 pixels: sparse rows, or dense (n, n_0)
    y: np.ndarray  # (n,) labels
    lr: float  # learning rate
    scale: float = 1 / 255  # the inputs are the pixels times scale
    batch_size: int = 1  # samples a step: 1 per-sample SGD, more mini-batches, 0 one batch of all
