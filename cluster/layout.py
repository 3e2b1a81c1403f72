"""Where each worker's data lies in the training set, and which federated clients it hosts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dtrain.data.mnist import Dataset
from dtrain.data.partition import even_bounds, partition
from dtrain.model.sparse import SparseRows
from dtrain.spec import JobSpec


@dataclass(frozen=True)
class Layout:
    """Where each worker's data lies in the (possibly reordered) training set, and in a
    federated job the clients each worker hosts."""

    order: np.ndarray | None  # the training set's new order, None to keep it
    workers: list[tuple[int, int]]  # each worker's [lo, hi)
    clients: list[list[tuple[int, int]]]  # per worker: its clients' bounds within its slice
    first_client: list[int]  # per worker: the number of its first client

    @classmethod
    def for_job(cls, spec: JobSpec, y: np.ndarray) -> Layout:
        units = spec.algorithm.clients if spec.federated else spec.workers
        order, unit_bounds = partition(y, units, spec.split, spec.seed)
        if not spec.federated:
            return cls(order, unit_bounds, [[] for _ in unit_bounds], [0] * len(unit_bounds))
        hosted = even_bounds(units, spec.workers)
        workers = [(unit_bounds[a][0], unit_bounds[b - 1][1]) for a, b in hosted]
        clients = [[(lo - w_lo, hi - w_lo) for lo, hi in unit_bounds[a:b]] for (a, b), (w_lo, _) in zip(hosted, workers)]
        return cls(order, workers, clients, [a for a, _ in hosted])

    def owner(self, client: int) -> int:
        """The worker hosting `client`."""
        return int(np.searchsorted(self.first_client, client, side="right")) - 1

    def largest_shard(self) -> int:
        return max(hi - lo for lo, hi in self.workers)


def training_rows(dataset: Dataset, layout: Layout) -> tuple[SparseRows, np.ndarray]:
    """The training images as sparse rows and their labels, in the layout's order."""
    x_train, y_train = dataset.x_train, dataset.y_train
    if layout.order is not None:
        x_train, y_train = x_train[layout.order], y_train[layout.order]
    return SparseRows.from_dense(x_train), y_train
