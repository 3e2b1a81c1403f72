"""The parameter server actor: holds the global model and merges each round into it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dtrain.cluster import checkpoint
from dtrain.cluster.combine import BlockMomentum, mean_of_sum
from dtrain.cluster.divergence import divergence
from dtrain.cluster.reduce import Partial, exact_sum, merge_partials, partial_sum
from dtrain.model.mlp import he_init


class ParameterServer:
    """Global weights, a version number, and the combine rule's state.

    Workers' results are handed to ``apply_updates`` as object references, all
    of a round's in one call, so the driver never fetches them (in local mode
    Ray carries them inside its replies: cluster/connect.py); with a tree
    reduction, ``apply_partials`` gets one partial sum per node instead
    (cluster/reduce.py).

    With a `checkpoints` directory it writes its state there at the end of
    every epoch; `rewind` goes back to one of them, which is how a job carries
    on after this server, a worker or the job's runner was lost, or resumes.
    """

    def __init__(self, sizes: tuple[int, ...], *, seed: int, momentum: float, checkpoints: str | None = None):
        # The initial model is made here from its seed rather than sent: a restart reruns
        # this constructor, and small arguments are all Ray must keep for that.
        self.theta0 = he_init(sizes, np.random.default_rng(seed))
        self.n_classes = sizes[-1]
        self.momentum0 = momentum
        self.checkpoints = Path(checkpoints) if checkpoints else None
        self._start_over()

    def _start_over(self) -> None:
        self.rule = BlockMomentum(self.theta0, self.momentum0)
        self.version = 0
        self.epochs_done = 0
        self.diverged_at: int | None = None  # first round whose loss or weights were not finite
        self._reset_epoch_totals()

    def ready(self) -> int:
        """Answers once the server is up: its process id."""
        import os

        return os.getpid()

    def rewind(self, epochs_done: int) -> int:
        """Go back to the state after `epochs_done` epochs (or the newest checkpoint before it).

        Returns the epochs done in the state now held: training resumes with the next one.
        """
        self._start_over()
        found = checkpoint.load(self.checkpoints, epochs_done) if self.checkpoints and epochs_done else None
        if found is None:
            return 0
        arrays, info = found
        self.rule.global_theta, self.rule.delta, self.rule.start = arrays["global_theta"], arrays["delta"], arrays["start"]
        self.rule.momentum = float(info["momentum"])
        self.version, self.epochs_done = info["version"], info["epochs_done"]
        return self.epochs_done

    def _reset_epoch_totals(self) -> None:
        self.samples, self.loss_sum, self.correct, self.restarts = 0, 0.0, 0, 0
        self.pushes, self.dropped, self.staleness_sum = 0, 0, 0

    def set_momentum(self, momentum: float) -> None:
        """Block momentum from the next round on (the runner's schedule changes it by epoch)."""
        self.rule.momentum = float(momentum)

    def get_weights(self) -> np.ndarray:
        """The weights workers should train from next (BMUF's look-ahead point)."""
        return self.rule.start

    def get_global_weights(self) -> np.ndarray:
        """The global model itself: what is evaluated and saved."""
        return self.rule.global_theta

    def apply_updates(self, *results: tuple[np.ndarray, int, float, int, int]) -> np.ndarray:
        """Merge one round of (weights, samples, loss sum, correct, restarted); return the next start point."""
        return self.apply_partials(partial_sum(results))  # the flat merge is a tree of one node

    def apply_partials(self, *partials: Partial) -> np.ndarray:
        """Merge one round given as partial sums, one per node (cluster/reduce.py's NodeReducer);
        return the next start point. The same update and totals as apply_updates on the
        partials' results: the round's weighted sum is the same products, summed per node."""
        total, samples, losses, correct, restarts = merge_partials(partials)
        self.rule.combine_mean(mean_of_sum(total, samples, self.rule.global_theta.dtype))
        self._count_round(samples, losses, correct, restarts)
        return self.rule.start

    def _count_round(self, samples: int, losses: list[float] | tuple[float, ...], correct: int, restarts: int) -> None:
        """A merged round's bookkeeping: version, divergence, the epoch's totals. The loss sums are
        added exactly, so that they total the same however the round was reduced."""
        self.version += 1
        round_loss = exact_sum(losses)
        self._check_finite(round_loss, self.rule.delta)
        self._add_totals(samples, round_loss, correct, restarts)

    def _check_finite(self, loss: float, weights: np.ndarray) -> None:
        """Remember the first update whose loss or weights are not finite."""
        if self.diverged_at is None and not (math.isfinite(loss) and np.isfinite(weights).all()):
            self.diverged_at = self.version

    def _add_totals(self, samples: int, loss: float, correct: int, restarts: int) -> None:
        self.samples += samples
        self.loss_sum += loss
        self.correct += correct
        self.restarts += restarts

    # ---------------------------------------------------------- asynchronous mode

    def pull(self) -> tuple[np.ndarray, int]:
        """The global weights and their version, for a worker starting a block on its own schedule."""
        return self.rule.global_theta, self.version

    def push(self, result: tuple[np.ndarray, int, float, int, int, int], max_staleness: int) -> tuple[np.ndarray, int]:
        """Apply one worker's (change, samples, loss sum, correct, restarted, base version) at once,
        with no round barrier; return the weights and version it should train from next.

        The change is scaled by 1 / (1 + staleness), staleness being the updates applied
        since the worker pulled (Zhang et al., 2016, "Staleness-aware async-SGD"): with K
        workers taking turns, each change counts 1/K, as in plain averaging, and one worker
        alone is exactly sequential SGD. A change staler than `max_staleness` is dropped.
        """
        delta, samples, loss, correct, restarted, base = result
        staleness = self.version - base
        self.pushes += 1
        if staleness > max_staleness:
            self.dropped += 1
        else:
            self.rule.global_theta += np.float32(1.0 / (1 + staleness)) * delta
            self.rule.start = self.rule.global_theta
            self.version += 1
            self.staleness_sum += staleness
            self._check_finite(loss, self.rule.global_theta)
        self._add_totals(samples, loss, correct, restarted)
        return self.rule.global_theta, self.version

    def end_epoch(self, last_round: object = None) -> dict:
        """This epoch's training totals and divergence state; resets the totals, writes a checkpoint.

        The runner passes the epoch's last merge result as `last_round`: if any
        merge of the epoch failed, Ray then fails this call without running it,
        so no checkpoint is ever written for an epoch that did not happen.
        """
        train_loss = self.loss_sum / max(self.samples, 1)
        figures = {
            "version": self.version,
            "samples": self.samples,
            "train_loss": train_loss if math.isfinite(train_loss) else None,
            "train_accuracy": self.correct / max(self.samples, 1),
            "finite": self.diverged_at is None and math.isfinite(train_loss),
            "diverged_at_round": self.diverged_at,
            "worker_restarts": self.restarts,
        }
        if self.pushes:  # asynchronous mode
            figures["dropped_updates"] = self.dropped
            figures["mean_staleness"] = self.staleness_sum / max(self.pushes - self.dropped, 1)
        self._reset_epoch_totals()
        self.epochs_done += 1
        # A diverged model is nothing to resume from.
        if self.checkpoints and not divergence(figures, self.epochs_done - 1, self.n_classes):
            checkpoint.save(
                self.checkpoints,
                self.epochs_done,
                {"global_theta": self.rule.global_theta, "delta": self.rule.delta, "start": self.rule.start},
                {"version": self.version, "momentum": self.rule.momentum, "figures": figures},
            )
        return figures
