"""The warm pool: worker processes a cluster keeps between jobs, so that a job adopts them.

Starting a job's workers costs a process each (~0.5 s) and numba's kernel
loading in every one of them; on a running cluster the previous job already
paid for both. The registry keeps the workers a job is done with, idle, and
leases them to the next job that needs workers on their node:

- A warm worker is a detached named actor ("warm-<node id>-<n>", namespace
  "dtrain") that asks for **no CPUs**, pinned to its node. A job reserves its
  CPUs with its placement group and leases one warm worker per CPU it reserves
  on a node (one per worker if it cannot pack): an idle pool reserves nothing.
- A worker holds no job of its own: every call that trains carries the job's
  assignment (worker/actor.py). A warm worker Ray restarts mid-job comes back
  empty and takes its shard back on the call Ray retries, as a job's own
  workers do; results are the same bit for bit, pooled or not.
- Leases live here, in the registry, under one lock, so two jobs never get the
  same worker. A restarted registry asks each warm worker which job it serves.
- Let go: a worker idle for `idle_s` (DTRAIN_POOL_IDLE_S, default 10 minutes; 0
  turns the pool off); the longest idle of a node over `memory_mib` of resident
  memory (DTRAIN_POOL_MEMORY_MIB); those on a lost node or of a job that ended.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from dtrain.cluster.workers import RESTARTABLE, OwnWorkers, process_ranks
from dtrain.errors import UserError
from dtrain.worker.actor import Worker

#: The names of warm workers start with this (then the node id).
PREFIX = "warm-"

#: How long a warm worker may take to answer before it counts as lost.
ANSWER_TIMEOUT_S = 10.0

#: How long the registry may take to lease or take back a job's workers.
LEASE_TIMEOUT_S = 3 * ANSWER_TIMEOUT_S + 30.0


class PoolSettings(BaseModel):
    """How much the pool keeps, set where `ray start --head` runs."""

    idle_s: float = Field(600.0, ge=0, description="Seconds an idle warm worker is kept (DTRAIN_POOL_IDLE_S); 0: no pool.")
    memory_mib: float = Field(
        4096.0, ge=0, description="Resident memory the idle warm workers of one node may use (DTRAIN_POOL_MEMORY_MIB)."
    )

    @classmethod
    def from_env(cls) -> PoolSettings:
        values = {}
        for field, variable in (("idle_s", "DTRAIN_POOL_IDLE_S"), ("memory_mib", "DTRAIN_POOL_MEMORY_MIB")):
            raw = os.environ.get(variable)
            if raw is None:
                continue
            try:
                values[field] = float(raw)
            except ValueError:
                raise UserError(f"{variable}={raw!r}: expected a number", variable) from None
        return cls(**values)

    @property
    def enabled(self) -> bool:
        return self.idle_s > 0


@dataclass
class Warm:
    """A warm worker as the pool knows it."""

    name: str
    node: str
    handle: Any
    job: str | None = None  # the job it is leased to
    idle_since: float = 0.0  # time.monotonic() when last released
    rss_mib: float = 0.0  # resident memory when last released
    pid: int | None = None  # its process, once it has answered


def node_of(name: str) -> str:
    """The node id a warm worker's name carries."""
    return name[len(PREFIX) :].rsplit("-", 1)[0]


def alive_node_ids() -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


