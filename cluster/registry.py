"""Jobs that live in the cluster: a job registry actor, and a runner actor for each running job.

Both are detached (the runner is job_runner.py) (they outlive the client that submitted the job) and stay on
the head node, next to the storage directory. The registry is found by name
in the "dtrain" namespace from any node; it gives each job a runner (runs.py)
and answers list/status/cancel/pull. The runner drives the job (data, parameter
server, workers) and is its record's only writer. Both are threaded actors, so
the registry answers while jobs start, run and stop.

A registry that dies is restarted by Ray under the same name, and calls to it
are retried (its methods are safe to run twice). It keeps nothing that the
storage directory does not: the restarted one takes up the running jobs of
its cluster again, each through its runner, found by the name the job's record
gives it, so a job never gets a second runner.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dtrain.cluster import placement
from dtrain.cluster.api_server import get_or_create_api
from dtrain.cluster.pool import PoolSettings, WarmPool
from dtrain.cluster.job_runner import NAMESPACE, REGISTRY_NAME
from dtrain.cluster.jobstore import DEFAULT_STORAGE, JobStore, Owner, check_resumable, resolve_root
from dtrain.cluster.runners import IdleRunner
from dtrain.cluster.runs import Runs
from dtrain.errors import Conflict, UserError
from dtrain.spec import JobSpec


def refusal(error: UserError) -> dict[str, Any]:
    """A refused request as the registry answers it: plain data the client makes a UserError of again."""
    return {"error": error.problem, "field": error.field}


class JobRegistry:
    """The cluster's jobs: submit, list, status, cancel, artifacts."""

    def __init__(self, storage: str | None):
        import ray

        # The head node's id: the same for a restarted registry, new with each cluster,
        # so records of an earlier cluster's jobs read as interrupted.
        self.id = ray.get_runtime_context().get_node_id()
        self.root = resolve_root(storage or DEFAULT_STORAGE)
        self.store = JobStore(self.root)
        self.pool = self._warm_pool()
        self.idle_runner = IdleRunner(str(self.root), self.pool.settings.idle_s)
        self.runs = Runs(self.store, self.idle_runner, self.pool)
        threading.Thread(target=self._reap_idle, daemon=True, name="dtrain-pool-reaper").start()
        self.runs.take_up(self.id)
        # The HTTP API starts with the registry (and again with a restarted one: the same actor if it lives).
        get_or_create_api(str(self.root))

    def _warm_pool(self) -> WarmPool:
        """The warm pool, as DTRAIN_POOL_* on the head ask; off (and `pool()` says why) if they are wrong."""
        from pydantic import ValidationError

        self.pool_problem = None
        try:
            settings = PoolSettings.from_env()
        except (UserError, ValidationError) as e:
            self.pool_problem = str(e).splitlines()[0] if isinstance(e, UserError) else f"DTRAIN_POOL_*: {e.errors()[0]['msg']}"
            settings = PoolSettings(idle_s=0)
        return WarmPool(settings, NAMESPACE)

    def _reap_idle(self) -> None:
        """Let go of warm workers idle too long (and those on lost nodes, or of ended jobs), every little while."""
        interval = min(60.0, max(1.0, self.pool.settings.idle_s / 4))
        while True:
            time.sleep(interval)  # a periodic sweep, not a wait for a condition
            try:
                self.pool.reap(self._job_done)
                self.idle_runner.reap()
            except Exception:  # a sweep that failed (Ray busy) is tried again next time
                continue

    def _job_done(self, job_id: str) -> bool:
        try:
            return self.store.load(job_id).done
        except UserError:  # no such job (any more)
            return True

    def lease_workers(self, job_id: str, nodes: list[str]) -> list[Any] | None:
        """Warm workers for a job, one on each of `nodes` (its placement group's bundles'); None if the pool is off."""
        if not self.pool.settings.enabled:
            return None
        return self.pool.lease(job_id, nodes)

    def release_workers(self, job_id: str) -> None:
        """Take a job's workers back into the pool (or end them, if the pool is off)."""
        self.pool.release(job_id)

    def pool_status(self) -> dict[str, Any]:
        """The warm pool: its settings, why it is off if it is, and each warm worker."""
        return {**self.pool.settings.model_dump(), "problem": self.pool_problem, "workers": self.pool.summary()}

    def pid(self) -> int:
        return os.getpid()

    def storage(self) -> str:
        return str(self.root)

    def check_storage(self, storage: str) -> str | None:
        """None if `storage` (as the head node reads it) is where this registry keeps jobs, else why not."""
        if Path(storage).expanduser().resolve() == self.root.resolve():
            return None
        return (
            f"this cluster's dtrain registry keeps its jobs in {self.root} (on the head node), "
            f"not {storage}; omit `storage`, or restart the cluster to change it"
        )

    def submit(self, spec: JobSpec, job_id: str) -> dict[str, Any]:
        """Start a job (the client chose its id): its record (PENDING) and its runner.
        Returns the record, or why it was refused (`refusal`). Run again with the same
        arguments (Ray retries it after a restart), it returns the job the first call made."""
        try:
            self.store.create(spec, self._owner(), job_id)
        except UserError as e:
            return refusal(e)
        except FileExistsError:
            record = self.store.load(job_id)
            if record.spec != spec:
                return {"error": f"job id {job_id} is taken; submit again"}
            if record.done or self.runs.has(job_id):
                return record.model_dump(mode="json")
        return self._launch(job_id, refused=lambda problem: self.store.forget(job_id))

    def resume(self, job_id: str) -> dict[str, Any]:
        """Start a FAILED or CANCELLED job again from its last checkpoint (e.g. after a cluster restart)."""
        record = self.store.live(job_id, self.id)
        check_resumable(record)
        if self.runs.has(job_id):
            raise Conflict(f"job {job_id} is already being resumed")
        self.store.reopen(job_id, self._owner())
        return self._launch(job_id, refused=lambda problem: self.store.save(record))

    def _owner(self) -> Owner:
        import ray

        return Owner(runtime="cluster", host=ray.util.get_node_ip_address(), registry=self.id)

    def _launch(self, job_id: str, refused: Callable[[str], None]) -> dict[str, Any]:
        """Start the job's runner (runs.py); its record once the runner has checked the job can run."""
        problem = self.runs.launch(job_id, refused)
        return refusal(problem) if problem else self.store.load(job_id).model_dump(mode="json")

    # Reads go to the store, as in local mode; answers are plain data for the client.
    def jobs(self) -> list[dict[str, Any]]:
        return [r.model_dump(mode="json") for r in self.store.live_records(self.id)]

    def job(self, job_id: str) -> dict[str, Any]:
        return self.store.live(job_id, self.id).model_dump(mode="json")

    def metrics(self, job_id: str, since: int = 0) -> list[dict[str, Any]]:
        return self.store.metrics(job_id, since)

    def artifact(self, job_id: str, name: str) -> bytes | None:
        return self.store.read_artifact(job_id, name)

    def report(self, job_id: str) -> dict[str, Any]:
        return self.store.report(job_id)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Stop a job and wait until it has stopped; returns its final record."""
        record = self.store.live(job_id, self.id)
        if record.done:
            raise Conflict(f"job {job_id} has already ended: {record.state}")
        return self.runs.stop(job_id).model_dump(mode="json")


def get_registry() -> Any:
    """The cluster's registry, from any process of the cluster (ValueError if there is none yet)."""
    import ray

    return ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE)


def get_or_create_registry(storage: str | None) -> Any:
    """The cluster's registry (created on first use, on the head node, with `storage` as its root).

    Raises UserError when the registry already keeps its jobs somewhere other than an explicitly asked `storage`.
    """
    import ray

    registry = placement.head_service(
        JobRegistry,
        REGISTRY_NAME,
        get_if_exists=True,
        max_concurrency=64,  # status and list answer while submits and cancels wait
        # Ray restarts a lost registry under the same name and runs the calls it was
        # answering again: each method is safe to run twice (submit by its job id).
        max_restarts=-1,
        max_task_retries=-1,
    ).remote(storage)
    problem = storage and ray.get(registry.check_storage.remote(storage))
    if problem:
        raise UserError(problem, "storage")
    return registry
