"""Scoring each period's global model in the driver, and keeping the job's history."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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

#: The niceness scoring runs at (Scorer._evaluate says why). Not the lowest (19): on a host
#: that other programs keep busy, a thread at 19 gets about 1.5% of a core against each of
#: theirs, 10% at 10, and the job's next epochs wait for their scores.
SCORING_NICENESS = 10


def lower_priority() -> None:
    """Run the calling thread, and the threads it starts from now on, at SCORING_NICENESS.

    Linux keeps a niceness per thread, and a new thread inherits its creator's; elsewhere
    this does nothing. Raising one's own niceness needs no privilege, and a thread cannot
    lower it again, so only threads kept for the purpose call this."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SCORING_NICENESS)
        except OSError:
            pass  # a sandbox that forbids it: scoring then runs at the process's priority


#: The thread epochs are scored from, at SCORING_NICENESS; made on first use, one per process.
_scoring_thread = ThreadPoolExecutor(1, thread_name_prefix="dtrain-score", initializer=lower_priority)


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
        # The workers train the next epoch meanwhile. Scoring runs at a lower priority, so that
        # it takes the cores while the workers wait for their round's weights rather than slow
        # them down: every worker waits at a round's end for the slowest one. Measured, 8
        # alternated warm 8-worker jobs on 2 cores, median end to end at niceness 0 / 10 / 19:
        # 2.94 / 2.89 / 2.88 s (a small gain, within this host's noise; 6 earlier pairs said
        # 2.96 s at 0 against 2.84 s at 19). And on one thread per core (up to 4), for the same
        # reason: medians of 4 alternated 32-epoch jobs, training phase with 1 / 2 threads:
        # 2 workers 3.39 / 3.28 s; 1 and 8 workers the same within noise.
        scoring = _scoring_thread.submit(
            evaluate, theta, self.sizes, self.spec.activation, self.x_test, self.y_test, threads=SCORING_THREADS
        )
        return scoring.result()

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
