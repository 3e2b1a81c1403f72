"""Sending a synchronous round's tasks to the workers: one Ray call per worker process.

Used by the parameter server, which runs a flat job's rounds itself
(`ParameterServer.train_period`): the workers answer it directly, so a round's
weights make two hops (out to the workers, back to the server) instead of four
through the job's driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dtrain.worker.tasks import Task

#: A worker process as a round reaches it: its actor handle, and the ranks of the workers it hosts.
Host = tuple[Any, tuple[int, ...]]


def hosts_of(workers: Sequence[Any]) -> list[Host]:
    """The worker processes behind `workers` (one handle per rank; workers packed into one
    process share a handle, cluster/workers.py), each with its ranks, in order of first rank."""
    by_handle: dict[int, tuple[Any, list[int]]] = {}
    for rank, worker in enumerate(workers):
        by_handle.setdefault(id(worker), (worker, []))[1].append(rank)
    return [(worker, tuple(ranks)) for worker, ranks in by_handle.values()]


def send_round(hosts: Sequence[Host], assignments: Sequence[Any], start: Any, tasks: dict[int, Task]) -> list:
    """Every worker with a task in `tasks` (rank -> Task) runs it from `start`: the results'
    references, one per worker. A process that hosts several of them trains them in one call
    (Worker.train_many) that still returns a reference per worker: each result stays small
    enough to travel inside Ray's replies (cluster/connect.py), and the server sums them in
    rank order whatever the processes."""
    refs = []
    for worker, ranks in hosts:
        mine = [rank for rank in ranks if rank in tasks]
        if len(mine) == 1:
            refs.append(worker.train.remote(start, tasks[mine[0]], assignments[mine[0]]))
        elif mine:
            refs.extend(worker.train_many.options(num_returns=len(mine)).remote(
                start, tuple(tasks[r] for r in mine), tuple(assignments[r] for r in mine)))
    return refs
