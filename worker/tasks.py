"""What an algorithm asks a worker to do, and what the worker gives back.

The driver builds one task per worker per round (cluster/algorithms/); the
worker runs it with `Worker.train(start, task)`. Tasks are small frozen values,
and a task's result depends on it, the start weights and the worker's shard
alone: a call Ray runs again after a restart returns exactly what the first would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from dtrain.worker.shard import ShardTrainer


class Update(NamedTuple):
    """A worker's answer to one task."""

    weights: np.ndarray  # float32: the trained weights, or their change (Block(change=True))
    samples: int
    loss: float  # sum of the per-sample losses, each before its own step
    correct: int
    restarted: int  # 1 if this is the worker's first answer since Ray restarted it
    version: int  # the server version of the start weights
    rank: int = -1  # the worker's: with busy_s, each worker's speed on the live page (not used in the maths)
    busy_s: float = 0.0  # seconds the task took on the worker


@dataclass(frozen=True)
class Block:
    """Train round `round` of `rounds` of `epoch` (0-based): that block of the shard's order
    for the epoch. With `change`, answer the change of the weights instead of the weights."""

    epoch: int
    round: int
    rounds: int
    change: bool = False

    @property
    def period(self) -> int:
        """The scored period (1-based) this task's figures count in."""
        return self.epoch + 1

    def run(self, trainer: ShardTrainer, start: np.ndarray) -> tuple[np.ndarray, int, float, int]:
        theta, *totals = trainer.train_block(start, self.epoch, self.round, self.rounds)
        return (theta - start if self.change else theta, *totals)


@dataclass(frozen=True)
class Clients:
    """Federated round `round_index`: each of `clients` (hosted by this worker) trains from the
    start weights; answer their weighted mean. `mu` > 0 adds FedProx's proximal term."""

    round_index: int
    clients: tuple[int, ...]
    period: int
    mu: float = 0.0

    def run(self, trainer: ShardTrainer, start: np.ndarray) -> tuple[np.ndarray, int, float, int]:
        return trainer.train_clients(start, self.round_index, list(self.clients), self.mu)


Task = Block | Clients
