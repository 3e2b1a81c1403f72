"""The one weighted average of parameter vectors, used by the workers and the parameter server.

A federated worker averages its clients' weights with it, and the parameter
server (or a node's reducer) averages the workers' with it: each term n_k * theta_k
is computed exactly in float64 (a float32's 24-bit significand times a sample
count fits float64's 53 bits), so only the additions can round, and for one
weight's K nearby values they rarely do: sums of the same products in another
order or grouping (the per-node partial sums of cluster/reduce.py) come out the
same to the last bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def weighted_sum(thetas: Sequence[np.ndarray], counts: Sequence[int]) -> np.ndarray:
    """sum_k n_k * theta_k in float64, from exact products (see the module docstring)."""
    total = np.zeros(thetas[0].shape, dtype=np.float64)
    term = np.empty_like(total)
    for theta, n in zip(thetas, counts):
        np.copyto(term, theta)
        term *= n
        total += term
    return total


def mean_of_sum(total: np.ndarray, samples: int, dtype: np.dtype) -> np.ndarray:
    """The sample-weighted mean from weighted_sum's (or the partials') total, in the weights' dtype."""
    if samples <= 0:
        raise ValueError("no samples were trained in this round")
    return (total / float(samples)).astype(dtype)


def weighted_mean(thetas: Sequence[np.ndarray], counts: Sequence[int]) -> np.ndarray:
    """Sample-weighted mean of flat parameter vectors, in a fixed order (reproducible).

    Summed in float64 from exact products, then divided: a tree reduction (per-node
    partial sums) gives the same mean, so a job's weights do not depend on how its
    round was reduced.
    """
    return mean_of_sum(weighted_sum(thetas, counts), sum(counts), thetas[0].dtype)
