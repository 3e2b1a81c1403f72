"""Choosing the per-sample SGD kernel: compiled (numba) where available, NumPy otherwise."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dtrain.model.sgd_numpy import sgd_numpy

Kernel = Callable[..., tuple[float, int]]


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_kernel(name: str) -> str:
    """'auto' -> 'numba' when numba imports, else 'numpy'. Unknown names raise ValueError."""
    if name == "auto":
        return "numba" if numba_available() else "numpy"
    if name not in ("numba", "numpy"):
        raise ValueError(f"unknown kernel {name!r}: expected auto, numba or numpy")
    return name


def sgd(
    kernel: str,
    theta: np.ndarray,
    sizes: tuple[int, ...],
    activation: str,
    X: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    lr: float,
    scale: float = 1 / 255,
) -> tuple[float, int]:
    """Per-sample SGD on theta in place over X[order]; (loss sum, correct count)."""
    if resolve_kernel(kernel) == "numpy":
        return sgd_numpy(theta, sizes, activation, X, y, order, lr, scale)
    from dtrain.model.sgd_numba import sgd_numba

    return sgd_numba(
        theta,
        np.asarray(sizes, dtype=np.int64),
        activation == "relu",
        X,
        y,
        order,
        np.float32(lr),
        np.float32(scale),
    )
