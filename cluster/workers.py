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


def packable(spec: Any) -> bool:
    """Whether one process may host several of the job's workers when they share the cores: not
    with a straggler's delay (it would hold up the others in its process), nor in asynchronous
    training (whose staleness depends on the workers running side by side)."""
    return not spec.straggler_delay and spec.algorithm.name != "async"


#: The most threads one worker process trains its workers on: past a few, its one Ray core
#: worker (sending every result) and the GIL (the Python around each task) would serialise
#: what separate processes do side by side.
MAX_THREADS = 4


def hosts(workers: int, share: float) -> list[list[int]]:
    """The ranks each worker process hosts: with a CPU or more each, a process per worker;
    when they share the cores, one process per MAX_THREADS CPUs their shares add up to, which
    trains its workers side by side on a thread per CPU (rounds.threads). Ranks are dealt
    round-robin, so that the processes' shards are even."""
    if share >= 1:
        return [[rank] for rank in range(workers)]
    cpus = max(1, round(workers * share))
    n = -(-cpus // MAX_THREADS)
    return [list(range(p, workers, n)) for p in range(n)]


def process_ranks(workers: int, share: float, pack: bool) -> list[list[int]]:
    """The ranks each worker process hosts: `hosts` when packing, else one process per worker."""
    return hosts(workers, share) if pack else [[rank] for rank in range(workers)]


class OwnWorkers:
    """A job's own workers: started in its placement group, killed when it is done with them.

    With `pack` (local mode), workers that share the cores share a process too (`hosts`),
    which trains them on a thread per CPU: each process hosts several shards (every call
    carries its assignment). That spares the start-up of a process per worker (~0.5 s each)
    and changes no result.
    """

    def __init__(self, pack: bool = False):
        self.pack = pack

    def _hosts(self, workers: int, share: float) -> list[list[int]]:
        return process_ranks(workers, share, self.pack)

    def bundles(self, workers: int, share: float) -> list[float]:
        """The CPUs of each bundle of the job's placement group: one bundle per process."""
        return [round(share * len(ranks), 4) for ranks in self._hosts(workers, share)]

    def start(self, group: Any, workers: int, share: float) -> list:
        """One worker actor per bundle; returns the actor hosting each rank, in rank order."""
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        # One actor class for all the workers: Ray exports (pickles and hashes) a class once
        # per ray.remote(), and each worker process would fetch its own copy.
        worker_actor = ray.remote(Worker)
        by_rank: list[Any] = [None] * workers
        for index, ranks in enumerate(self._hosts(workers, share)):
            actor = worker_actor.options(
                num_cpus=group.bundle_specs[index]["CPU"],
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index),
                **RESTARTABLE,
            ).remote()
            for rank in ranks:
                by_rank[rank] = actor
        return by_rank

    def finish(self, workers: list) -> None:
        import ray

        for worker in {id(w): w for w in workers}.values():
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
