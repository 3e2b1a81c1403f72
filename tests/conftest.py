"""Shared fixtures: real MNIST once per session, one local Ray cluster per session."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dtrain.data.mnist import Dataset, load_dataset


@pytest.fixture(scope="session", autouse=True)
def job_storage(tmp_path_factory: pytest.TempPathFactory):
    """Jobs the tests run are kept in a temporary storage directory, never in the user's ~/.dtrain.

    Set in the environment, so CLI subprocesses inherit it too.
    """
    root = tmp_path_factory.mktemp("storage")
    patch = pytest.MonkeyPatch()
    patch.setenv("DTRAIN_STORAGE", str(root))
    yield root
    patch.undo()


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
