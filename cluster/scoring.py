"""Scoring each period's global model in the driver, and keeping the job's history."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dtrain.cluster import placement
from dtrain.cluster.algorithms.base import RoundPlan
from dtrain.cluster.divergence import divergence
from dtrain.cluster.outcome import JobFailed, OnEvent
from dtrain.files import append_jsonl, write_atomic
from dtrain.data.mnist import N_CLASSES
from dtrain.model.evaluate import Evaluation, evaluate
from dtrain.spec import JobSpec

#: How long a restarted parameter server may take to answer again.
RECOVERY_TIMEOUT_S = 120.0

#: Threads the driver scores each epoch on: one per core here, at most 4 (Scorer._evaluate says why).
SCORING_THREADS = min(4, int(placement.local_cpus()))


def check_divergence(figures: dict[str, Any], epoch: int, spec: JobSpec) -> None:
    """Fail the job when training has blown up, rather than save garbage as a model."""
    where = f"{spec.algorithm.unit} {spec.period_end(epoch + 1)}"  # "epoch 3", or "round 30"
    why = divergence(figures, epoch, N_CLASSES, where)
    if why:
        raise JobFailed(why)


class Scorer:
    """Scores each epoch's global model in the driver, and keeps the job's history and best-so-far.

    `history` (a list shared with the caller) is updated in place and appended
    to metrics.jsonl, one record per scored epoch.
    """

    def __init__(
        self,
        spec: JobSpec,
        plan: RoundPlan,
        sizes: tuple[int, ...],
        x_test: np.ndarray,
        y_test: np.ndarray,
        run_dir: Path,
        emit: OnEvent,
        history: list[dict[str, Any]],
        await_totals: Callable[[Any, int], dict],
    ):
        self.spec, self.plan, self.sizes = spec, plan, sizes
        self.x_test, self.y_test = x_test, y_test
        self.run_dir, self.emit, self.history, self.await_totals = run_dir, emit, history, await_totals
        self.last: tuple[np.ndarray, Evaluation] | None = None
        self.done = 0

    def _evaluate(self, theta: np.ndarray) -> Evaluation:
        # One scoring thread per core (up to 4): the workers train the next epoch meanwhile, and
        # a single thread would slow one worker's core only, which every other worker then
        # waits for at the round's end. Measured, medians of 4 alternated 32-epoch jobs, training
        # phase with 1 / 2 threads: 2 workers 3.39 / 3.28 s; 1 and 8 workers the same within noise.
        return evaluate(theta, self.sizes, self.spec.activation, self.x_test, self.y_test, threads=SCORING_THREADS)

    def rewind(self, server: Any, t_start: float) -> bool:
        """Rewind the server to the last scored epoch; True if the job has nothing left to train.

        Every scored epoch has a checkpoint (the server writes it before the epoch is
        scored); if it is gone, go back further and redo the epochs after it.
        """
        import ray

        history, spec = self.history, self.spec
        self.done = done = ray.get(server.rewind.remote(len(history)), timeout=RECOVERY_TIMEOUT_S)
        if done < len(history):
            del history[done:]
            write_atomic(
                self.run_dir / "metrics.jsonl", b"".join((json.dumps(h, sort_keys=True) + "\n").encode() for h in history)
            )
        if done:
            theta = np.array(ray.get(server.model.remote()))
            self.last = (theta, self._evaluate(theta))
        # Times go on from the last scored epoch, leaving out any time the job was down.
        now = time.perf_counter()
        self.t_train = now - (history[-1]["train_time_s"] if history else 0.0)
        self.t_wall = now - history[-1]["wall_time_s"] if history else t_start
        self.t_epoch = now
        reached = spec.until_accuracy is not None and any(h["test_accuracy"] >= spec.until_accuracy for h in history)
        return done >= spec.periods or reached

    def finish(self, epoch: int, totals_ref: Any, weights_ref: Any) -> bool:
        """Score epoch `epoch` (0-based) from its training totals and its weights; True when the job should stop."""
        import ray

        spec = self.spec
        figures = self.await_totals(totals_ref, len(self.history))
        finished = time.perf_counter()
        check_divergence(figures, epoch, spec)
        theta = np.array(ray.get(weights_ref))
        scored = self._evaluate(theta)
        self.last = (theta, scored)
        record = {
            "epoch": epoch + 1,
            "train_loss": figures["train_loss"],
            "train_accuracy": figures["train_accuracy"],
            "test_loss": scored.loss,
            "test_accuracy": scored.accuracy,
            "samples": figures["samples"],
            "rounds": self.plan.rounds[epoch],
            "worker_restarts": figures["worker_restarts"],
            "samples_per_s": figures["samples"] / (finished - self.t_epoch),
            "train_time_s": finished - self.t_train,
            "wall_time_s": finished - self.t_wall,
        }
        if spec.federated:
            record["round"] = self.plan.first_round(epoch + 1)
        for key in ("dropped_updates", "mean_staleness", "worker_samples_per_s"):
            if key in figures:
                record[key] = figures[key]
        self.history.append(record)
        append_jsonl(self.run_dir / "metrics.jsonl", record)
        self.emit("epoch", record)
        self.t_epoch = self.t_train + record["train_time_s"]
        return spec.until_accuracy is not None and scored.accuracy >= spec.until_accuracy
