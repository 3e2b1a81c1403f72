"""Images as sparse rows: only the non-zero pixels, which is all per-sample SGD needs.

MNIST is ~81% zeros, and a zero input contributes nothing to the forward pass and
has a zero gradient, so the SGD kernels read each image as (pixel index, value)
pairs. Converting once, when the job starts, saves every worker from scanning
784 pixels per sample, and the compressed set (~28 MB for MNIST's training set,
against 47 MB dense) is what goes into the object store.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SparseRows:
    """uint8 images in CSR form. Row i's pixels are ``indices[indptr[i]:indptr[i+1]]``
    with values ``values[...]``; ``indptr`` holds absolute offsets, so a slice of
    rows shares ``indices`` and ``values`` with the whole set (zero-copy)."""

    indptr: np.ndarray  # (n + 1,) int64
    indices: np.ndarray  # (nnz,) uint16: pixel index within the image
    values: np.ndarray  # (nnz,) uint8: pixel value, 1-255
    n_cols: int

    @classmethod
    def from_dense(cls, X: np.ndarray) -> SparseRows:
        """From uint8 images (n, n_cols)."""
        if X.ndim != 2 or X.dtype != np.uint8:
            raise ValueError(f"expected uint8 images of shape (n, pixels), got {X.dtype} {X.shape}")
        if X.shape[1] > np.iinfo(np.uint16).max + 1:
            raise ValueError(f"images of {X.shape[1]} pixels: at most 65536 supported")
        indptr = np.zeros(len(X) + 1, np.int64)
        np.cumsum(np.count_nonzero(X, axis=1), out=indptr[1:])
        # One flat index per pixel, row by row: 2.5x faster than np.nonzero's (row, column)
        # pairs and a mask, which took 0.7 s of every job's start for MNIST.
        flat = np.flatnonzero(X)
        return cls(indptr, (flat % X.shape[1]).astype(np.uint16), X.reshape(-1)[flat], X.shape[1])

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def rows(self, lo: int, hi: int) -> SparseRows:
        """Rows [lo, hi) as a view."""
        return SparseRows(self.indptr[lo : hi + 1], self.indices, self.values, self.n_cols)

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.indices.nbytes + self.values.nbytes
