"""Scoring a model on a labelled set: loss, accuracy, confusion matrix, per-class figures."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from dtrain.model.mlp import cross_entropy, predict_proba, unflatten

PIXEL_SCALE = 1 / 255


def scale_pixels(X: np.ndarray) -> np.ndarray:
    """uint8 pixels (any shape) to float32 in [0, 1]; float input is taken as already scaled."""
    if X.dtype == np.uint8:
        return X.astype(np.float32) * np.float32(PIXEL_SCALE)
    return X.astype(np.float32, copy=False)


def probabilities(
    theta: np.ndarray,
    sizes: tuple[int, ...],
    activation: str,
    X: np.ndarray,
    chunk: int = 4096,
    threads: int = 1,
) -> np.ndarray:
    """Class probabilities (n, n_out) for images X (n, n_0), uint8 or float in [0, 1].

    With `threads` above 1, X is cut into at least that many parts, scored side by
    side (NumPy's matrix products release the GIL); the result is the same.
    """
    params = unflatten(theta, sizes)
    out = np.empty((len(X), sizes[-1]), dtype=np.float32)
    if threads > 1:
        chunk = max(1, min(chunk, -(-len(X) // threads)))

    def fill(lo: int) -> None:
        out[lo : lo + chunk] = predict_proba(params, scale_pixels(X[lo : lo + chunk]), activation)

    starts = range(0, len(X), chunk)
    if threads > 1:
        with ThreadPoolExecutor(threads, thread_name_prefix="dtrain-score") as pool:
            list(pool.map(fill, starts))
    else:
        for lo in starts:
            fill(lo)
    return out


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    confusion: np.ndarray  # (k, k) int: row = true class, column = predicted
    predictions: np.ndarray  # (n,) predicted class
    confidence: np.ndarray  # (n,) probability of the predicted class
    proba: np.ndarray  # (n, k) class probabilities

    @property
    def precision(self) -> np.ndarray:
        predicted = self.confusion.sum(axis=0)
        return np.divide(np.diag(self.confusion), predicted, out=np.zeros(len(predicted)), where=predicted > 0)

    @property
    def recall(self) -> np.ndarray:
        actual = self.confusion.sum(axis=1)
        return np.divide(np.diag(self.confusion), actual, out=np.zeros(len(actual)), where=actual > 0)

    @property
    def f1(self) -> np.ndarray:
        p, r = self.precision, self.recall
        return np.divide(2 * p * r, p + r, out=np.zeros(len(p)), where=(p + r) > 0)

    def summary(self) -> dict:
        """Plain-data figures for reports and JSON."""
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "confusion": self.confusion.tolist(),
            "precision": self.precision.round(6).tolist(),
            "recall": self.recall.round(6).tolist(),
            "f1": self.f1.round(6).tolist(),
        }


def evaluate(
    theta: np.ndarray,
    sizes: tuple[int, ...],
    activation: str,
    X: np.ndarray,
    y: np.ndarray,
    threads: int = 1,
) -> Evaluation:
    """Score theta on images X (n, n_0) with labels y (n,), on `threads` threads."""
    p = probabilities(theta, sizes, activation, X, threads=threads)
    labels = y.astype(np.int64)
    predictions = p.argmax(axis=1)
    k = sizes[-1]
    confusion = np.bincount(labels * k + predictions, minlength=k * k).reshape(k, k)
    loss = float(cross_entropy(p, labels).astype(np.float64).mean())
    if not np.isfinite(loss):
        loss = float("nan")
    return Evaluation(
        loss=loss,
        accuracy=float((predictions == labels).mean()),
        confusion=confusion,
        predictions=predictions,
        confidence=p[np.arange(len(p)), predictions],
        proba=p,
    )
