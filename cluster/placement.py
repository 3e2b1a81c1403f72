"""Where a job's workers run: CPUs per worker, and reserving them all at once.

A job's workers are reserved together in one placement group (all or nothing),
so two jobs never each hold half of what they need and wait on each other
forever; its bundles are spread over the nodes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dtrain.errors import UserError

#: Pins an actor to the head node, next to the storage directory (it exists in local mode too).
ON_HEAD = {"node:__internal_head__": 0.001}

#: The Ray namespace of dtrain's named actors (the registry, the runners, the API, the warm workers).
NAMESPACE = "dtrain"

#: Workers per CPU at the most: each is a process of ~130 MiB, and thousands of
#: them on a laptop would swamp it long before they trained anything.
MAX_WORKERS_PER_CPU = 32



def head_service(cls: type, name: str, **options: Any) -> Any:
    """`cls` as one of dtrain's services on a cluster (the registry, a job's runner, the HTTP
    API): an actor called `name` in dtrain's namespace, detached (it outlives the command that
    made it), on the head node next to the jobs' files, asking for no CPU; `options` add the
    service's own (restarts, concurrency, get_if_exists). Call `.remote(...)` to create it."""
    import ray

    return ray.remote(cls).options(
        name=name, namespace=NAMESPACE, lifetime="detached", num_cpus=0, resources=ON_HEAD, **options
    )

def node_cpus() -> list[float]:
    """CPUs of each alive node of the connected cluster."""
    import ray

    return [float(n["Resources"].get("CPU", 0.0)) for n in ray.nodes() if n["Alive"]]


def local_cpus() -> float:
    """CPUs an embedded Ray on this machine will have (those this process may run on)."""
    return float(len(os.sched_getaffinity(0)))


def total_cpus() -> float:
    return sum(node_cpus())


def cpus_per_worker(workers: int, available: float) -> float:
    """1 CPU per worker where the cluster has enough, otherwise an equal share of what it has."""
    if available <= 0:
        raise UserError("the Ray cluster has no CPUs to run workers on")
    if workers > MAX_WORKERS_PER_CPU * available:
        raise UserError(
            f"{workers} workers on {available:g} CPUs; expected at most "
            f"{int(MAX_WORKERS_PER_CPU * available)} ({MAX_WORKERS_PER_CPU} per CPU)",
            "workers",
        )
    # Rounded down: shares that add up to a hair over the total would leave a worker unplaced.
    return min(1.0, math.floor(available / workers * 10_000) / 10_000)


def workers_that_fit(share: float, nodes: list[float]) -> int:
    """How many workers of `share` CPUs the nodes hold, each node filled separately."""
    return sum(math.floor(cpus / share + 1e-9) for cpus in nodes)


def worker_cpus(workers: int, requested: float | None, nodes: list[float]) -> float:
    """The CPUs each worker asks for: `requested` if the cluster can ever hold it, else fitted.

    Raises UserError, naming what was asked and what the cluster has, for a
    request no placement could satisfy (so the job is refused at submit
    instead of waiting for ever).
    """
    if requested is None:
        return cpus_per_worker(workers, sum(nodes))
    if workers_that_fit(requested, nodes) < workers:
        shape = " + ".join(f"{c:g}" for c in nodes) or "none"
        raise UserError(
            f"{workers} workers x {requested:g} CPU cannot be placed: the cluster has "
            f"{sum(nodes):g} CPUs on {len(nodes)} node{'s' if len(nodes) != 1 else ''} ({shape})",
            "cpus_per_worker",
        )
    return requested


@contextmanager
def reserved(bundles: list[float]) -> Iterator[Any]:
    """A placement group of bundles of these many CPUs (one per worker process), spread over the nodes; removed at exit."""
    from ray.util.placement_group import placement_group, remove_placement_group

    group = placement_group([{"CPU": cpus} for cpus in bundles], strategy="SPREAD")
    try:
        yield group
    finally:
        remove_placement_group(group)


def bundle_nodes(group: Any) -> list[str]:
    """The node id of each bundle of a placed group, in bundle order."""
    import ray

    where = ray.util.placement_group_table(group)["bundles_to_node_id"]
    return [where[i] for i in range(len(group.bundle_specs))]


def wait_for(
    group: Any,
    should_stop: Callable[[], bool],
    on_wait: Callable[[float], None],
    poll_s: float = 0.5,
    patience_s: float = 2.0,
) -> bool:
    """Wait until the group is placed; False if the job was stopped first.

    Once it has waited `patience_s` (placing a group normally takes well under
    a second), `on_wait(seconds waited)` is called, once, so the job can say why
    it is still PENDING.
    """
    t0 = time.monotonic()
    said = False
    while not group.wait(timeout_seconds=poll_s):
        if should_stop():
            return False
        waited = time.monotonic() - t0
        if waited >= patience_s and not said:
            on_wait(waited)
            said = True
    return True


@contextmanager
def native_stderr_muted() -> Iterator[None]:
    """Descriptor 2 goes nowhere inside: for Ray's native warning that a restartable actor
    "has constructor arguments in the object store" (they might be freed before a restart).
    The runner keeps those arguments alive for the whole job, so the warning, one line per
    worker on the user's terminal in local mode, would only mislead."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
