"""A worker's share of training, without Ray: its shard, its shuffling, its SGD blocks.

``ShardTrainer`` is what the worker actor runs; keeping it free of Ray lets the
tests and the benchmark drive the same code in one process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from dtrain.model import kernels
from dtrain.model.average import weighted_mean
from dtrain.model.corrected import sgd_corrected, steps_per_pass
from dtrain.model.kernels import sgd
from dtrain.model.prox import sgd_prox
from dtrain.model.sgd_setup import SGDSetup
from dtrain.model.sparse import SparseRows
from dtrain.worker.tasks import ClientModels, ScaffoldStart


#: Mixed into the seed of a client's passes when it trains a number of steps a round (train_scaffold).
STREAM = 0x5CAF


def rounds_for(shard_size: int, block: int) -> int:
    """Rounds in an epoch: enough blocks of at most `block` samples to cover the shard."""
    return max(1, -(-shard_size // block))


def block_slice(n: int, round_in_epoch: int, rounds_in_epoch: int) -> slice:
    """Round `round_in_epoch`'s share of an epoch's n samples: nearly equal consecutive blocks."""
    return slice(round_in_epoch * n // rounds_in_epoch, (round_in_epoch + 1) * n // rounds_in_epoch)


class ShardTrainer:
    """Per-sample SGD over one shard, one block of samples per round.

    Each epoch visits the shard in a fresh order drawn from (seed, rank, epoch),
    cut into as many nearly equal blocks as the epoch has rounds, so every worker
    finishes its epoch in the same round whatever its shard size.
    """

    def __init__(
        self,
        images: SparseRows,
        y: np.ndarray,
        *,
        sizes: tuple[int, ...],
        activation: str,
        lr: float,
        kernel: str,
        seed: int,
        rank: int,
        batch_size: int = 1,
        clients: list[tuple[int, int]] | None = None,
        first_client: int = 0,
        local_epochs: int = 1,
    ):
        self.images, self.y, self.kernel = images, y, kernel
        self.setup = SGDSetup(sizes, activation, images, y, lr, batch_size=batch_size)
        self.seed, self.rank = seed, rank
        # Federated clients hosted here: [lo, hi) within the shard, numbered from first_client.
        self.clients, self.first_client, self.local_epochs = clients or [], first_client, local_epochs
        self.theta = np.zeros(0, dtype=np.float32)
        self._epoch, self._order = -1, np.zeros(0, np.int64)

    def block(self, epoch: int, round_in_epoch: int, rounds_in_epoch: int) -> np.ndarray:
        """The sample indices (into the shard) of one round, in visiting order."""
        if epoch != self._epoch:
            rng = np.random.default_rng((self.seed, self.rank, epoch))
            self._order, self._epoch = rng.permutation(len(self.y)), epoch
        return self._order[block_slice(len(self._order), round_in_epoch, rounds_in_epoch)]

    def warm_up(self) -> None:
        """Load (or compile) the kernel now, on a throw-away copy, so round one is not slow."""
        from dtrain.model.mlp import n_params

        kernels.warm_up(self.kernel, self.images.n_cols)  # numba's own loading, as cheap as it goes
        scratch = np.zeros(n_params(self.setup.sizes), dtype=np.float32)
        # one sample a step whatever the batch size: the per-sample kernel is the one that compiles
        sgd(self.kernel, scratch, replace(self.setup, batch_size=1), np.zeros(1, np.int64))

    def train_block(
        self, start: np.ndarray, epoch: int, round_in_epoch: int, rounds_in_epoch: int
    ) -> tuple[np.ndarray, int, float, int]:
        """Train from `start` on this round's block; returns (theta, samples, loss sum, correct)."""
        if self.theta.shape != start.shape:
            self.theta = np.empty_like(start, dtype=np.float32)
        self.theta[...] = start  # what arrives through Ray is read-only
        order = self.block(epoch, round_in_epoch, rounds_in_epoch)
        loss, correct = self._sgd(self.theta, order)
        return self.theta, len(order), float(loss), int(correct)

    def _sgd(self, theta: np.ndarray, order: np.ndarray, anchor: np.ndarray | None = None, mu: float = 0.0) -> tuple[float, int]:
        if mu:  # FedProx: pulled toward the round's start weights (model/prox.py)
            return sgd_prox(self.kernel, theta, anchor, mu, self.setup, order)
        return sgd(self.kernel, theta, self.setup, order)

    def local_training(
        self, theta: np.ndarray, client: int, round_index: int, train: Callable[[np.ndarray, np.ndarray], tuple[float, int]]
    ) -> tuple[int, float, int]:
        """One client's round: `local_epochs` passes of `train(theta, order)` over its data (theta
        trained in place), each pass in an order drawn from (seed, client, round, pass);
        returns (samples, loss sum, correct) over all of them."""
        lo, hi = self.clients[client - self.first_client]
        samples, loss, correct = 0, 0.0, 0
        for local_epoch in range(self.local_epochs):
            order = lo + np.random.default_rng((self.seed, client, round_index, local_epoch)).permutation(hi - lo)
            l, c = train(theta, order)
            samples, loss, correct = samples + len(order), loss + l, correct + c
        return samples, loss, correct

    def client_size(self, client: int) -> int:
        """Samples of `client` (a global client number hosted here)."""
        lo, hi = self.clients[client - self.first_client]
        return hi - lo

    def train_clients(
        self, start: np.ndarray, round_index: int, clients: list[int], mu: float = 0.0
    ) -> tuple[np.ndarray, int, float, int]:
        """FedAvg's client update for each of `clients` (global client numbers hosted here), each
        from `start` for `local_epochs` passes over its data (local_training); returns their
        mean theta weighted by their data sizes (the one weighted average, model/average.py),
        with (samples, loss sum, correct) over all of them. A client's result does not depend
        on which worker hosts it. With `mu` > 0 each client's objective has FedProx's proximal
        term mu/2 * ||theta - start||^2."""
        thetas = []
        samples, loss, correct = 0, 0.0, 0
        for client in clients:
            theta = np.array(start, dtype=np.float32)  # a writable copy: start came through Ray
            n, l, c = self.local_training(theta, client, round_index, lambda t, order: self._sgd(t, order, start, mu))
            samples, loss, correct = samples + n, loss + l, correct + c
            thetas.append(theta)
        mean = weighted_mean(thetas, [self.client_size(c) for c in clients])  # as in FedAvg: by the clients' data sizes
        return mean, samples, float(loss), int(correct)

    def stream(self, client: int, round_index: int, samples: int) -> np.ndarray:
        """The sample indices (into the shard) `client` trains in round `round_index` when every
        round takes the next `samples` of its data: pass after pass over it, each pass in an
        order drawn from (seed, client, STREAM, pass), so consecutive rounds tile the passes."""
        lo, hi = self.clients[client - self.first_client]
        n, first = hi - lo, round_index * samples
        passes = range(first // n, (first + samples - 1) // n + 1)
        order = np.concatenate([np.random.default_rng((self.seed, client, STREAM, p)).permutation(n) for p in passes])
        return lo + order[first - passes[0] * n :][:samples]

    def train_scaffold(
        self, start: ScaffoldStart, round_index: int, clients: list[int], local_steps: int | None = None
    ) -> tuple[ClientModels, int, float, int]:
        """SCAFFOLD's client update for each of `clients`: from the start's x, the same passes
        as FedAvg's clients (local_training), or with `local_steps` that many steps through its
        data (stream), every step corrected by the client's c - c_i (model/corrected.py);
        returns each client's trained weights y_i (ClientModels, (m, P)) and its steps K, with
        (samples, loss sum, correct) over all of them."""
        models = np.empty((len(clients), start.x.size), np.float32)
        samples, loss, correct, steps = 0, 0.0, 0, []
        for row, client in enumerate(clients):
            models[row] = start.x  # a writable copy: start came through Ray
            correction = start.correction(client)

            def train(theta: np.ndarray, order: np.ndarray) -> tuple[float, int]:
                return sgd_corrected(self.kernel, theta, correction, self.setup, order)

            if local_steps:  # batch_size >= 1 here (spec.JobSpec refuses 0)
                order = self.stream(client, round_index, local_steps * self.setup.batch_size)
                n, (l, c) = len(order), train(models[row], order)
                steps.append(local_steps)
            else:
                n, l, c = self.local_training(models[row], client, round_index, train)
                steps.append(self.local_epochs * steps_per_pass(self.client_size(client), self.setup.batch_size))
            samples, loss, correct = samples + n, loss + l, correct + c
        sizes = tuple(self.client_size(c) for c in clients)
        return ClientModels(tuple(clients), sizes, tuple(steps), models), samples, float(loss), int(correct)
