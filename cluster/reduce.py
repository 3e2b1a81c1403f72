"""Tree reduction: one reducer per node sums its workers' round results into one partial.

The parameter server applies a round in one call; with a flat reduction that call
fetches one argument object per worker, which is what saturates it first as K
grows (benchmarks/ps_ceiling.py: 56% of applying a K = 64 round of the default model).
With the tree, a `NodeReducer` on each node that hosts workers of the job takes
that node's results (local objects, no network) and returns one partial:

    (sum_k n_k * theta_k in float64, samples, (each worker's loss sum, ...), correct, restarted,
     (each worker's (rank, samples, busy seconds), ...))

and the server applies one partial per node (`ParameterServer.apply`).
The products n_k * theta_k are exact in float64 and the flat reduction sums the
same products (model/average.py); their sums round only where one weight's
values on different workers are orders of magnitude apart, so both reductions,
whatever the grouping, give the same weights to the last bit in practice (the
tests' jobs and the two-node recovery jobs, tree or flat, end with identical
model files). The losses travel unsummed and the server adds them exactly
(math.fsum), so the epoch totals are identical too.

The tree adds a hop to every round, which pays only when the server's
fetches it saves outweigh it: on one node never (the reducers and the server
share the same cores: +16% training time at 8 workers), and with few workers
per node not either (+43% with 4 workers on a two-node cluster on one machine).
At K = 64 it cut the server's apply 2.5-3.9x. So `reduce="auto"` uses it for
jobs of at least `TREE_MIN_WORKERS` workers spread over two or more nodes.
Asynchronous mode pushes each worker's change on its own and never uses it
(cluster/algorithms/asynchronous.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dtrain.worker.tasks import Partial, Update, partial_sum

if TYPE_CHECKING:
    from dtrain.spec import JobSpec

#: A worker's round result, as Worker.train returns it (worker/tasks.py's Update):
#: (weights float32, samples, loss sum, correct, 1 if restarted else 0, server version it started from).
Result = tuple

__all__ = ["Partial", "partial_sum", "sum_partials", "exact_sum", "as_partials", "Flat", "Tree", "NodeReducer"]


#: Times Ray restarts a killed reducer in its place before the job gives up on it (as for a worker).
REDUCER_RESTARTS = 10


def exact_sum(values: Iterable[float]) -> float:
    """The sum of the values correctly rounded (math.fsum), so the same in any order or grouping.
    With an infinite or NaN value (a diverged round) the plain sum, which is not finite either."""
    values = list(values)
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):
        return sum(values)


def sum_partials(partials: Sequence[Partial]) -> Partial:
    """The root of the tree: the partials of a round -> the round's whole partial."""
    if not partials:
        raise ValueError("no partials to sum")
    total = np.array(partials[0][0], dtype=np.float64, copy=True)  # arguments from Ray are read-only
    for p in partials[1:]:
        total += p[0]
    return Partial(
        total,
        sum(p[1] for p in partials),
        tuple(loss for p in partials for loss in p[2]),
        sum(p[3] for p in partials),
        sum(p[4] for p in partials),
        tuple(speed for p in partials for speed in p.speeds),
    )


def as_partials(updates: Sequence[Result | Partial]) -> list[Partial]:
    """`apply`'s arguments as partials: workers' results (a flat reduction) summed into one in
    rank order, whatever the processes, partials (from the reducers of a tree) as they are."""
    results = sorted((u for u in updates if not isinstance(u, Partial)), key=lambda r: getattr(r, "rank", -1))
    return ([partial_sum(results)] if results else []) + [u for u in updates if isinstance(u, Partial)]


class NodeReducer:
    """Sums the round results of the job's workers on its node (one actor, one job).

    Created by the runner in the placement-group bundle of the node's first
    worker, so it runs where those results are and is restarted with them.
    `reduce` depends on its arguments alone: a call that Ray runs again after a
    restart returns exactly what the first would have.
    """

    def ready(self) -> dict:
        """Answers once the actor is up: its node and process id."""
        import os

        import ray

        return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def reduce(self, *results: Result) -> Partial:
        """This node's workers' results of one round (object refs resolved by Ray) -> one partial."""
        return partial_sum(results)


