"""Synchronous rounds with block momentum (BMUF; cluster/combine.py has the maths).

Schedule: each epoch is cut into rounds; in a round every worker trains its next
block of its shard from the same start weights, and the blocks grow each epoch
(spec.Rounds.block_size; docs/algorithms.md). Server rule: one call reduces all of a
round's results (through the reducers first with a tree, cluster/reduce.py) to
their sample-weighted mean, and block momentum turns that into the next model
and start point. Driver loop: the driver hands each epoch's rounds to the server,
which sends them to the workers itself (with a tree, it chains them by reference:
a round's start weights are the previous round's apply result; Run.train_period);
each epoch's model is scored while the next epoch trains. `combine="average"` is
the same with no momentum.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dtrain.cluster.algorithms.base import Algorithm, RoundPlan, Run
from dtrain.cluster.combine import BlockMomentum, default_block_momentum
from dtrain.cluster.outcome import JobCancelled
from dtrain.cluster.reduce import as_partials, exact_sum, sum_partials
from dtrain.model.average import mean_of_sum
from dtrain.worker.shard import rounds_for
from dtrain.worker.tasks import Block, Task


class BlockMomentumRule:
    """The server side of synchronous rounds: a round's results (or their partial sums) ->
    their weighted mean -> BMUF's update, with the momentum the schedule gives the epoch."""

    def __init__(self, momenta: list[float]):
        self.momenta = momenta

    def reset(self, theta0: np.ndarray) -> None:
        self.state = BlockMomentum(theta0, self.momenta[0])

    def start(self) -> np.ndarray:
        return self.state.start

    def model(self) -> np.ndarray:
        return self.state.global_theta

    def apply(self, server: Any, updates: tuple[Any, ...]) -> None:
        """Apply one round. The loss sums are added exactly, so that they total the same
        however the round was reduced."""
        total, samples, losses, correct, restarts, speeds = sum_partials(as_partials(updates))
        self.state.momentum = float(self.momenta[min(server.epochs_done, len(self.momenta) - 1)])
        self.state.combine_mean(mean_of_sum(total, samples, self.state.global_theta.dtype))
        round_loss = exact_sum(losses)
        server.advance(round_loss, self.state.delta)
        server.count(samples, round_loss, correct, restarts, speeds)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"global_theta": self.state.global_theta, "delta": self.state.delta, "start": self.state.start}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.state.global_theta, self.state.delta, self.state.start = arrays["global_theta"], arrays["delta"], arrays["start"]

    def epoch_figures(self) -> dict[str, Any]:
        return {}


class SyncRounds(Algorithm):
    """BMUF-style synchronous rounds over the workers' shards."""

    name = "sync"

    def schedule(self, shard: int) -> RoundPlan:
        workers, settings = self.spec.workers, self.settings
        # One worker has nothing to average with: its rounds would be pure overhead.
        rounds = [
            1 if workers == 1 else rounds_for(shard, settings.block_size(e, shard, workers)) for e in range(settings.epochs)
        ]
        return RoundPlan(rounds, [self.momentum(r) for r in rounds])

    def momentum(self, rounds_in_period: int) -> float:
        """Block momentum for a period of `rounds_in_period` rounds."""
        settings, workers = self.settings, self.spec.workers
        if settings.combine == "average":
            return 0.0
        if settings.block_momentum is not None:
            return settings.block_momentum
        late = rounds_in_period <= settings.rounds_when_grown(workers)
        if late and settings.late_momentum is not None:
            return settings.late_momentum
        return default_block_momentum(workers, late)

    def rule(self, plan: RoundPlan) -> BlockMomentumRule:
        return BlockMomentumRule(plan.momenta)

    def tasks(self, run: Run, period: int, r: int) -> dict[int, Task]:
        """Round `r` of `period`: the task of each worker that trains in it, by rank."""
        return {rank: Block(period, r, run.plan.rounds[period]) for rank in range(len(run.workers))}

    def period_tasks(self, run: Run, period: int) -> list[dict[int, Task]]:
        """Each round's tasks of `period`, by rank; none past the job's last period."""
        return [self.tasks(run, period, r) for r in range(run.plan.rounds[period])] if period < self.spec.periods else []

    def drive(self, run: Run) -> None:
        server, scorer, periods = run.server, run.scorer, self.spec.periods
        start = None  # the server's weights as they are (after its rewind)
        previous = None
        rounds = self.period_tasks(run, scorer.done)
        for period in range(scorer.done, periods):
            if run.stop():
                raise JobCancelled(f"stopped after {len(scorer.history)} of {periods} epochs")
            following = self.period_tasks(run, period + 1)
            start, totals = run.train_period(start, rounds, following)
            rounds = following
            submitted = (period, totals, server.model.remote())
            if previous is not None and scorer.finish(*previous):
                return
            previous = submitted
        scorer.finish(*previous)
