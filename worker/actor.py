"""The worker actor: owns one shard of the training set and runs the tasks the algorithm sends it."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from dtrain.model.sparse import SparseRows
from dtrain.worker.shard import ShardTrainer
from dtrain.worker.tasks import Task, Update


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs of the job spec, as plain values: worker processes then never
    import pydantic and the spec's models, 0.06-0.11 s of CPU each (python -X importtime),
    paid by every worker process while 8 of them start on 2 cores."""

    activation: str
    lr: float
    seed: int
    batch_size: int
    local_epochs: int
    straggler_delay: float

    @classmethod
    def of(cls, spec: Any) -> WorkerSettings:
        """The settings of a JobSpec: its own fields, or its algorithm's (`local_epochs`: 1 where it has none)."""
        return cls(**{f.name: getattr(spec, f.name, getattr(spec.algorithm, f.name, 1)) for f in fields(cls)})


class Worker:
    """One shard, per-sample SGD on it, one task (worker/tasks.py) per round.

    Created as a Ray actor by the job runner. ``images`` (the training set as
    sparse rows) and ``y`` arrive as the whole set, resolved from object-store
    references: zero-copy, read-only views shared by every worker on the node;
    this worker keeps the slice ``[lo:hi]``. In a federated job it hosts the
    clients ``clients`` (bounds within that slice), numbered from ``first_client``.
    """

    def __init__(
        self,
        images: SparseRows,
        y: np.ndarray,
        lo: int,
        hi: int,
        *,
        settings: WorkerSettings,
        sizes: tuple[int, ...],
        kernel: str,
        rank: int,
        clients: list[tuple[int, int]] | None = None,
        first_client: int = 0,
    ):
        # One BLAS thread: several workers share the cores, and BLAS threads
        # fighting over them slowed small matrix work 10-17x here.
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        self.rank = rank
        self.trainer = ShardTrainer(
            images.rows(lo, hi),
            y[lo:hi],
            sizes=sizes,
            activation=settings.activation,
            lr=settings.lr,
            kernel=kernel,
            seed=settings.seed,
            rank=rank,
            batch_size=settings.batch_size,
            clients=clients,
            first_client=first_client,
            local_epochs=settings.local_epochs,
        )
        # A deliberately slow worker, to measure what one straggler costs each mode.
        self.delay_s = settings.straggler_delay if rank == 0 else 0.0
        # This worker's own training figures by epoch (by scoring, in a federated job):
        # {period: [samples, loss sum, correct, busy s]}, since the worker (re)started.
        self.by_period: dict[int, list[float]] = {}
        # Ray restarts a killed worker with the same arguments (so it takes its shard
        # back) and runs its pending call again; the first result after that says so.
        import ray

        self.was_restarted = ray.get_runtime_context().was_current_actor_reconstructed
        self._restart_unreported = self.was_restarted

    def ready(self) -> dict:
        """Answers once the actor is up (and its kernel loaded): its shard size, node and process id."""
        import os

        import ray

        self.trainer.warm_up()
        return {"shard": len(self.trainer.y), "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def train(self, start: tuple[np.ndarray, int], task: Task) -> Update:
        """Run `task` (worker/tasks.py) from the server's `start` (weights, version): the one
        training entry point, whatever the algorithm.

        The answer depends on the arguments and the shard alone, so a call that Ray runs
        again after a restart returns exactly what the first would have; it says whether
        it is the first since the worker was restarted.
        """
        weights, version = start
        if self.delay_s:
            time.sleep(self.delay_s)
        t0 = time.perf_counter()
        theta, samples, loss, correct = task.run(self.trainer, weights)
        busy = time.perf_counter() - t0
        figures = self.by_period.setdefault(task.period, [0, 0.0, 0, 0.0])
        for i, value in enumerate((samples, loss, correct, busy)):
            figures[i] += value
        restarted, self._restart_unreported = int(self._restart_unreported), False
        return Update(theta, samples, loss, correct, restarted, version, self.rank, busy)

    def forget_after(self, periods_done: int) -> None:
        """Drop this worker's figures for the periods after the first `periods_done`: the job
        went back to its checkpoint and trains them again, so they would count twice."""
        self.by_period = {period: f for period, f in self.by_period.items() if period <= periods_done}

    def stats(self) -> dict:
        """Samples trained and time spent training, in all and by epoch, for the job report."""
        samples = int(sum(f[0] for f in self.by_period.values()))
        busy_s = sum(f[3] for f in self.by_period.values())
        return {
            "rank": self.rank,
            "shard": len(self.trainer.y),
            "samples": samples,
            "busy_s": round(busy_s, 4),
            "samples_per_s": samples / busy_s if busy_s else 0.0,
            "restarted": self.was_restarted,
            "by_epoch": [
                {
                    "epoch": period,
                    "samples": int(n),
                    "train_loss": loss / n if n else None,
                    "train_accuracy": correct / n if n else None,
                    "samples_per_s": n / busy if busy else None,
                }
                for period, (n, loss, correct, busy) in sorted(self.by_period.items())
            ],
        }
