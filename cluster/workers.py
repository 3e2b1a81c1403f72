"""The job's worker actors: starting them in their placement-group bundles, and waiting until they are up."""

from __future__ import annotations

from typing import Any

from dtrain.cluster import placement
from dtrain.cluster.outcome import JobFailed
from dtrain.cluster.training import Job
from dtrain.worker.actor import Assignment, Worker, WorkerSettings

#: Times Ray restarts a killed worker (in its place, with its shard) before the job gives up on it.
WORKER_RESTARTS = 10

#: A killed worker is restarted (empty) and its pending call runs again: the call carries
#: its assignment, so it takes its shard back, and a task's result depends on its
#: arguments alone, so the redone round gives exactly what the lost one would have.
RESTARTABLE = {"max_restarts": WORKER_RESTARTS, "max_task_retries": -1}

#: How long workers may take to start before the job fails instead of hanging.
PLACEMENT_TIMEOUT_S = 120.0


def assignments(job: Job, data_refs: tuple, kernel: str, placing: int) -> list[Assignment]:
    """Each worker's part of the job, in rank order: its slice of the training set (and its
    federated clients), and how to train it. `placing` counts the job's placements, so that
    workers placed again after a lost node take their (new) shards up."""
    settings, layout = WorkerSettings.of(job.spec), job.layout
    return [
        Assignment(
            key=f"{job.job_id}/{placing}/{rank}", data=data_refs, lo=lo, hi=hi, settings=settings, sizes=job.sizes,
            kernel=kernel, rank=rank, first_client=layout.first_client[rank],
            clients=tuple(map(tuple, layout.clients[rank])),
        )
        for rank, (lo, hi) in enumerate(layout.workers)
    ]


def start_workers(group: Any, share: float) -> list:
    """One new worker actor per bundle of the placement group, for this job alone (local mode)."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    # One actor class for all the workers: Ray exports (pickles and hashes) a class once
    # per ray.remote(), and each worker process would fetch its own copy.
    worker_actor = ray.remote(Worker)
    return [
        worker_actor.options(
            num_cpus=share,
            scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=rank),
            **RESTARTABLE,
        ).remote()
        for rank in range(len(group.bundle_specs))
    ]


class OwnWorkers:
    """A job's own workers: started in its placement group's bundles, killed when it is done with them."""

    def start(self, group: Any, share: float) -> list:
        return start_workers(group, share)

    def finish(self, workers: list) -> None:
        import ray

        for worker in workers:
            ray.kill(worker)


def wait_until_ready(workers: list, assigned: list[Assignment], share: float) -> dict[str, Any]:
    """Wait for every worker to be up, its shard adopted and its kernel loaded; fail rather than hang.

    Returns {"nodes": workers on each node (by node id), "node_of": each worker's node id,
    "pids": each worker's process id}, lists in rank order.
    """
    import ray

    ready = [w.ready.remote(a) for w, a in zip(workers, assigned)]
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
