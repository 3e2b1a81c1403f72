"""The job's worker actors: starting them in their placement-group bundles, and waiting until they are up."""

from __future__ import annotations

from typing import Any

from dtrain.cluster import placement
from dtrain.cluster.outcome import JobFailed
from dtrain.cluster.training import Job
from dtrain.worker.actor import Worker, WorkerSettings

#: Times Ray restarts a killed worker (in its place, with its shard) before the job gives up on it.
WORKER_RESTARTS = 10

#: How long workers may take to start before the job fails instead of hanging.
PLACEMENT_TIMEOUT_S = 120.0


def start_workers(job: Job, group: Any, share: float, data_refs: tuple, kernel: str) -> list:
    """One worker actor per shard, each in its bundle of the placement group."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    # One actor class for all the workers: Ray exports (pickles and hashes) a class once
    # per ray.remote(), and each worker process would fetch its own copy.
    worker_actor = ray.remote(Worker)
    settings, layout = WorkerSettings.of(job.spec), job.layout
    with placement.native_stderr_muted():
        return [
            worker_actor.options(
                num_cpus=share,
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=rank),
                # A killed worker is restarted with its arguments, so it takes its shard back,
                # and its pending task runs again: a task's result depends on its arguments
                # alone, so the redone round gives exactly the result the lost one would have.
                max_restarts=WORKER_RESTARTS,
                max_task_retries=-1,
            )
            .remote(
                *data_refs, lo, hi, settings=settings, sizes=job.sizes, kernel=kernel, rank=rank,
                clients=layout.clients[rank], first_client=layout.first_client[rank],
            )
            for rank, (lo, hi) in enumerate(layout.workers)
        ]


def wait_until_ready(workers: list, share: float) -> dict[str, Any]:
    """Wait for every worker to be up with its kernel loaded; fail rather than hang.

    Returns {"nodes": workers on each node (by node id), "node_of": each worker's node id,
    "pids": each worker's process id}, lists in rank order.
    """
    import ray

    ready = [w.ready.remote() for w in workers]
    _, pending = ray.wait(ready, num_returns=len(ready), timeout=PLACEMENT_TIMEOUT_S)
    if pending:
        raise JobFailed(
            f"{len(pending)} of {len(workers)} workers could not be started within {PLACEMENT_TIMEOUT_S:.0f} s "
            f"(each asks for {share:g} CPU; the cluster has {placement.total_cpus():g})"
        )
    answers = ray.get(ready)
    nodes: dict[str, int] = {}
    for answer in answers:
        nodes[answer["node"]] = nodes.get(answer["node"], 0) + 1
    return {"nodes": nodes, "node_of": [a["node"] for a in answers], "pids": [a["pid"] for a in answers]}
