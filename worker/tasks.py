"""What an algorithm asks a worker to do, and what the worker gives back.

The driver builds one task per worker per round (cluster/algorithms/); the
worker runs it with `Worker.train(start, task)`. Tasks are small frozen values,
and a task's result depends on it, the start weights and the worker's shard
alone: a call Ray runs again after a restart returns exactly what the first would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from dtrain.model.average import weighted_sum

if TYPE_CHECKING:
    from dtrain.worker.shard import ShardTrainer


class Update(NamedTuple):
    """A worker's answer to one task."""

    weights: np.ndarray  # float32: the trained weights, or their change (Block(change=True)); ClientModels for ScaffoldClients
    samples: int
    loss: float  # sum of the per-sample losses, each before its own step
    correct: int
    restarted: int  # 1 if this is the worker's first answer since Ray restarted it
    version: int  # the server version of the start weights
    rank: int = -1  # the worker's: with busy_s, each worker's speed on the live page (not used in the maths)
    busy_s: float = 0.0  # seconds the task took on the worker


class Partial(NamedTuple):
    """Some workers' round results summed: the weights as sum_k n_k * theta_k in float64, whose
    products are exact, so that any grouping of the sum gives the same mean in practice
    (cluster/reduce.py's docstring); the losses unsummed, for the server to add exactly."""

    total: np.ndarray  # sum of n_k * theta_k, float64
    samples: int
    losses: tuple[float, ...]  # each worker's loss sum, unsummed
    correct: int
    restarted: int
    speeds: tuple[tuple[int, int, float], ...] = ()  # each worker's (rank, samples, busy seconds)


def partial_sum(results: Sequence[tuple]) -> Partial:
    """Some workers' round results (Updates) -> one partial: a node's, summed by its reducer
    (cluster/reduce.py), or a flat round's, summed by the server in rank order."""
    if not results:
        raise ValueError("a reducer was given no results")
    return Partial(
        weighted_sum([r[0] for r in results], [r[1] for r in results]),
        sum(int(r[1]) for r in results),
        tuple(float(r[2]) for r in results),
        sum(int(r[3]) for r in results),
        sum(int(r[4]) for r in results),
        tuple((int(r.rank), int(r.samples), float(r.busy_s)) for r in results if isinstance(r, Update)),
    )


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


class ScaffoldStart(NamedTuple):
    """What SCAFFOLD's server sends as a round's start weights: the model x and, for each
    client sampled this round, its correction c - c_i (cluster/algorithms/scaffold.py).
    One object for the whole round: the workers of a node read it zero-copy."""

    x: np.ndarray  # (P,) float32: the global model
    clients: tuple[int, ...]  # the round's sampled clients, ascending
    corrections: np.ndarray  # (len(clients), P) float32: row j is c - c_{clients[j]}

    def correction(self, client: int) -> np.ndarray:
        """(P,) float32: c - c_i of `client`, which must be one of this round's."""
        return self.corrections[self.clients.index(client)]


class ClientModels(NamedTuple):
    """A ScaffoldClients task's answer: each client's own trained weights, not their mean, since
    the server updates each client's control variate c_i from them."""

    clients: tuple[int, ...]
    sizes: tuple[int, ...]  # each client's samples n_i (the weights of the server's mean)
    steps: tuple[int, ...]  # each client's local SGD steps K (all its local epochs)
    models: np.ndarray  # (len(clients), P) float32: row j is y_{clients[j]}


@dataclass(frozen=True)
class ScaffoldClients:
    """SCAFFOLD's round `round_index`: each of `clients` trains from the start's x with every
    step corrected by its c - c_i (the start is a ScaffoldStart); answer ClientModels. With
    `local_steps`, each client takes that many steps through its data instead of whole passes."""

    round_index: int
    clients: tuple[int, ...]
    period: int
    local_steps: int | None = None

    def run(self, trainer: ShardTrainer, start: ScaffoldStart) -> tuple[ClientModels, int, float, int]:
        return trainer.train_scaffold(start, self.round_index, list(self.clients), self.local_steps)


Task = Block | Clients | ScaffoldClients
