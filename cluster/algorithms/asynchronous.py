"""Asynchronous training: staleness-aware pushes with no round barrier.

Schedule: synchronous rounds' blocks (bmuf.py), with no momentum: each worker
goes through its shard block by block on its own. Worker task: train a block from
the weights it was given and answer their change. Server rule: apply each change
at once, scaled by 1 / (1 + staleness), staleness being the updates applied
since the worker's weights were taken (Zhang et al., 2016, "Staleness-aware
async-SGD"): with K workers taking turns each change counts 1/K, as in plain
averaging, and one worker alone is exactly sequential SGD; a change staler than
the bound is dropped. Driver loop: each worker pushes its change as soon as its
block is done and goes on from the weights the push returns, so a slow worker
holds up no one; an epoch ends (and is scored) once the server has taken a
training set's worth of samples, whoever trained them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dtrain.cluster.algorithms.base import RoundPlan, Run
from dtrain.cluster.algorithms.bmuf import SyncRounds
from dtrain.cluster.outcome import JobCancelled
from dtrain.cluster.reduce import Flat, Tree
from dtrain.worker.shard import block_slice
from dtrain.worker.tasks import Block


class StalenessScaled:
    """The server side of asynchronous training (see the module docstring)."""

    def __init__(self, max_staleness: int):
        self.max_staleness = max_staleness

    def reset(self, theta0: np.ndarray) -> None:
        self.theta = theta0.astype(np.float32, copy=True)
        self.pushes, self.dropped, self.staleness_sum = 0, 0, 0

    def start(self) -> np.ndarray:
        return self.theta

    def model(self) -> np.ndarray:
        return self.theta

    def apply(self, server: Any, updates: tuple[Any, ...]) -> None:
        """One worker's push (worker/tasks.py's Update): its change, from the server version it started at."""
        (push,) = updates
        change, samples, loss = push.weights, push.samples, push.loss
        staleness = server.version - push.version
        self.pushes += 1
        if staleness > self.max_staleness:
            self.dropped += 1
        else:
            self.theta += np.float32(1.0 / (1 + staleness)) * change
            self.staleness_sum += staleness
            server.advance(loss, self.theta)
        server.count(samples, loss, push.correct, push.restarted, ((push.rank, samples, push.busy_s),))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"global_theta": self.theta, "delta": np.zeros_like(self.theta), "start": self.theta}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.theta = arrays["global_theta"]

    def epoch_figures(self) -> dict[str, Any]:
        figures = {}
        if self.pushes:
            figures = {"dropped_updates": self.dropped, "mean_staleness": self.staleness_sum / max(self.pushes - self.dropped, 1)}
        self.pushes, self.dropped, self.staleness_sum = 0, 0, 0
        return figures


class Async(SyncRounds):
    name = "async"

    def momentum(self, rounds_in_period: int) -> float:
        return 0.0

    def rule(self, plan: RoundPlan) -> StalenessScaled:
        return StalenessScaled(self.settings.staleness_bound(self.spec.workers))

    def reduction(self, node_of: list[str], group: Any) -> Flat | Tree:
        return Flat()  # each push is one worker's: nothing to sum per node

    def drive(self, run: Run) -> None:
        """The driver's loop (see the module docstring)."""
        import ray

        spec, plan, scorer, workers, server = self.spec, run.plan, run.scorer, run.workers, run.server
        n_train = sum(hi - lo for lo, hi in run.layout.workers)
        position = [(scorer.done, 0)] * len(workers)  # each worker's (epoch, round) in its own schedule
        running: dict[Any, tuple[int, int]] = {}  # a block's result -> (worker, samples in the block)

        def start_block(i: int, pulled: Any) -> None:
            epoch, r = position[i]
            rounds = plan.rounds[min(epoch, len(plan.rounds) - 1)]
            position[i] = (epoch, r + 1) if r + 1 < rounds else (epoch + 1, 0)
            block = block_slice(run.layout.workers[i][1] - run.layout.workers[i][0], r, rounds)
            running[run.train(i, pulled, Block(epoch, r, rounds, change=True))] = (i, block.stop - block.start)

        pulled = server.start.remote()
        for i in range(len(workers)):
            start_block(i, pulled)
        epoch, taken = scorer.done, 0
        while True:
            finished, _ = ray.wait(list(running), num_returns=1, timeout=1.0, fetch_local=False)
            if run.stop():
                raise JobCancelled(f"stopped after {len(scorer.history)} of {spec.periods} epochs")
            if not finished:
                continue
            i, samples = running.pop(finished[0])
            pushed = server.apply.remote(finished[0])
            taken += samples
            epoch_done = taken >= (epoch + 1 - scorer.done) * n_train
            if not epoch_done or epoch + 1 < spec.periods:
                start_block(i, pushed)
            if not epoch_done:
                continue
            # Scored while the workers go on with the next epoch.
            if scorer.finish(epoch, server.end_epoch.remote(pushed), server.model.remote()) or epoch + 1 >= spec.periods:
                return
            epoch += 1
