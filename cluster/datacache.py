"""Data a job runner keeps for the jobs after it: datasets loaded, and their training rows in the object store.

A job's runner loads its dataset (~0.2 s), converts the training images to sparse
rows in the job's layout order (0.2-0.5 s) and puts them into the object store.
On a cluster the registry gives a runner whose job has ended the next job
(runners.py); this cache is how that job skips all three. A local job has a cache
of its own, which ends with it.

A dataset is known by its directory and its files' names, sizes and modification
times, so one whose files changed is loaded again. The last KEPT datasets and the
rows of the last KEPT layouts are kept; the rows' objects are owned by the runner
process, so the object store frees them when it ends.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from dtrain.cluster.layout import Layout, training_rows
from dtrain.data.mnist import SHIPPED_DIR, Dataset, load_dataset

#: How many datasets, and how many layouts' training rows, a runner keeps.
KEPT = 2


def dataset_key(data_dir: str | Path | None) -> tuple:
    """What identifies a dataset's content without reading it: its directory's files and their stats."""
    directory = Path(data_dir).expanduser().resolve() if data_dir is not None else SHIPPED_DIR
    try:
        files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir() if p.is_file())
    except OSError:  # no such directory: load_dataset says so
        files = []
    return (str(directory), tuple(files))


def layout_key(layout: Layout) -> str:
    return "keep" if layout.order is None else hashlib.sha1(layout.order.tobytes()).hexdigest()


class DataCache:
    """Datasets by content, and the object references of training rows by dataset and layout."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.datasets: OrderedDict[tuple, Dataset] = OrderedDict()
        self.rows: OrderedDict[tuple, tuple[Any, ...]] = OrderedDict()

    def dataset(self, data_dir: str | Path | None) -> Dataset:
        """The dataset in `data_dir` (None: the shipped MNIST), loaded once while its files stay the same."""
        key = dataset_key(data_dir)
        with self.lock:
            if key in self.datasets:
                self.datasets.move_to_end(key)
                return self.datasets[key]
        dataset = load_dataset(data_dir)
        with self.lock:
            self.datasets[key] = dataset
            while len(self.datasets) > KEPT:
                self.datasets.popitem(last=False)
        return dataset

    def training_set(self, dataset: Dataset, layout: Layout) -> tuple[tuple | None, tuple | None]:
        """(key, arrays) for `put`: the training rows in the layout's order, or None for them when
        their objects are already in the store. The key is None for a dataset this cache did not load."""
        with self.lock:
            loaded = next((k for k, d in self.datasets.items() if d is dataset), None)
            key = None if loaded is None else (loaded, layout_key(layout))
            if key in self.rows:
                return key, None
        return key, training_rows(dataset, layout)

    def put(self, key: tuple | None, arrays: tuple | None) -> tuple[Any, ...]:
        """The training rows' object references: those kept under `key`, else `arrays` put now (and kept)."""
        import ray

        with self.lock:
            if arrays is None:
                self.rows.move_to_end(key)
                return self.rows[key]
        refs = tuple(ray.put(a) for a in arrays)
        if key is not None:
            with self.lock:
                self.rows[key] = refs
                while len(self.rows) > KEPT:
                    self.rows.popitem(last=False)
        return refs
