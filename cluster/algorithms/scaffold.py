"""SCAFFOLD (Karimireddy et al., 2020, "SCAFFOLD: Stochastic Controlled Averaging for
Federated Learning", Algorithm 1 with option II).

The server keeps the model x, a server control variate c and one control variate c_i
per client (all N of them, zero at the start). In round t it samples a set S of
clients; each i in S starts from y_i = x and takes K local steps of

    y_i ← y_i − η_l (g_i(y_i) + c − c_i)          corrected local step (model/corrected.py)

then updates its control variate with option II,

    c_i⁺ = c_i − c + (x − y_i) / (K η_l)

and the server, with Δy_i = y_i − x and Δc_i = c_i⁺ − c_i, steps

    Δx = (1/|S|) Σ_{i∈S} Δy_i,     Δc = (1/|S|) Σ_{i∈S} Δc_i
    x ← x + η_g Δx,                c ← c + (|S|/N) Δc

c − c_i estimates how far client i's gradient is from the global one, so the
correction cancels the drift of clients that see only a few classes. With c = c_i = 0
(every client's first round) and η_g = 1 a round is FedAvg's.

How dtrain computes it. Tasks stay pure (a worker's answer depends on its arguments
and its shard alone: Ray runs a call again after a restart), so every c_i lives here,
on the server, in the rule's arrays, which checkpoints keep. The round's start is a
`ScaffoldStart` (worker/tasks.py): x and, for each sampled client, c − c_i, one object
for all the workers. The server knows the round's clients because sampling is a pure
function of (seed, round) (federated.sample_clients), as the driver draws them. Each
worker answers its clients' own y_i and K (`ClientModels`); the server computes Δy_i,
c_i⁺ (from x, c, c_i and K, exactly option II: nothing of the control variates
travels back) and the step, in float64, and keeps x, c and c_i in float32.
K is a client's steps in the round: its local epochs times its steps per pass
(samples, or mini-batches of --batch-size; 1 for --batch-size 0), or `local_steps`
(the paper's own knob: K steps through the client's data, pass after pass, so that on
worker shards a round can be as short as a sync block); η_l is --lr.

Where dtrain departs from the paper: Δx is weighted by the clients' sample counts
(FedAvg's mean; the paper's uniform mean when clients are the same size, as in every
split dtrain makes), while Δc is the paper's, so that c stays the plain mean of the
c_i. On worker shards, `clients` = `workers` with every client each round: each
worker's shard is one client and a round one pass over it (K = its shard).
Results travel flat (one call, reduce.Flat): the server needs each client's model,
which a tree's partial sums would lose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from dtrain.cluster.algorithms.federated import FedAvg, sample_clients
from dtrain.cluster.reduce import Flat, exact_sum
from dtrain.model.corrected import warm_up_corrected
from dtrain.worker.tasks import ClientModels, ScaffoldClients, ScaffoldStart, Update


def gather(updates: Sequence[Update]) -> ClientModels:
    """The round's workers' answers as one ClientModels, rows in client order (so the sums
    do not depend on which worker hosted which client)."""
    answers = [u.weights for u in updates]
    rows = np.argsort([c for a in answers for c in a.clients], kind="stable")

    def column(field: str) -> tuple[int, ...]:
        return tuple(np.array([v for a in answers for v in getattr(a, field)])[rows].tolist())

    return ClientModels(column("clients"), column("sizes"), column("steps"), np.concatenate([a.models for a in answers])[rows])


def control_changes(x: np.ndarray, c: np.ndarray, models: np.ndarray, steps: np.ndarray, lr: float) -> tuple[np.ndarray, np.ndarray]:
    """(Δy, Δc), each (m, P) float64, from x and c (P,), the clients' y_i (m, P) and their K
    (m,): Δy_i = y_i − x and option II's Δc_i = c_i⁺ − c_i = −c + (x − y_i) / (K η_l)."""
    dy = models.astype(np.float64) - x
    dc = -dy / (np.asarray(steps, np.float64)[:, None] * lr)
    dc -= c
    return dy, dc


