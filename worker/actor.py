"""The worker actor: owns one shard of the training set and runs the tasks the algorithm sends it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import numpy as np

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


@dataclass(frozen=True)
class Assignment:
    """One worker's part in one job: its shard of the training set and how to train it.

    Every call that trains carries it, so that a worker holds no job of its own: a
    warm worker kept between jobs adopts the next job's assignment, and one that Ray
    restarted (which comes back empty) takes its shard back on the call Ray retries.
    """

    key: str  # "<job id>/<placing>/<rank>": a new key means a new shard to adopt
    data: tuple  # (images, y): object-store references to the whole training set, as sparse rows
    lo: int  # this worker's slice [lo:hi] of it
    hi: int
    settings: WorkerSettings
    sizes: tuple[int, ...]
    kernel: str
    rank: int
    clients: tuple[tuple[int, int], ...] | None = None  # a federated job's clients hosted here, within the slice
    first_client: int = 0  # the global number of the first of them

    @property
    def job_id(self) -> str:
        return self.key.split("/", 1)[0]


class Period(Protocol):
    """A period of synchronous rounds, handed with the rule that applies them to the process
    that hosts every worker (the parameter server's, cluster/hosted.py)."""

    rounds: list[dict[int, Task]]  # each round's tasks, by rank

    def start(self) -> tuple[Any, int]: ...  # what the next round trains from: (weights, version)
    def apply(self, updates: list[Update]) -> None: ...  # fold a round's results in
    def after(self, previous: Any) -> Period: ...  # these rounds, from where `previous` left the rule


@dataclass
class Shard:
    """One assignment a worker process hosts: its trainer, and its training figures by epoch
    (by scoring, in a federated job): {period: [samples, loss sum, correct, busy s]}."""

    assignment: Assignment
    trainer: ShardTrainer
    delay_s: float  # a deliberately slow worker, to measure what one straggler costs each mode
    by_period: dict[int, list[float]] = field(default_factory=dict)


class Worker:
    """Per-sample SGD on the shards of the job's workers it hosts, one task (worker/tasks.py) per round.

    Created as a Ray actor holding no job: by a job for itself (local mode, where
    one process may host several of the job's workers when they share the cores),
    or kept warm between jobs on a cluster (cluster/pool.py). It adopts the shard
    of the `Assignment` each call carries. The training set arrives as object-store
    references: zero-copy, read-only views shared by every worker on the node;
    each shard keeps its slice ``[lo:hi]``. In a federated job a shard hosts the
    clients its assignment names.
    """

    def __init__(self) -> None:
        # One BLAS thread: several workers share the cores, and BLAS threads
        # fighting over them slowed small matrix work 10-17x here.
        from threadpoolctl import threadpool_limits

        import ray

        threadpool_limits(1)
        self.shards: dict[str, Shard] = {}  # by assignment key
        self.leased_to: str | None = None  # the job a warm pool lent this worker to (cluster/pool.py)
        self.idle_since = time.monotonic()
        # Ray restarts a killed worker empty and runs its pending calls again, which carry
        # their assignments; the first result after that says the worker restarted.
        self.was_restarted = ray.get_runtime_context().was_current_actor_reconstructed
        self._restart_unreported = self.was_restarted
        self._pool: tuple[Any, int] = (None, 0)  # train_many's threads, and how many

    def _adopt(self, assignment: Assignment) -> Shard:
        """The shard of `assignment`: the one this worker has, or a new one (forgetting those of
        another job or placement)."""
        shard = self.shards.get(assignment.key)
        if shard is not None:
            return shard
        import ray

        placement = assignment.key.rsplit("/", 1)[0]
        self.shards = {k: v for k, v in self.shards.items() if k.rsplit("/", 1)[0] == placement}
        images, y = ray.get(list(assignment.data))
        a, settings = assignment, assignment.settings
        trainer = ShardTrainer(
            images.rows(a.lo, a.hi),
            y[a.lo : a.hi],
            sizes=a.sizes,
            activation=settings.activation,
            lr=settings.lr,
            kernel=a.kernel,
            seed=settings.seed,
            rank=a.rank,
            batch_size=settings.batch_size,
            clients=[tuple(c) for c in a.clients] if a.clients is not None else None,
            first_client=a.first_client,
            local_epochs=settings.local_epochs,
        )
        shard = self.shards[a.key] = Shard(a, trainer, settings.straggler_delay if a.rank == 0 else 0.0)
        self.leased_to = a.job_id
        return shard

    def ready(self, assignment: Assignment) -> dict:
        """Adopt `assignment` and load its kernel; answers its shard size, node and process id."""
        import os

        import ray

        self._adopt(assignment).trainer.warm_up()
        return {"shard": assignment.hi - assignment.lo, "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def train(self, start: tuple[np.ndarray, int], task: Task, assignment: Assignment) -> Update:
        """Run `task` (worker/tasks.py) from the server's `start` (weights, version) on the
        shard of `assignment`: the one training entry point, whatever the algorithm.

        The answer depends on the arguments and the shard alone, so a call that Ray runs
        again after a restart returns exactly what the first would have; it says whether
        it is the first since the worker was restarted.
        """
        shard = self._adopt(assignment)
        return self._run(shard, start, task, self._first_since_restart())

    def train_many(
        self, start: tuple[np.ndarray, int], tasks: tuple[Task, ...], assignments: tuple[Assignment, ...], threads: int = 1
    ) -> list[Update]:
        """`train` for several of the shards this process hosts, from the same start, on
        `threads` threads: one call a round for all of them instead of one each (with 64
        workers on 2 processes the calls were most of a round's cost), and the shards trained
        side by side (the kernels release the GIL) rather than one process per CPU waiting for
        the slowest at every round's end. The results stay apart, a reference each
        (cluster/rounds.py), in the order of `tasks`, for the server to sum in rank order: a sum
        grouped by process would change with the layout, and a job placed again after a lost
        node would then not train the same bits."""
        shards = [self._adopt(assignment) for assignment in assignments]  # in this thread: _adopt edits the dict
        restarted = [self._first_since_restart()] + [0] * (len(tasks) - 1)
        starts = [start] * len(tasks)
        if threads <= 1 or len(tasks) <= 1:
            return list(map(self._run, shards, starts, tasks, restarted))
        return list(self._threads(threads).map(self._run, shards, starts, tasks, restarted))

    def train_period(self, period: Period, assignments: tuple[Assignment, ...], threads: int = 1, after: Any = None) -> Period:
        """Run `period`'s rounds one after the other, each as `train_many` runs it, and apply
        each round's results with the period's rule, here: a process that hosts every worker
        of the job needs no round trip to the parameter server between rounds. With `after`
        (the previous period as this process answered it), from where that left the rule.
        Answers the period, which carries the rule's new state and what it reported back to
        the server."""
        if after is not None:
            period = period.after(after)
        for tasks in period.rounds:
            ranks = sorted(tasks)
            period.apply(self.train_many(period.start(), tuple(tasks[r] for r in ranks), tuple(assignments[r] for r in ranks), threads))
        return period

    def _threads(self, n: int) -> Any:
        """A pool of `n` threads, kept between calls (made again when a job asks for another number)."""
        from concurrent.futures import ThreadPoolExecutor

        pool, size = self._pool
        if size != n:
            if pool is not None:
                pool.shutdown(wait=False)
            pool = ThreadPoolExecutor(n, thread_name_prefix="dtrain-train")
            self._pool = (pool, n)
        return pool

    def _first_since_restart(self) -> int:
        """1 for the first result after Ray restarted this worker (then 0)."""
        restarted, self._restart_unreported = int(self._restart_unreported), False
        return restarted

    def _run(self, shard: Shard, start: tuple[np.ndarray, int], task: Task, restarted: int) -> Update:
        weights, version = start
        if shard.delay_s:
            time.sleep(shard.delay_s)
        t0 = time.perf_counter()
        theta, samples, loss, correct = task.run(shard.trainer, weights)
        busy = time.perf_counter() - t0
        figures = shard.by_period.setdefault(task.period, [0, 0.0, 0, 0.0])
        for i, value in enumerate((samples, loss, correct, busy)):
            figures[i] += value
        return Update(theta, samples, loss, correct, restarted, version, shard.assignment.rank, busy)

    def forget_after(self, periods_done: int) -> None:
        """Drop the figures for the periods after the first `periods_done`: the job went back
        to its checkpoint and trains them again, so they would count twice."""
        for shard in self.shards.values():
            shard.by_period = {period: f for period, f in shard.by_period.items() if period <= periods_done}

    def lease(self, job_id: str) -> dict:
        """Note that the warm pool lent this worker to `job_id` (so that a restarted registry
        reads it as taken); answers `state()`. A restart before this was between jobs: not the new job's."""
        self.leased_to = job_id
        self.was_restarted = self._restart_unreported = False
        return self.state()

    def release(self) -> dict:
        """Let go of the job's shards (and the references that keep its data in the object store);
        answers `state()`."""
        self.shards, self.leased_to = {}, None
        self.idle_since = time.monotonic()
        import gc

        gc.collect()  # the shards' arrays go now, before the pool reads this process's memory
        # What survives a full collection between jobs lasts (Ray, NumPy, the loaded kernel).
        # Frozen, it is never scanned again: the next release collects only the next job's
        # objects instead of numba's whole object graph (0.13 s at the end of every warm job).
        gc.freeze()
        return self.state()

    def state(self) -> dict:
        """For the warm pool: the job this worker serves (None when idle), idle seconds, resident MiB, pid."""
        import os

        return {
            "job": self.leased_to,
            "idle_s": 0.0 if self.leased_to else time.monotonic() - self.idle_since,
            "pid": os.getpid(),
            "rss_mib": resident_mib(),
            "restarted": self.was_restarted,
        }

    def stats(self, assignment: Assignment, periods: int | None = None) -> dict:
        """Samples trained and time spent training on `assignment`'s shard, in all and by epoch, for the
        job report: in the job's first `periods` scored periods (all if None; a job that reached its
        --until-accuracy target may have started training the next)."""
        import os

        by_period = {p: f for p, f in self._adopt(assignment).by_period.items() if periods is None or p <= periods}
        samples = int(sum(f[0] for f in by_period.values()))
        busy_s = sum(f[3] for f in by_period.values())
        return {
            "rank": assignment.rank,
            "pid": os.getpid(),
            "shard": assignment.hi - assignment.lo,
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
                for period, (n, loss, correct, busy) in sorted(by_period.items())
            ],
        }


def resident_mib() -> float:
    """This process's resident memory in MiB (Linux's /proc; 0 where there is none)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
