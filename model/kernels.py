"""Choosing the per-sample SGD kernel: compiled (numba) where available, NumPy otherwise."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np

from dtrain.model.mlp import n_params
from dtrain.model.sgd_numpy import sgd_numpy
from dtrain.model.sgd_setup import SGDSetup
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


def sgd(kernel: str, theta: np.ndarray, setup: SGDSetup, order: np.ndarray) -> tuple[float, int]:
    """Per-sample SGD on theta (flat float32) in place over the images `order` ((k,) indices
    into setup.images), in that order.

    With `setup.batch_size` above 1 (or 0, one batch of all), mini-batch SGD instead,
    in NumPy whatever the kernel (`minibatch.sgd_minibatch`).

    Dense images (n, pixels) are converted to sparse rows here (only the rows visited).
    Returns (loss sum, correct count), each sample scored before its own step.
    """
    if setup.activation not in ("relu", "sigmoid"):
        raise ValueError(f"unknown activation {setup.activation!r}: expected relu or sigmoid")
    if isinstance(setup.images, np.ndarray):
        setup = replace(setup, images=SparseRows.from_dense(setup.images[order]), y=setup.y[order])
        order = np.arange(len(setup.y))
    if setup.batch_size != 1:
        from dtrain.model.minibatch import sgd_minibatch

        return sgd_minibatch(theta, setup, order)
    if resolve_kernel(kernel) == "numpy":
        return sgd_numpy(theta, setup, order)
    from dtrain.model.sgd_numba import sgd_numba

    return sgd_numba(theta, *numba_arguments(setup, order))


def numba_arguments(setup: SGDSetup, order: np.ndarray) -> tuple:
    """sgd_numba's arguments after theta, in the types it is compiled for: the sizes (L + 1,)
    int64, relu or not, the sparse rows' three arrays, the labels, `order`, lr and scale
    as float32. setup.images must be sparse rows."""
    images = setup.images
    return (
        np.asarray(setup.sizes, dtype=np.int64),
        setup.activation == "relu",
        images.indptr,
        images.indices,
        images.values,
        setup.y,
        order,
        np.float32(setup.lr),
        np.float32(setup.scale),
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
    setup = warm_up_setup(n_features)
    theta = np.zeros(n_params(setup.sizes), np.float32)
    _load_numba_without_scipy_linalg()
    sgd("numba", theta, setup, np.zeros(1, np.int64))


def warm_up_setup(n_features: int) -> SGDSetup:
    """The least work with the argument types of the workers' calls, to compile a kernel for:
    one image of n_features pixels (none zero), a (n_features, 1, 2) model, lr 0, and the
    data read-only."""
    images = SparseRows.from_dense(np.ones((1, n_features), np.uint8))
    y = np.zeros(1, np.uint8)
    for array in (images.indptr, images.indices, images.values, y):
        array.flags.writeable = False  # as arrays arrive through Ray
    return SGDSetup((n_features, 1, 2), "relu", images, y, 0.0)

