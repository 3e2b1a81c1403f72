"""FedAdam (Reddi et al., 2021, "Adaptive Federated Optimization", Algorithm 2).

Clients train exactly as in FedAvg (federated.py): each round the sampled
clients start from the global model x_t and run their local epochs of SGD.
The server then treats the round's change as a pseudo-gradient and steps with
Adam, in the paper's notation:

    Δ_t = Σ_i n_i x_i / Σ_i n_i − x_t        the sampled clients' mean, minus the model
    m_t = β1 m_{t−1} + (1 − β1) Δ_t
    v_t = β2 v_{t−1} + (1 − β2) Δ_t²          (FedYogi: fedyogi.py)
    x_{t+1} = x_t + η m_t / (√v_t + τ)

with m_{−1} = 0 and v_{−1} = τ² (the paper asks v_{−1} ≥ τ²). Settings: η is
`server_lr`, β1 `beta1`, β2 `beta2`, τ `tau` (spec.FedAdam). Where dtrain
departs from the paper: the clients' mean is weighted by their sample counts
(FedAvg's; the paper's uniform mean when clients are the same size, as here),
and, as in the paper's algorithm, no bias correction. The server works in
float32, its arrays updated in place.

On worker shards: with `clients` = `workers` (and every client each round),
each worker's shard is one client and a round is one pass over it, so the same
rule is server-side Adam over the workers' shards.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dtrain.cluster.algorithms.federated import FedAvg
from dtrain.cluster.reduce import as_partials, exact_sum, sum_partials
from dtrain.model.average import mean_of_sum


class AdamRule:
    """The server side: a round's clients' mean -> the pseudo-gradient Δ -> an Adam step."""

    def __init__(self, eta: float, beta1: float, beta2: float, tau: float):
        self.eta, self.beta1, self.beta2, self.tau = (np.float32(v) for v in (eta, beta1, beta2, tau))

    def reset(self, theta0: np.ndarray) -> None:
        self.x = theta0.astype(np.float32, copy=True)
        self.m = np.zeros_like(self.x)
        self.v = np.full_like(self.x, self.tau * self.tau)
        self.step = np.zeros_like(self.x)  # x_{t+1} - x_t of the last round

    def start(self) -> np.ndarray:
        return self.x

    def model(self) -> np.ndarray:
        return self.x

    def second_moment(self, delta_sq: np.ndarray) -> None:
        """v_t from v_{t−1} and Δ_t², in place: Adam's exponential average."""
        self.v *= self.beta2
        self.v += (1 - self.beta2) * delta_sq

    def apply(self, server: Any, updates: tuple[Any, ...]) -> None:
        total, samples, losses, correct, restarts, speeds = sum_partials(as_partials(updates))
        delta = mean_of_sum(total, samples, self.x.dtype) - self.x
        self.m *= self.beta1
        self.m += (1 - self.beta1) * delta
        self.second_moment(delta * delta)
        np.divide(self.eta * self.m, np.sqrt(self.v) + self.tau, out=self.step)
        self.x += self.step
        round_loss = exact_sum(losses)
        server.advance(round_loss, self.step)
        server.count(samples, round_loss, correct, restarts, speeds)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"global_theta": self.x, "delta": self.step, "start": self.x, "m": self.m, "v": self.v}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.x, self.step, self.m, self.v = (arrays[k].copy() for k in ("global_theta", "delta", "m", "v"))

    def epoch_figures(self) -> dict[str, Any]:
        return {}


class FedAdam(FedAvg):
    name = "fedadam"
    rule_class: type[AdamRule] = AdamRule  # FedYogi's is YogiRule

    def momentum(self, rounds_in_period: int) -> float:
        return 0.0  # the server's momentum is Adam's m (beta1), not block momentum

    def rule(self, plan: Any) -> AdamRule:
        s = self.settings
        return self.rule_class(s.server_lr, s.beta1, s.beta2, s.tau)
