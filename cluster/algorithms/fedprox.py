"""FedProx (Li et al., 2020): federated averaging whose clients add a proximal term.

Each sampled client minimises its loss plus mu/2 * ||w - w_global||^2, w_global
being the round's start weights, which keeps clients on skewed data from
drifting far from the global model (model/prox.py has the SGD step). Everything
else is FedAvg's (federated.py); with mu = 0 it is FedAvg, bit for bit.
"""

from __future__ import annotations

from dtrain.cluster.algorithms.federated import FedAvg
from dtrain.model.prox import warm_up_prox
from dtrain.worker.tasks import Clients


class FedProx(FedAvg):
    name = "fedprox"

    def client_task(self, round_index: int, clients: tuple[int, ...], period: int) -> Clients:
        return Clients(round_index, clients, period, mu=self.settings.mu)

    def warm_up(self, kernel: str, n_features: int) -> None:
        super().warm_up(kernel, n_features)
        warm_up_prox(kernel, n_features)
