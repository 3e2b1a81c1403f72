"""Shared fixtures: real MNIST once per session, one local Ray cluster per session."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace

import pytest

from dtrain.data.mnist import Dataset, load_dataset


@pytest.fixture(scope="session", autouse=True)
def job_storage(tmp_path_factory: pytest.TempPathFactory):
    """The tests keep to themselves: jobs in a temporary storage directory (never the user's
    ~/.dtrain), and a private Ray temp dir, so a cluster that `ray start` left running on
    this machine is never joined by a test that means local mode.

    Set in the environment, so CLI subprocesses inherit them too.
    """
    root = tmp_path_factory.mktemp("storage")
    ray_tmp = tempfile.mkdtemp(prefix="dtr", dir="/tmp")  # short: Ray's socket paths live under it
    patch = pytest.MonkeyPatch()
    patch.setenv("DTRAIN_STORAGE", str(root))
    patch.setenv("RAY_TMPDIR", ray_tmp)
    patch.delenv("RAY_ADDRESS", raising=False)
    yield root
    patch.undo()
    shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def mnist() -> Dataset:
    return load_dataset()


@pytest.fixture(scope="session")
def small_mnist(mnist: Dataset) -> Dataset:
    """The first 4000 training images (the test set whole): seconds to train."""
    return replace(mnist, x_train=mnist.x_train[:4000], y_train=mnist.y_train[:4000])


@pytest.fixture(scope="session")
def ray_cluster():
    """A real, embedded single-node Ray cluster, started once (~4 s) for the whole session."""
    from dtrain.cluster.connect import connect_local  # first: it sets Ray's environment

    import ray

    connect_local()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def two_node_cluster(tmp_path_factory):
    """A real two-node Ray cluster (two raylets on this machine), started once (~8 s), stopped at the end."""
    from clusters import TwoNodes

    nodes = TwoNodes(tmp_path_factory.mktemp("cluster-storage"))
    yield nodes
    nodes.stop()