#: The fewest workers for which reduce="auto" builds a tree (with two nodes or more). The flat
#: reduction costs ~0.12 ms per worker result more than the tree's server side, against one
#: reducer hop of a few ms: it pays from a few dozen workers (benchmarks/ps_ceiling.py).
TREE_MIN_WORKERS = 32


def use_tree(spec: JobSpec, node_of: Sequence[str]) -> bool:
    """Whether a job whose workers run on the nodes `node_of` (in rank order) reduces in a tree."""
    reduce = getattr(spec.algorithm, "reduce", "flat")  # async has none: each push is one worker's
    if reduce == "auto":
        return len(set(node_of)) >= 2 and len(node_of) >= TREE_MIN_WORKERS
    return reduce == "tree"


def groups_by_node(node_of: Sequence[str]) -> dict[str, list[int]]:
    """Worker ranks by node, nodes in the order of their first worker."""
    groups: dict[str, list[int]] = {}
    for rank, node in enumerate(node_of):
        groups.setdefault(node, []).append(rank)
    return groups


class Flat:
    """The flat reduction: all of a round's results go to the server in one call, which sums them."""

    name = "flat"

    def apply_round(self, server: Any, results: dict[int, Any]) -> Any:
        """Have the server apply one round (worker rank -> result ref); the ref of the next start weights."""
        return server.apply.remote(*results.values())

    def wait_ready(self, timeout_s: float) -> None:
        pass

    def summary(self) -> list[dict[str, Any]]:
        return []

    def kill(self) -> None:
        pass


@dataclass
class Tree:
    """One NodeReducer per node that hosts workers of the job, and the worker ranks each one sums."""

    reducers: list[Any]
    groups: list[list[int]]
    nodes: list[str]
    answers: list[dict] = field(default_factory=list)
    name = "tree"

    @classmethod
    def create(cls, node_of: Sequence[str], group: Any) -> Tree:
        """Start the reducers of workers on the nodes `node_of` (rank order), each one in the
        placement-group bundle of its node's first worker (bundle index = rank)."""
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        by_node = groups_by_node(node_of)
        reducer_actor = ray.remote(NodeReducer)  # one class export for all the reducers
        reducers = [
            reducer_actor.options(
                num_cpus=0,
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=ranks[0]),
                max_restarts=REDUCER_RESTARTS,
                max_task_retries=-1,  # reduce is a pure function of its arguments: safe to run again
            )
            .remote()
            for ranks in by_node.values()
        ]
        return cls(reducers, list(by_node.values()), list(by_node))

    def apply_round(self, server: Any, results: dict[int, Any]) -> Any:
        """Submit one round through the reducers (a node none of whose workers trained this
        round, as in a federated round that sampled none of its clients, is left out)."""
        partials = [
            reducer.reduce.remote(*[results[rank] for rank in ranks if rank in results])
            for reducer, ranks in zip(self.reducers, self.groups)
            if any(rank in results for rank in ranks)
        ]
        return server.apply.remote(*partials)

    def wait_ready(self, timeout_s: float) -> None:
        """Wait until every reducer is up (where its workers are)."""
        import ray

        ready = [r.ready.remote() for r in self.reducers]
        _, pending = ray.wait(ready, num_returns=len(ready), timeout=timeout_s)
        if pending:
            raise RuntimeError(f"{len(pending)} of {len(ready)} reducers could not be started within {timeout_s:.0f} s")
        self.answers = ray.get(ready)

    def summary(self) -> list[dict[str, Any]]:
        """For the report: each reducer's node (as the reducer itself says), pid and workers."""
        answers = self.answers or [{"node": node, "pid": None} for node in self.nodes]
        return [{"node": a["node"], "pid": a["pid"], "workers": ranks} for a, ranks in zip(answers, self.groups)]

    def kill(self) -> None:
        import ray

        for reducer in self.reducers:
            ray.kill(reducer)


def reduction_for(spec: JobSpec, node_of: Sequence[str], group: Any) -> Flat | Tree:
    """How the rounds of a job whose workers were placed on `node_of` (rank order) reach the server."""
    return Tree.create(node_of, group) if use_tree(spec, node_of) else Flat()
