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
from dtrain.cluster.rounds import hosts_of, send_round
from dtrain.model.kernels import warm_up

if TYPE_CHECKING:
    from dtrain.cluster.layout import Layout
    from dtrain.cluster.parameter_server import Rule
    from dtrain.cluster.scoring import Scorer
    from dtrain.spec import JobSpec
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
    share: float = 1.0  # each worker's CPUs: a process trains its workers on a thread per CPU (rounds.threads)

    def train(self, rank: int, start: Any, task: Task) -> Any:
        """Worker `rank` runs `task` from `start` (a reference to the server's weights): its result's reference."""
        return self.workers[rank].train.remote(start, task, self.assignments[rank])

    def train_period(self, start: Any, rounds: list[dict[int, Task]], following: list[dict[int, Task]] | None = None) -> tuple[Any, Any]:
        """Run a period's `rounds` (each: rank -> Task) one after the other from `start` (a
        reference to the server's weights; None: the weights it holds now) and end the period:
        (the next period's start, a reference to the period's totals, ParameterServer.end_epoch's
        answer). `following`: the next period's rounds, if there is one.

        With a flat reduction the server runs them itself (ParameterServer.train_period), from
        the weights it holds: the workers answer it directly, and the next start is the server's
        own again (None). A tree's rounds are chained here, each worker's result to its node's
        reducer, the partials to the server; end_epoch waits on the last, so that it never runs
        if a round failed.
        """
        hosts = hosts_of(self.workers, self.share)
        if isinstance(self.reduction, Flat):
            return None, self.server.train_period.remote(hosts, self.assignments, rounds, following)
        if start is None:
            start = self.server.start.remote()
        for tasks in rounds:
            start = self.reduction.apply_round(self.server, send_round(hosts, self.assignments, start, tasks))
        return start, self.server.end_epoch.remote(start)


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
