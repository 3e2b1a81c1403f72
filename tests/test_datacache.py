"""What a job runner keeps for the jobs after it (cluster/datacache.py): datasets by content,
training rows in the real object store by dataset and layout."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace

import numpy as np

from dtrain.cluster.datacache import DataCache
from dtrain.cluster.layout import Layout, training_rows
from dtrain.data.mnist import SHIPPED_DIR
from dtrain.spec import JobSpec


def test_a_dataset_is_loaded_once_and_again_when_its_files_change(tmp_path):
    directory = tmp_path / "digits"
    shutil.copytree(SHIPPED_DIR, directory, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    cache = DataCache()
    first = cache.dataset(directory)
    assert cache.dataset(directory) is first and cache.dataset(str(directory) + "/") is first

    labels = directory / "t10k-labels-idx1-ubyte.gz"
    stat = labels.stat()
    os.utime(labels, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # as an edit or a new copy would
    again = cache.dataset(directory)
    assert again is not first and np.array_equal(again.y_test, first.y_test)


def test_training_rows_are_put_once_per_dataset_and_layout(ray_cluster):
    ray = ray_cluster
    cache = DataCache()
    dataset = cache.dataset(None)
    iid, skewed = (Layout.for_job(JobSpec(workers=4, split=split), dataset.y_train) for split in ("iid", "label-skew"))

    key, arrays = cache.training_set(dataset, iid)
    refs = cache.put(key, arrays)
    rows, y = training_rows(dataset, iid)
    stored = ray.get(refs[0]), ray.get(refs[-1])
    assert np.array_equal(stored[0].indices, rows.indices) and np.array_equal(stored[1], y)

    assert cache.training_set(dataset, iid) == (key, None)  # nothing to convert: it is in the store
    assert cache.put(*cache.training_set(dataset, iid)) == refs
    other = cache.put(*cache.training_set(dataset, skewed))
    assert other != refs and not np.array_equal(ray.get(other[-1]), y)

    # A dataset the cache did not load (a test's own slice, say) is converted and put, not kept.
    sliced = replace(dataset, x_train=dataset.x_train[:100], y_train=dataset.y_train[:100])
    key, arrays = cache.training_set(sliced, Layout.for_job(JobSpec(workers=2), sliced.y_train))
    assert key is None and len(arrays[-1]) == 100