class ScaffoldRule:
    """The server side: x, c and every client's c_i; a round's clients' models -> the new x, c, c_i."""

    def __init__(self, eta_g: float, lr: float, n_clients: int, sampled: Callable[[int], list[int]]):
        self.eta_g, self.lr, self.n_clients, self.sampled = eta_g, lr, n_clients, sampled

    def reset(self, theta0: np.ndarray) -> None:
        self.x = theta0.astype(np.float32, copy=True)
        self.c = np.zeros_like(self.x)
        self.c_clients = np.zeros((self.n_clients, self.x.size), np.float32)  # row i: c_i
        self.step = np.zeros_like(self.x)  # x_{t+1} − x_t of the last round
        self.rounds_done = 0  # the next round's index: which clients its start is for

    def start(self) -> ScaffoldStart:
        clients = tuple(self.sampled(self.rounds_done))
        return ScaffoldStart(self.x, clients, self.c - self.c_clients[list(clients)])

    def model(self) -> np.ndarray:
        return self.x

    def apply(self, server: Any, updates: tuple[Update, ...]) -> None:
        got = gather(updates)
        expected = self.sampled(self.rounds_done)
        if list(got.clients) != expected:  # the driver and this rule drew another round's clients
            raise RuntimeError(f"round {self.rounds_done}: answers for clients {list(got.clients)}, expected {expected}")
        dy, dc = control_changes(self.x, self.c, got.models, np.asarray(got.steps), self.lr)
        sizes = np.asarray(got.sizes, np.float64)
        self.step[...] = self.eta_g * (sizes @ dy) / sizes.sum()  # η_g Δx, Δx weighted by the clients' data
        self.x += self.step
        self.c_clients[list(got.clients)] += dc.astype(np.float32)
        self.c += (dc.sum(axis=0) / self.n_clients).astype(np.float32)  # (|S|/N) Δc
        self.rounds_done += 1
        round_loss = exact_sum(float(u.loss) for u in updates)
        server.advance(round_loss, self.step)
        speeds = tuple((int(u.rank), int(u.samples), float(u.busy_s)) for u in updates)
        server.count(sum(int(u.samples) for u in updates), round_loss, sum(int(u.correct) for u in updates),
                     sum(int(u.restarted) for u in updates), speeds)

    def arrays(self) -> dict[str, np.ndarray]:
        # checkpoint.load reads every array back as float32: a round count is exact in it up to 2^24
        return {"global_theta": self.x, "delta": self.step, "start": self.x, "c": self.c, "c_clients": self.c_clients,
                "rounds_done": np.array([self.rounds_done], np.float32)}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.x, self.step, self.c, self.c_clients = (arrays[k].copy() for k in ("global_theta", "delta", "c", "c_clients"))
        self.rounds_done = int(arrays["rounds_done"][0])

    def epoch_figures(self) -> dict[str, Any]:
        return {}


class Scaffold(FedAvg):
    name = "scaffold"

    def momentum(self, rounds_in_period: int) -> float:
        return 0.0  # no server momentum: the step is η_g Δx

    def rule(self, plan: Any) -> ScaffoldRule:
        s = self.settings
        return ScaffoldRule(s.server_lr, self.spec.lr, s.clients, partial(sample_clients, self.spec.seed, s.clients, s.clients_per_round))

    def client_task(self, round_index: int, clients: tuple[int, ...], period: int) -> ScaffoldClients:
        return ScaffoldClients(round_index, clients, period, self.settings.local_steps)

    def reduction(self, node_of: list[str], group: Any) -> Flat:
        return Flat()  # the server needs each client's model, not a node's sum of them

    def warm_up(self, kernel: str, n_features: int) -> None:
        super().warm_up(kernel, n_features)
        warm_up_corrected(kernel, n_features)
