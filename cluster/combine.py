"""How the parameter server combines the workers' weights after each round (the combine rule).

Plain averaging of K workers that each ran B samples of SGD moves the model
about as far as one worker's B samples, so K workers need roughly K times the
rounds and per-epoch accuracy drops as K grows. Blockwise model-update filtering
(BMUF; Chen & Huo, ICASSP 2016) treats the averaged change of a round as a
"block gradient" G and adds momentum across rounds, with a Nesterov-style
look-ahead for the point the workers start the next round from:

    G(t)      = mean_k(theta_k(t)) - start(t-1)        weighted by samples seen
    Delta(t)  = eta * Delta(t-1) + zeta * G(t)         block momentum eta, block lr zeta
    global(t) = global(t-1) + Delta(t)
    start(t)  = global(t) + eta * Delta(t)             what the workers train from next

With eta = 0 and zeta = 1 this is plain (FedAvg-style) weighted averaging.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dtrain.model.average import weighted_mean


#: Block momentum once the blocks stop growing (spec.Sync.late_rounds), for up to 8
#: workers: a cap on 1 - 1/K (docs/algorithms.md, "Combine rule and sync schedule").
WHOLE_EPOCH_MOMENTUM = 0.5
#: Beyond 8 workers, late momentum is 1 - LATE_MOMENTUM_WORKERS / K.
LATE_MOMENTUM_WORKERS = 4


def default_block_momentum(workers: int, late: bool) -> float:
    """BMUF's block momentum for K workers: 1 - 1/K (Chen & Huo), so K workers move
    about as far per round as one worker would over all their samples.

    Once the blocks stop growing (`late`: whole shards up to K = 15), a block's average
    is about an epoch of SGD at lr / (K x rounds per epoch), and momentum eta scales
    it by 1 / (1 - eta). There dtrain lowers momentum to 1 - 4/K, at least
    min(1 - 1/K, 0.5): the model then moves about as far per epoch as one worker at a
    quarter of the lr, whatever K, which is the learning-rate decay that constant-lr
    per-sample SGD lacks (the cap of 0.5 measured 0.1-0.2 points better final
    accuracy at 8 workers; a cap of 0.5 at 16-64 workers decayed the lr 8-32 fold
    and stalled them).
    """
    if workers <= 1:
        return 0.0
    eta = 1.0 - 1.0 / workers
    if not late:
        return eta
    return max(min(eta, WHOLE_EPOCH_MOMENTUM), 1.0 - LATE_MOMENTUM_WORKERS / workers)


class BlockMomentum:
    """BMUF state: the global model, the block momentum buffer and the start point."""

    def __init__(self, theta: np.ndarray, momentum: float, block_lr: float = 1.0):
        self.global_theta = theta.astype(np.float32, copy=True)
        self.momentum = float(momentum)
        self.block_lr = float(block_lr)
        self.delta = np.zeros_like(self.global_theta)
        self.start = self.global_theta.copy()

    def combine(self, thetas: Sequence[np.ndarray], counts: Sequence[int]) -> None:
        """Fold one round of worker results into the global model."""
        self.combine_mean(weighted_mean(thetas, counts))

    def combine_mean(self, mean: np.ndarray) -> None:
        """Fold one round into the global model, given the round's sample-weighted mean
        (summed elsewhere, e.g. from a tree reduction's partial sums)."""
        G = mean - self.start
        self.delta *= self.momentum
        self.delta += self.block_lr * G
        self.global_theta += self.delta
        self.start = self.global_theta + self.momentum * self.delta
