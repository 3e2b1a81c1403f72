"""How the training set is split over workers (or federated clients): IID, or skewed by label.

Both layouts return one permutation of the training set and contiguous bounds
into it, so a worker's data stays a zero-copy slice of one array in the object
store whatever the layout.
"""

from __future__ import annotations

import numpy as np

LAYOUTS = ("iid", "label-skew")

#: Label-sorted pieces each unit gets under label-skew (McMahan et al., 2017: two
#: shards of one label each per client, so most units see one or two classes).
PIECES_PER_UNIT = 2


def even_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous, nearly equal [lo, hi) slices of n items."""
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    return [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]


def partition(y: np.ndarray, units: int, layout: str = "iid", seed: int = 0) -> tuple[np.ndarray | None, list[tuple[int, int]]]:
    """Split the samples with labels `y` (n,) over `units` workers or clients.

    Returns (order, bounds): unit u trains samples ``order[lo:hi]`` for
    ``(lo, hi) = bounds[u]``. ``order`` is None for "iid", which keeps the
    dataset's own order (MNIST's training set comes shuffled) so the data need
    not be copied.

    "label-skew" sorts the samples by label, cuts them into 2 x units equal
    pieces and deals two random pieces to each unit (seeded): with MNIST's ten
    classes, a unit sees one or two of them.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    n = len(y)
    if layout == "iid":
        return None, even_bounds(n, units)
    by_label = np.argsort(y, kind="stable")
    pieces = even_bounds(n, PIECES_PER_UNIT * units)
    dealt = np.random.default_rng((seed, 0x5EED)).permutation(len(pieces))
    order = np.concatenate([by_label[slice(*pieces[p])] for p in dealt])
    sizes = [sum(pieces[p][1] - pieces[p][0] for p in dealt[u * PIECES_PER_UNIT : (u + 1) * PIECES_PER_UNIT]) for u in range(units)]
    edges = np.concatenate([[0], np.cumsum(sizes)])
    return order, [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]
