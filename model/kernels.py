"""Choosing the per-sample SGD kernel: compiled (numba) where available, NumPy otherwise."""

from __future__ import annotations

import sys

import numpy as np

from dtrain.model.sgd_numpy import sgd_numpy
from dtrain.model.sparse import SparseRows


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
    images: SparseRows | np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    lr: float,
    scale: float = 1 / 255,
    batch_size: int = 1,
) -> tuple[float, int]:
    """Per-sample SGD on theta in place over the images `order`, in that order.

    With `batch_size` above 1 (or 0, one batch of all), mini-batch SGD instead,
    in NumPy whatever the kernel (`minibatch.sgd_minibatch`).

    `images` are sparse rows, or dense uint8 images (n, pixels), which are
    converted here (only the rows visited). Returns (loss sum, correct count),
    each sample scored before its own step.
    """
    if activation not in ("relu", "sigmoid"):
        raise ValueError(f"unknown activation {activation!r}: expected relu or sigmoid")
    if isinstance(images, np.ndarray):
        images, y = SparseRows.from_dense(images[order]), y[order]
        order = np.arange(len(y))
    if batch_size != 1:
        from dtrain.model.minibatch import sgd_minibatch

        return sgd_minibatch(theta, sizes, activation, images, y, order, lr, batch_size, scale)
    if resolve_kernel(kernel) == "numpy":
        return sgd_numpy(theta, sizes, activation, images, y, order, lr, scale)
    from dtrain.model.sgd_numba import sgd_numba

    return sgd_numba(
        theta,
        np.asarray(sizes, dtype=np.int64),
        activation == "relu",
        images.indptr,
        images.indices,
        images.values,
        y,
        order,
        np.float32(lr),
        np.float32(scale),
    )


def _load_numba_without_scipy_linalg() -> None:
    """Import numba's NumPy implementations with `import scipy.linalg` failing meanwhile.

    Loading even a cached kernel makes numba import numba.np.arraymath, which imports
    scipy.linalg at once, only to learn whether a BLAS is there for np.correlate and
    np.convolve (which this kernel never calls): 0.19 s of CPU in every worker process
    where SciPy is installed, 1.5 CPU-s when 8 workers start on 2 cores. Only that one
    import runs under the block; afterwards `import scipy.linalg` works as usual, and
    numba's np.dot and np.linalg still find their BLAS when they compile (only
    np.correlate and np.convolve keep a plain loop). A process that already imported
    either module is left alone.
    """
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    sys.modules["scipy.linalg"] = None  # type: ignore[assignment]  # Python's documented import block
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        if sys.modules.get("scipy.linalg", 0) is None:
            del sys.modules["scipy.linalg"]


def warm_up(kernel: str, n_features: int = 784) -> None:
    """Compile (first run) or load (later runs) the numba kernel for the argument types
    the workers use, read-only data included, so that workers load it from the cache
    instead of each compiling it at once."""
    if resolve_kernel(kernel) != "numba":
        return
    images = SparseRows.from_dense(np.ones((1, n_features), np.uint8))
    y = np.zeros(1, np.uint8)
    for array in (images.indptr, images.indices, images.values, y):
        array.flags.writeable = False  # as arrays arrive through Ray
    sizes = (n_features, 1, 2)
    theta = np.zeros(n_features * 1 + 1 + 1 * 2 + 2, np.float32)
    _load_numba_without_scipy_linalg()
    sgd("numba", theta, sizes, "relu", images, y, np.zeros(1, np.int64), 0.0)