class WarmPool:
    """The warm workers of a cluster, and which job each serves. Lives in the registry actor."""

    def __init__(self, settings: PoolSettings, namespace: str):
        self.settings, self.namespace = settings, namespace
        self.lock = threading.Lock()
        self.workers: dict[str, Warm] = {}
        # One actor class for every warm worker: Ray exports a class once per ray.remote().
        import ray

        self.worker_class = ray.remote(Worker)
        self._find_existing()

    def _find_existing(self) -> None:
        """Take up the warm workers a lost registry left: each says which job it serves."""
        import ray

        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["namespace"] == self.namespace and a["name"].startswith(PREFIX)]
        found = []
        for name in names:
            try:
                found.append(Warm(name, node_of(name), ray.get_actor(name, namespace=self.namespace)))
            except ValueError:  # gone meanwhile
                continue
        answers = self._ask(found, "state")
        now = time.monotonic()
        for warm in found:
            state = answers.get(warm.name)
            if state is None:  # dead, or not answering: let it go
                self._drop(warm)
                continue
            warm.job, warm.idle_since, warm.rss_mib, warm.pid = state["job"], now - state["idle_s"], state["rss_mib"], state["pid"]
            self.workers[warm.name] = warm

    def lease(self, job_id: str, nodes: list[str]) -> list[Any]:
        """One worker on each of `nodes` (a node may be named more than once) for `job_id`:
        an idle warm one that answers, else a new one. Returns their handles, in that order."""
        with self.lock:
            chosen: list[Warm | None] = []
            taken: set[str] = set()
            for node in nodes:
                idle = [w for w in self.workers.values() if w.node == node and w.job is None and w.name not in taken]
                pick = max(idle, key=lambda w: w.idle_since, default=None)  # the most recently used: the others may go
                if pick is not None:
                    taken.add(pick.name)
                chosen.append(pick)
            # A warm worker that died while idle (its node lost, its process killed) is replaced.
            alive = self._ask([w for w in chosen if w is not None], "lease", job_id)
            for i, node in enumerate(nodes):
                warm = chosen[i]
                if warm is None or warm.name not in alive:
                    if warm is not None:
                        self._drop(warm)
                    warm = chosen[i] = self._new(node)
                    warm.handle.lease.remote(job_id)  # so that a restarted registry reads it as taken
                warm.job, warm.pid = job_id, alive.get(warm.name, {}).get("pid")
            return [w.handle for w in chosen if w is not None]

    def _ask(self, warm: list[Warm], method: str, *args: Any) -> dict[str, dict]:
        """Call `method` (one that answers `Worker.state()`) on each; the answers by name,
        leaving out those that died or did not answer in time."""
        import ray

        refs = {getattr(w.handle, method).remote(*args): w.name for w in warm}
        if not refs:
            return {}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=ANSWER_TIMEOUT_S)
        answers = {}
        for ref in ready:
            try:
                answers[refs[ref]] = ray.get(ref)
            except Exception:  # it died
                continue
        return answers

    def _new(self, node: str) -> Warm:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        name = f"{PREFIX}{node}-{uuid.uuid4().hex[:8]}"
        handle = (
            self.worker_class.options(
                name=name,
                namespace=self.namespace,
                lifetime="detached",
                num_cpus=0,  # the job's placement group reserves its CPUs; an idle pool reserves none
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
                **RESTARTABLE,
            )
            .remote()
        )
        warm = self.workers[name] = Warm(name, node, handle)
        return warm

    def _drop(self, warm: Warm) -> None:
        import ray

        self.workers.pop(warm.name, None)
        try:
            ray.kill(warm.handle)
        except Exception:
            pass

    def release(self, job_id: str) -> None:
        """Take back the workers leased to `job_id`: each lets go of its shard and waits, idle,
        for the next job (one that does not answer is let go). Then keep within the budget."""
        with self.lock:
            leased = [w for w in self.workers.values() if w.job == job_id]
            alive_nodes = alive_node_ids()
            # Those on a lost node cannot answer: not waiting for them keeps a job's recovery prompt.
            answers = self._ask([w for w in leased if w.node in alive_nodes], "release") if self.settings.enabled else {}
            now = time.monotonic()
            for warm in leased:
                if warm.name not in answers:
                    self._drop(warm)
                    continue
                warm.job, warm.idle_since = None, now
                warm.rss_mib, warm.pid = answers[warm.name]["rss_mib"], answers[warm.name]["pid"]
            self._keep_within_memory()

    def _keep_within_memory(self) -> None:
        by_node: dict[str, list[Warm]] = {}
        for w in self.workers.values():
            if w.job is None:
                by_node.setdefault(w.node, []).append(w)
        for idle in by_node.values():
            idle.sort(key=lambda w: w.idle_since, reverse=True)
            used = 0.0
            for warm in idle:
                used += warm.rss_mib
                if used > self.settings.memory_mib:
                    self._drop(warm)

    def reap(self, job_done: Any = lambda job_id: False) -> list[str]:
        """Let go of idle workers past the idle time, those on lost nodes, and those leased to
        jobs that have ended (`job_done(job id)`). Returns their names."""
        alive_nodes = alive_node_ids()
        now = time.monotonic()
        with self.lock:
            gone = [
                w for w in self.workers.values()
                if w.node not in alive_nodes
                or (w.job is None and now - w.idle_since >= self.settings.idle_s)
                or (w.job is not None and job_done(w.job))
            ]
            for warm in gone:
                self._drop(warm)
            return [w.name for w in gone]

    def summary(self) -> list[dict[str, Any]]:
        """The pool as `dtrain status` shows it: each warm worker's node, job, idle time and memory."""
        now = time.monotonic()
        with self.lock:
            return [
                {"name": w.name, "node": w.node, "job": w.job, "pid": w.pid,
                 "idle_s": None if w.job else round(now - w.idle_since, 1), "rss_mib": round(w.rss_mib, 1)}
                for w in sorted(self.workers.values(), key=lambda w: (w.node, w.name))
            ]


class PooledWorkers:
    """A cluster job's workers, leased from the warm pool on its placement group's nodes and
    given back when done; with `pack`, one warm process per CPU the job reserves on a node."""

    def __init__(self, registry: Any, job_id: str, pack: bool = False):
        self.registry, self.job_id, self.pack = registry, job_id, pack
        self.own: OwnWorkers | None = None  # when the pool is off

    def bundles(self, workers: int, share: float) -> list[float]:
        """One bundle per worker, spread over the nodes."""
        return [share] * workers

    def start(self, group: Any, workers: int, share: float) -> list:
        """The warm worker hosting each rank, in rank order."""
        import ray

        from dtrain.cluster.placement import bundle_nodes

        ranks_on: dict[str, list[int]] = {}
        for rank, node in enumerate(bundle_nodes(group)):
            ranks_on.setdefault(node, []).append(rank)
        processes = [  # (node, the ranks its process hosts)
            (node, [ranks[i] for i in hosted])
            for node, ranks in ranks_on.items() for hosted in process_ranks(len(ranks), share, self.pack)
        ]
        leased = ray.get(self.registry.lease_workers.remote(self.job_id, [node for node, _ in processes]),
                         timeout=LEASE_TIMEOUT_S)
        if leased is None:
            self.own = OwnWorkers()
            return self.own.start(group, workers, share)
        by_rank: list[Any] = [None] * workers
        for actor, (_, ranks) in zip(leased, processes):
            for rank in ranks:
                by_rank[rank] = actor
        return by_rank

    def finish(self, workers: list) -> None:
        import ray

        if self.own is not None:
            self.own.finish(workers)
        else:
            ray.get(self.registry.release_workers.remote(self.job_id), timeout=LEASE_TIMEOUT_S)
