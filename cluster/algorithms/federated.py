"""Federated averaging (FedAvg; McMahan et al., 2017): virtual clients hosted by the workers.

Schedule: `rounds` rounds, scored every `eval_every` rounds (a scored period).
Worker task: each round a fresh sample of `clients_per_round` clients, drawn from
(seed, round), trains from the global weights for `local_epochs` passes over its
own data; each worker answers the weighted mean of its sampled clients (a worker
none of whose clients was sampled sits the round out). Server rule and driver
loop: synchronous rounds' (bmuf.py), with server momentum only if asked for
(`block_momentum`); without it a round's result is the clients' weighted mean.
"""

from __future__ import annotations

import numpy as np

from dtrain.cluster.algorithms.base import RoundPlan, Run
from dtrain.cluster.algorithms.bmuf import SyncRounds
from dtrain.worker.tasks import Clients, Task

#: Mixed into the seed of the client sampling, so it draws apart from the other uses of the seed.
SAMPLING_STREAM = 0xFEDA


def sample_clients(seed: int, clients: int, per_round: int | None, round_index: int) -> list[int]:
    """The clients of round `round_index`, ascending: `per_round` of `clients` (all if None), drawn
    from (seed, round) alone, so the driver and a server rule that needs them agree (scaffold.py)."""
    rng = np.random.default_rng((seed, SAMPLING_STREAM, round_index))
    return sorted(rng.choice(clients, per_round or clients, replace=False).tolist())


class FedAvg(SyncRounds):
    name = "fedavg"

    def schedule(self, shard: int) -> RoundPlan:
        fed = self.settings
        rounds = [min(fed.eval_every, fed.rounds - p * fed.eval_every) for p in range(fed.periods)]
        return RoundPlan(rounds, [self.momentum(r) for r in rounds])

    def momentum(self, rounds_in_period: int) -> float:
        # FedAvg; with --block-momentum, FedAvg with server momentum
        return self.settings.block_momentum or 0.0

    def sampled(self, round_index: int) -> list[int]:
        """The clients of round `round_index`, in order."""
        return sample_clients(self.spec.seed, self.settings.clients, self.settings.clients_per_round, round_index)

    def tasks(self, run: Run, period: int, r: int) -> dict[int, Task]:
        round_index = run.plan.first_round(period) + r
        by_worker: dict[int, list[int]] = {}
        for client in self.sampled(round_index):
            by_worker.setdefault(run.layout.owner(client), []).append(client)
        return {w: self.client_task(round_index, tuple(clients), period + 1) for w, clients in sorted(by_worker.items())}

    def client_task(self, round_index: int, clients: tuple[int, ...], period: int) -> Clients:
        """What a worker's sampled clients do in a round."""
        return Clients(round_index, clients, period)
