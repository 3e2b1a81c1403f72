"""What every training algorithm provides, and what its driver loop is given.

An algorithm (one module each in this package, registered in __init__.py) owns:
its schedule (`schedule`: rounds and server momentum per scored period), what it
asks a worker to do (the tasks of worker/tasks.py its loop sends), its
server-side update rule (`rule`: run inside the parameter server), and its driver
loop (`drive`). The runner (cluster/runner.py) prepares the data, places the
server and the workers, and calls `drive` inside its recovery loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from dtrain.cluster.reduce import Flat, Tree, reduction_for
from dtrain.model.kernels import warm_up
from dtrain.spec import JobSpec

if TYPE_CHECKING:
    from dtrain.cluster.layout import Layout
    from dtrain.cluster.parameter_server import Rule
    from dtrain.cluster.scoring import Scorer
    from dtrain.worker.tasks import Task


@dataclass(frozen=True)
class RoundPlan:
    """Rounds and server momentum for each scored period (an epoch, or --eval-every
    federated rounds), fixed before the job starts."""

    rounds: list[int]
    momenta: list[float]

    def first_round(self, period: int) -> int:
        """Rounds run before `period`."""
        return sum(self.rounds[:period])


@dataclass
class Run:
    """What a driver loop works with: the job's placed actors and its scorer."""

    spec: JobSpec
    plan: RoundPlan
    layout: Layout
    server: Any  # the ParameterServer actor
    workers: list  # the Worker actors, in rank order
    scorer: Scorer  # scores each period and says when the job is done
    stop: Callable[[], bool]  # polled each period: True to cancel the job
    reduction: Flat | Tree  # how a round's results reach the server
    assignments: list  # each worker's Assignment (worker/actor.py), in rank order

    def train(self, rank: int, start: Any, task: Task) -> Any:
        """Worker `rank` runs `task` from `start` (a reference to the server's weights): its result's reference."""
        return self.workers[rank].train.remote(start, task, self.assignments[rank])

    def train_round(self, start: Any, tasks: dict[int, Task], sum_in_process: bool) -> dict[int, Any]:
        """Every worker of a round runs its task from `start`: result references by rank, for
        `reduction.apply_round`. With `sum_in_process` and a flat reduction, workers that share a
        process (packed, cluster/workers.py) train in one call (Worker.train_many), whose list of
        results stands for all of them under the first one's rank."""
        if not sum_in_process or not isinstance(self.reduction, Flat):  # a tree's reducers group by rank
            return {rank: self.train(rank, start, task) for rank, task in tasks.items()}
        by_process: dict[int, list[int]] = {}
        for rank in tasks:
            by_process.setdefault(id(self.workers[rank]), []).append(rank)
        refs = {}
        for ranks in by_process.values():
            if len(ranks) == 1:
                refs[ranks[0]] = self.train(ranks[0], start, tasks[ranks[0]])
            else:
                refs[ranks[0]] = self.workers[ranks[0]].train_many.remote(
                    start, tuple(tasks[r] for r in ranks), tuple(self.assignments[r] for r in ranks))
        return refs


class Algorithm:
    """One way to train: subclasses fill in the four parts below."""

    #: The name the spec selects it by (`spec.algorithm.name`; its settings are spec.py's model of that name).
    name: ClassVar[str]

    def __init__(self, spec: JobSpec):
        self.spec = spec
        self.settings: Any = spec.algorithm

    def schedule(self, shard: int) -> RoundPlan:
        """Rounds and momentum per scored period, for workers' shards of at most `shard` samples."""
        raise NotImplementedError

    def rule(self, plan: RoundPlan) -> Rule:
        """The server-side update rule (runs inside the ParameterServer actor)."""
        raise NotImplementedError

    def drive(self, run: Run) -> None:
        """Train the periods from `run.scorer.done` on, scoring each with `run.scorer.finish`."""
        raise NotImplementedError

    def reduction(self, node_of: list[str], group: Any) -> Flat | Tree:
        """How a round's results reach the server, for workers placed on the nodes `node_of`."""
        return reduction_for(self.spec, node_of, group)

    def warm_up(self, kernel: str, n_features: int) -> None:
        """Compile or load the compiled code its workers run, before they start (in the driver)."""
        warm_up(kernel, n_features)
