"""The job runner actor: it checks a job can run, trains it, and stops it when asked.

The registry (registry.py) gives each job a runner, detached and named
"runner-<random>" (the job's record names it), on the head node next to the
storage directory: a new one, or the runner of a job that has ended (runners.py),
which keeps its data for the next. It drives the job (data, parameter server,
workers) and is its record's only writer. A lost runner is restarted by Ray and
runs the job again, which resumes it from its last checkpoint.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any

from dtrain.cluster import placement
from dtrain.cluster.placement import NAMESPACE
from dtrain.cluster.datacache import DataCache
from dtrain.cluster.execute import execute
from dtrain.cluster.jobstore import JobStore
from dtrain.cluster.pool import PooledWorkers
from dtrain.cluster.workers import packable
from dtrain.cluster.runner import JobCancelled, JobFailed, preflight, start_server
from dtrain.errors import UserError

#: The registry's name in it.
REGISTRY_NAME = "registry"

#: The names of runners start with this.
RUNNER_PREFIX = "runner-"

#: Times Ray restarts a lost job runner (which then resumes the job from its last checkpoint).
RUNNER_RESTARTS = 3

#: How long a kept parameter server may take to answer, before a job, whether Ray restarted it.
SERVER_CHECK_TIMEOUT_S = 10.0


class JobRunner:
    """Runs jobs, one at a time: checks a job can run, trains it, stops it when asked.

    A runner whose job has ended may be given the next one (runners.py): it keeps the
    datasets and training rows it loaded (datacache.py), and the parameter server of a
    job that succeeded, which the next job configures afresh (training.py). The server of a
    job that failed or was cancelled, which may still hold that job's rounds, is replaced,
    and so is one that Ray restarted (it has used some of its restarts) or lost.
    Every call names its job, so a runner Ray restarted (empty) takes it up again.
    """

    def __init__(self, root: str):
        self.store = JobStore(Path(root))
        self.data = DataCache()
        self.server: Any = None  # the parameter server for the next job (runner.start_server)
        self.server_kept = False  # whether it served a job already
        self.server_lock = threading.Lock()
        self.datasets: dict[str, Any] = {}  # job id -> the dataset prepare() checked
        self.stops: dict[str, threading.Event] = {}
        self.running = threading.Lock()
        self.ran: set[str] = set()

    def prepare(self, job_id: str) -> UserError | None:
        """Check that the job can run here (its data, the workers it asks for): None, or why not."""
        spec = self.store.load(job_id).spec
        self._start_server()  # its process starts while the job is checked and its client told
        try:
            self.datasets[job_id] = preflight(spec, placement.node_cpus(), self.data)
        except UserError as e:
            return e
        return None

    def run(self, job_id: str) -> str:
        """Train the job to the end; returns its final state (the record holds the details).

        Runs a job once per runner process: a second call (from a restarted registry)
        waits for the first's end. The record names this process as the job's runner.
        """
        with self.running:
            if job_id not in self.ran:
                self.ran.add(job_id)
                record = self.store.load(job_id)
                record = self.store.update(job_id, owner=record.owner.model_copy(update={"pid": os.getpid()}))
                import ray

                # The job's workers come from the cluster's warm pool, which the registry keeps.
                crew = PooledWorkers(ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE), job_id, pack=packable(record.spec))
                server = self._server_for_job()
                try:
                    execute(self.store, record, should_stop=self._stop(job_id).is_set, dataset=self.datasets.pop(job_id, None),
                            crew=crew, data=self.data, server=server)
                    succeeded = True
                except (JobCancelled, JobFailed, UserError):
                    succeeded = False  # the record says how it ended
                self._after_job(server, keep=succeeded)
        return self.store.load(job_id).state

    def _start_server(self) -> None:
        with self.server_lock:
            if self.server is None:
                self.server, self.server_kept = start_server(), False

    def _server_for_job(self) -> Any:
        """The server a job is to use: the one kept from the last job if Ray never restarted it
        (one that did has used some of its restarts; one lost for good does not answer), else a new one."""
        import ray

        with self.server_lock:
            if self.server is not None and self.server_kept:
                try:
                    restarted = ray.get(self.server.restarted.remote(), timeout=SERVER_CHECK_TIMEOUT_S)
                except Exception:  # lost, or not answering
                    restarted = True
                if restarted:
                    ray.kill(self.server)
                    self.server = None
        self._start_server()
        return self.server

    def _after_job(self, server: Any, keep: bool) -> None:
        """Keep the job's server for the next job, or end it and start the next job's while this runner is idle."""
        import ray

        with self.server_lock:
            if keep:
                self.server_kept = True
                return
            ray.kill(server)
            self.server = None
        self._start_server()

    def cancel(self, job_id: str) -> None:
        self._stop(job_id).set()

    def _stop(self, job_id: str) -> threading.Event:
        return self.stops.setdefault(job_id, threading.Event())


def runner_name(job_id: str) -> str:
    """The name runners of dtrain 0.1 took, one per job (a record that names no runner had one)."""
    return f"runner-{job_id}"


def new_runner(root: str) -> tuple[str, Any]:
    """A new runner, ready for any job: its name ("runner-<random>") and handle."""
    name = f"{RUNNER_PREFIX}{uuid.uuid4().hex[:12]}"
    handle = placement.head_service(
        JobRunner,
        name,
        # cancel() must get through while run() trains, and while the run() calls
        # of registries that were lost wait for it.
        max_concurrency=16,
        # A lost runner is restarted and runs the job again, which resumes it from
        # its last checkpoint; its parameter server and workers die with it.
        max_restarts=RUNNER_RESTARTS,
        max_task_retries=-1,
    ).remote(root)
    return name, handle
