"""FedYogi (Reddi et al., 2021, "Adaptive Federated Optimization", Algorithm 2).

FedAdam (fedadam.py) with Yogi's second moment (Zaheer et al., 2018), which
grows or shrinks v by at most (1 − β2) Δ² a round instead of averaging it, so a
few large rounds do not shrink the steps of the many after them:

    v_t = v_{t−1} − (1 − β2) Δ_t² sign(v_{t−1} − Δ_t²)

Everything else, the clients' training, m_t and the step
x_{t+1} = x_t + η m_t / (√v_t + τ), is FedAdam's.
"""

from __future__ import annotations

import numpy as np

from dtrain.cluster.algorithms.fedadam import AdamRule, FedAdam


class YogiRule(AdamRule):
    def second_moment(self, delta_sq: np.ndarray) -> None:
        """v_t from v_{t−1} and Δ_t², in place: Yogi's additive update."""
        self.v -= (1 - self.beta2) * delta_sq * np.sign(self.v - delta_sq)


class FedYogi(FedAdam):
    name = "fedyogi"
    rule_class = YogiRule
