"""The registry's running jobs: each one's runner, from its start to its end (registry.py).

A job gets a runner (the idle one, else a new one: runners.py), named in its
record; the runner checks the job can run, and then runs it while a thread here
waits for its end. A runner that ends its job writes the final state itself; one
that was killed (cancelled too slowly) or died for good cannot, and the watch
then records how the job ended. A restarted registry takes up its cluster's
running jobs again, each through the runner its record names, so a job never
gets a second runner.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dtrain.cluster.job_runner import NAMESPACE, runner_name
from dtrain.cluster.jobstore import JobRecord, JobStore, wait_for_local_cancel
from dtrain.cluster.pool import WarmPool
from dtrain.cluster.runners import IdleRunner
from dtrain.errors import UserError

#: How long a cancelled job may take to stop by itself before its runner is killed.
CANCEL_GRACE_S = 15.0

#: How long a runner may take to start and check its job before the submit is refused.
PREPARE_TIMEOUT_S = 120.0


@dataclass
class Running:
    runner: Any
    name: str = ""  # the runner's actor name
    ended: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False


class Runs:
    """The jobs of a registry that have a runner, by job id."""

    def __init__(self, store: JobStore, idle_runner: IdleRunner, pool: WarmPool):
        self.store, self.idle_runner, self.pool = store, idle_runner, pool
        self.running: dict[str, Running] = {}
        self.lock = threading.Lock()

    def has(self, job_id: str) -> bool:
        with self.lock:
            return job_id in self.running

    def take_up(self, registry: str) -> None:
        """After a registry restart: watch again each job of this cluster (registry id `registry`)
        that has not ended, through its runner if it still has one, else through a new runner
        that resumes it (a job whose runner had not started yet when the registry was lost)."""
        import ray

        named = set()
        for record in self.store.records():
            if record.done or record.owner.runtime != "cluster" or record.owner.registry != registry:
                continue
            name = record.owner.runner or runner_name(record.id)
            running = self.running[record.id] = Running(runner=None, name=name)
            named.add(name)
            try:
                running.runner = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:  # no runner by that name
                threading.Thread(target=self._start, args=(record.id, running, self._refused_later), daemon=True).start()
            else:
                threading.Thread(target=self._watch, args=(record.id, running), daemon=True).start()
        self.idle_runner.let_go_unnamed(named)  # the lost registry's idle runner: no record names it

    def _refused_later(self, job_id: str, problem: UserError) -> None:
        self.store.update(job_id, state="FAILED", message=str(problem), ended_at=time.time())

    def launch(self, job_id: str, refused: Callable[[str], None]) -> UserError | None:
        """Start the job's runner; once it has checked the job can run, let it run and watch it.
        Returns why the job cannot run (having called `refused(why)`), or None."""
        with self.lock:
            if job_id in self.running:
                return UserError(f"job {job_id} is already running")
            running = Running(runner=None)
            self.running[job_id] = running  # from now on `stop` finds it, even while it prepares
        return self._start(job_id, running, lambda _, why: refused(str(why)))

    def _start(self, job_id: str, running: Running, refused: Callable[[str, UserError], None]) -> UserError | None:
        """Give the job a runner and have it check the job; then watch it run. Returns why it
        cannot run (having called `refused(job_id, why)` and let the runner go), or None."""
        import ray

        try:
            problem = self._prepare(job_id, running)
        except Exception as e:  # the runner could not even start
            problem = UserError(f"the job's runner did not start: {type(e).__name__}")
            if running.runner is not None:
                ray.kill(running.runner)
        else:
            if problem:  # the job cannot run; its runner can run the next
                self.idle_runner.keep(running.name, running.runner)
        if problem:
            with self.lock:
                self.running.pop(job_id, None)
            refused(job_id, problem)
            running.ended.set()
            return problem
        threading.Thread(target=self._watch, args=(job_id, running), daemon=True).start()
        return None

    def _prepare(self, job_id: str, running: Running) -> UserError | None:
        """Give the job a runner (the idle one, else a new one), named in its record, and have it
        check the job; returns why the job cannot run, or None."""
        import ray
        from ray.exceptions import RayActorError

        for attempt in range(2):
            running.name, running.runner = self.idle_runner.take()
            record = self.store.load(job_id)
            self.store.update(job_id, owner=record.owner.model_copy(update={"runner": running.name}))
            try:
                return ray.get(running.runner.prepare.remote(job_id), timeout=PREPARE_TIMEOUT_S)
            except RayActorError:  # an idle runner that died meanwhile: a new one
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _watch(self, job_id: str, running: Running) -> None:
        """Wait for a job's runner to finish, record how it ended if the runner could not, and remove it.

        The call to `run` starts the job, or waits for the run a lost registry started.
        """
        import ray

        ended = False
        try:
            ray.get(running.runner.run.remote(job_id))
            ended = True
        except Exception as e:
            if not self.store.load(job_id).done:
                if running.cancelled:
                    self.store.update(job_id, state="CANCELLED", message="stopped (its runner was ended)", ended_at=time.time())
                else:
                    self.store.update(
                        job_id, state="FAILED", message=f"the job's runner died ({type(e).__name__})", ended_at=time.time()
                    )
        finally:
            if ended:  # its job is over: the next job may have it (runners.py)
                self.idle_runner.keep(running.name, running.runner)
            else:
                ray.kill(running.runner)
            self.pool.release(job_id)  # those a runner that died could not give back
            with self.lock:
                self.running.pop(job_id, None)
            running.ended.set()

    def stop(self, job_id: str) -> JobRecord:
        """Stop a job that has not ended and wait until it has stopped: through its runner (killed
        if it does not stop within CANCEL_GRACE_S), or, for a local-mode job that shares this
        storage, through its record. Returns its record then."""
        import ray

        with self.lock:
            running = self.running.get(job_id)
        if running is None:
            return wait_for_local_cancel(self.store, job_id, CANCEL_GRACE_S)
        running.cancelled = True
        if running.runner is not None:
            running.runner.cancel.remote(job_id)  # the job stops at its next epoch (or while it waits for CPUs)
        if not running.ended.wait(CANCEL_GRACE_S) and running.runner is not None:
            ray.kill(running.runner)  # _watch then records it CANCELLED
            running.ended.wait(CANCEL_GRACE_S)
        return self.store.load(job_id)
