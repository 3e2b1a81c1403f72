"""The recovery loop around an algorithm's driver loop, and watching the workers' nodes.

`train_periods` rewinds the parameter server to the job's last scored period and
lets the algorithm drive from there; when the server, a worker or a reducer is
lost for good, it goes back to that checkpoint and drives again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dtrain.cluster.algorithms import Algorithm, RoundPlan, Run
from dtrain.cluster.layout import Layout
from dtrain.cluster.outcome import JobCancelled, JobFailed, OnEvent, ServerRestarted, WorkersLost
from dtrain.cluster.reduce import Flat, Tree
from dtrain.cluster.scoring import RECOVERY_TIMEOUT_S, Scorer
from dtrain.files import read_jsonl
from dtrain.data.mnist import Dataset
from dtrain.model.evaluate import Evaluation, scale_pixels
from dtrain.spec import JobSpec

#: Times a job goes back to its last checkpoint (after losing its server, or a worker for good) before it fails.
MAX_RECOVERIES = 5

#: How long after a node with workers is lost the job waits for Ray to restart them before placing them again.
LOST_NODE_GRACE_S = 10.0


class NodeWatch:
    """Waits for an epoch's results while watching the nodes the workers were placed on."""

    def __init__(self, nodes: set[str], stop: Callable[[], bool], grace_s: float | None = None):
        self.nodes = nodes
        self.stop = stop
        self.grace_s = LOST_NODE_GRACE_S if grace_s is None else grace_s

    def wait(self, ref: Any, epochs_done: int) -> dict:
        """ray.get(ref), unless a node of the workers is gone and the epoch does not end within
        the grace period (Ray restarts a lost worker where there is room): then WorkersLost."""
        import ray

        lost_since = None
        while True:
            ready, _ = ray.wait([ref], timeout=1.0)
            if ready:
                return ray.get(ref)
            if self.stop():
                raise JobCancelled(f"stopped after {epochs_done} epochs")
            alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
            gone = self.nodes - alive
            if not gone:
                lost_since = None
                continue
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since >= self.grace_s:
                raise WorkersLost(
                    f"node {', '.join(n[:8] for n in sorted(gone))} was lost with some of the workers; "
                    "placing them again on the nodes left",
                    epochs_done,
                )


@dataclass
class Job:
    """A prepared job: what it trains, how, where its files go, and how it reports."""

    spec: JobSpec
    algorithm: Algorithm
    plan: RoundPlan
    layout: Layout
    dataset: Dataset
    sizes: tuple[int, ...]
    run_dir: Path
    emit: OnEvent
    stop: Callable[[], bool]
    t_start: float
    job_id: str


def train_periods(
    job: Job, server: Any, workers: list, assigned: list, reduction: Flat | Tree | None = None,
    await_totals: Callable[[Any, int], dict] | None = None, share: float = 1.0,
) -> tuple[list[dict[str, Any]], np.ndarray, Evaluation]:
    """Run the periods from the job's last scored one, going back to it if the server or a worker is lost.

    `await_totals(ref, periods_done)` waits for a period's training totals (default: ray.get;
    run_job's raises WorkersLost when a node with workers on it is gone).
    `share` is each worker's CPUs (a process hosting several trains them on a thread per CPU).

    Returns the per-period history, and the last scored model with its evaluation
    (with --until-accuracy, the first that reached the target).
    """
    import ray
    from ray.exceptions import ActorUnschedulableError, RayActorError, RayTaskError

    x_test = scale_pixels(job.dataset.x_test)  # once, not at every period's scoring
    history = read_jsonl(job.run_dir / "metrics.jsonl")  # a resumed job's periods so far
    for attempt in range(MAX_RECOVERIES + 1):
        try:
            scorer = Scorer(job.spec, job.plan, job.sizes, x_test, job.dataset.y_test, job.run_dir, job.emit, history,
                            await_totals or (lambda ref, done: ray.get(ref)))
            # The server starts empty, and so does one Ray restarted: it takes the job from its
            # first version, and the rewind from there to the last checkpoint.
            server.configure.remote(job.sizes, seed=job.spec.seed, rule=job.algorithm.rule(job.plan),
                                    checkpoints=str(job.run_dir / "checkpoints"))
            if not scorer.rewind(server, job.t_start):
                if attempt:  # the workers trained past the checkpoint, and train that again now
                    ray.get([worker.forget_after.remote(scorer.done) for worker in workers], timeout=RECOVERY_TIMEOUT_S)
                run = Run(job.spec, job.plan, job.layout, server, workers, scorer, job.stop, reduction or Flat(), assigned,
                          share)
                job.algorithm.drive(run)
            assert scorer.last is not None
            return history, *scorer.last
        except (RayActorError, RayTaskError, ActorUnschedulableError) as e:
            # A task's error starts with Ray's coloured task header; what happened is its cause.
            lost = e.cause if isinstance(e, RayTaskError) else e
            if isinstance(lost, ActorUnschedulableError):
                # A warm worker is pinned to its node (cluster/pool.py): Ray cannot restart it
                # elsewhere when the node is lost, so the job places its workers again.
                raise WorkersLost(
                    "a node was lost with some of the workers; placing them again on the nodes left", len(history)
                ) from None
            # Only a lost actor (the server, or a worker or reducer for good) is worth a rewind, and
            # a call that reached the server Ray restarted in its place; an error raised by the code
            # itself would be raised again.
            if isinstance(e, RayTaskError) and not isinstance(e.cause, (RayActorError, ServerRestarted)):
                raise
            reason = str(lost).strip().splitlines()[0] if str(lost).strip() else type(lost).__name__
            if attempt == MAX_RECOVERIES:
                raise JobFailed(f"lost its parameter server or a worker {MAX_RECOVERIES + 1} times; last: {reason}") from None
            job.emit("recovering", {"epochs_done": len(history), "reason": reason})
    raise AssertionError("unreachable")
