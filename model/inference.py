"""Using trained weights: ``load_model("model.npz").predict(images)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dtrain.errors import UserError
from dtrain.model.mlp import predict_proba, unflatten
from dtrain.model.weights import read_weights


class Model:
    """A trained MLP ready for inference. Images are integer pixels (0-255) or floats in [0, 1]."""

    def __init__(self, theta: np.ndarray, metadata: dict[str, Any]):
        self.theta = theta
        self.metadata = metadata
        self.layer_sizes = tuple(metadata["layer_sizes"])
        self.activation = metadata["activation"]
        self.input_scale = float(metadata.get("input_scale", 1 / 255))
        self.params = unflatten(theta, self.layer_sizes)

    @property
    def n_inputs(self) -> int:
        return self.layer_sizes[0]

    def _as_batch(self, images: np.ndarray) -> tuple[np.ndarray, bool]:
        x = np.asarray(images)
        n_in = self.n_inputs
        if x.ndim >= 1 and x.shape[-1] == n_in and x.ndim <= 2:
            batch = x.reshape(-1, n_in)
            single = x.ndim == 1
        elif x.ndim >= 2 and int(np.prod(x.shape[-2:])) == n_in and x.ndim <= 3:
            batch = x.reshape(-1, n_in)
            single = x.ndim == 2
        else:
            raise UserError(
                f"images of shape {x.shape} do not fit this model: expected {n_in} pixels per image "
                f"(one image, or a batch of them)"
            )
        if np.issubdtype(batch.dtype, np.integer) and not np.issubdtype(batch.dtype, np.bool_):
            # integer pixels are 0-255 whatever their width (np.array of Python ints is int64)
            batch = batch.astype(np.float32) * np.float32(self.input_scale)
        elif np.issubdtype(batch.dtype, np.floating):
            batch = batch.astype(np.float32)
        else:
            raise UserError(f"images of dtype {x.dtype}: expected integer pixels 0-255 or floats in [0, 1]")
        return batch, single

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities: (n_out,) for one image, (n, n_out) for a batch."""
        batch, single = self._as_batch(images)
        p = predict_proba(self.params, batch, self.activation)
        return p[0] if single else p

    def predict(self, images: np.ndarray) -> np.ndarray | int:
        """Predicted class: an int for one image, an (n,) array for a batch."""
        p = self.predict_proba(images)
        return int(p.argmax()) if p.ndim == 1 else p.argmax(axis=1)


def load_model(path: str | Path) -> Model:
    """Load a dtrain weights file (checked: shapes, finite values, known format)."""
    theta, metadata = read_weights(path)
    return Model(theta, metadata)
