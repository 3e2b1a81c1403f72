"""The parameter server actor: holds the global model and merges each round into it."""

from __future__ import annotations

import math

import numpy as np

from dtrain.cluster.combine import BlockMomentum


class ParameterServer:
    """Global weights, a version number, and the combine rule's state.

    Workers' results are handed to ``apply_updates`` as object references, all
    of a round's in one call, so the round's weights never pass through the
    driver.
    """

    def __init__(self, theta: np.ndarray, *, momentum: float):
        self.rule = BlockMomentum(theta, momentum)
        self.version = 0
        self.diverged_at: int | None = None  # first round whose loss or weights were not finite
        self._reset_epoch_totals()

    def _reset_epoch_totals(self) -> None:
        self.samples, self.loss_sum, self.correct, self.restarts = 0, 0.0, 0, 0

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
        thetas = [r[0] for r in results]
        counts = [r[1] for r in results]
        self.rule.combine(thetas, counts)
        self.version += 1
        round_loss = sum(r[2] for r in results)
        if self.diverged_at is None and not (math.isfinite(round_loss) and np.isfinite(self.rule.delta).all()):
            self.diverged_at = self.version
        self.samples += sum(counts)
        self.loss_sum += round_loss
        self.correct += sum(r[3] for r in results)
        self.restarts += sum(r[4] for r in results)
        return self.rule.start

    def end_epoch(self) -> dict:
        """This epoch's training totals and divergence state; resets the totals."""
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
        self._reset_epoch_totals()
        return figures
