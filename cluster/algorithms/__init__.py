"""The training algorithms, one module each; adding one is a module and a line in ALGORITHMS.

- bmuf.py: synchronous rounds with block momentum (and plain averaging)
- asynchronous.py: staleness-aware pushes, no round barrier
- federated.py: federated averaging over virtual clients
- fedprox.py: federated averaging with a proximal term
- fedadam.py, fedyogi.py: federated averaging whose server steps with Adam or Yogi
- scaffold.py: federated averaging whose clients correct their drift with control variates

base.py says what each provides: its schedule, its workers' tasks, its server
rule and its driver loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dtrain.cluster.algorithms.asynchronous import Async
from dtrain.cluster.algorithms.base import Algorithm, RoundPlan, Run
from dtrain.cluster.algorithms.bmuf import SyncRounds
from dtrain.cluster.algorithms.fedadam import FedAdam
from dtrain.cluster.algorithms.federated import FedAvg
from dtrain.cluster.algorithms.fedprox import FedProx
from dtrain.cluster.algorithms.fedyogi import FedYogi
from dtrain.cluster.algorithms.scaffold import Scaffold

if TYPE_CHECKING:
    from dtrain.spec import JobSpec

ALGORITHMS: dict[str, type[Algorithm]] = {a.name: a for a in (SyncRounds, Async, FedAvg, FedProx, FedAdam, FedYogi, Scaffold)}


def algorithm_for(spec: JobSpec) -> Algorithm:
    """The algorithm that trains `spec` (its settings, `spec.algorithm`, name it)."""
    return ALGORITHMS[spec.algorithm.name](spec)


__all__ = ["ALGORITHMS", "Algorithm", "RoundPlan", "Run", "algorithm_for"]
