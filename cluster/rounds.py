"""Sending a synchronous round's tasks to the workers: one Ray call per worker process.

Used by the parameter server, which runs a flat job's rounds itself
(`ParameterServer.train_period`): the workers answer it directly, so a round's
weights make two hops (out to the workers, back to the server) instead of four
through the job's driver. A tree reduction's rounds, chained by the driver through
the nodes' reducers (algorithms/base.py `Run.train_period`), go out the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dtrain.worker.tasks import Task

#: A worker process as a round reaches it: its actor handle, the ranks of the workers it hosts,
#: and the threads it trains them on.
Host = tuple[Any, tuple[int, ...], int]


def threads(ranks: int, share: float) -> int:
    """The threads a process hosting `ranks` workers of `share` CPUs each trains them on: one
    per CPU their shares add up to (at least one, at most one per worker)."""
    return max(1, min(ranks, round(ranks * share)))


def hosts_of(workers: Sequence[Any], share: float) -> list[Host]:
    """The worker processes behind `workers` (one handle per rank; workers packed into one
    process share a handle, cluster/workers.py), each with its ranks, in order of first rank,
    and a thread per CPU its workers' shares (`share` each) add up to."""
    by_handle: dict[int, tuple[Any, list[int]]] = {}
    for rank, worker in enumerate(workers):
        by_handle.setdefault(id(worker), (worker, []))[1].append(rank)
    return [(worker, tuple(ranks), threads(len(ranks), share)) for worker, ranks in by_handle.values()]


def send_round(hosts: Sequence[Host], assignments: Sequence[Any], start: Any, tasks: dict[int, Task]) -> dict[int, Any]:
    """Every worker with a task in `tasks` (rank -> Task) runs it from `start`: the results'
    references by rank, in the hosts' order. A process that hosts several of them trains them
    in one call (Worker.train_many), on its threads, and still returns a reference per worker:
    each result stays small enough to travel inside Ray's replies (cluster/connect.py), and the
    server sums them in rank order whatever the processes."""
    refs: dict[int, Any] = {}
    for worker, ranks, n_threads in hosts:
        mine = [rank for rank in ranks if rank in tasks]
        if len(mine) == 1:
            refs[mine[0]] = worker.train.remote(start, tasks[mine[0]], assignments[mine[0]])
        elif mine:
            answers = worker.train_many.options(num_returns=len(mine)).remote(
                start, tuple(tasks[r] for r in mine), tuple(assignments[r] for r in mine), n_threads)
            refs.update(zip(mine, answers))
    return refs
