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
from dtrain.cluster.datacache import DataCache
from dtrain.cluster.execute import execute
from dtrain.cluster.jobstore import JobStore
from dtrain.cluster.pool import PooledWorkers
from dtrain.cluster.workers import packable
from dtrain.cluster.runner import JobCancelled, JobFailed, preflight, start_server
from dtrain.errors import UserError

#: The Ray namespace of dtrain's named actors (the registry, the runners, the API, the warm workers).
NAMESPACE = "dtrain"

#: The registry's name in it.
REGISTRY_NAME = "registry"

#: The names of runners start with this.
RUNNER_PREFIX = "runner-"

#: Times Ray restarts a lost job runner (which then resumes the job from its last checkpoint).
RUNNER_RESTARTS = 3


class JobRunner:
    """Runs jobs, one at a time: checks a job can run, trains it, stops it when asked.

    A runner whose job has ended may be given the next one (runners.py): it keeps the
    datasets and training rows it loaded (datacache.py), and it starts the next job's
    parameter server as soon as it is idle (or checks a job), so that job starts sooner.
    Every call names its job, so a runner Ray restarted (empty) takes it up again.
    """

    def __init__(self, root: str):
        self.store = JobStore(Path(root))
        self.data = DataCache()
        self.next_server: Any = None  # a parameter server started for the next job (runner.start_server)
        self.server_lock = threading.Lock()
        self.datasets: dict[str, Any] = {}  # job id -> the dataset prepare() checked
        self.stops: dict[str, threading.Event] = {}
        self.running = threading.Lock()
        self.ran: set[str] = set()

    def prepare(self, job_id: str) -> UserError | None:
        """Check that the job can run here (its data, the workers it asks for): None, or why not."""
        spec = self.store.load(job_id).spec
        self._start_next_server()  # its process starts while the job is checked and its client told
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
                with self.server_lock:
                    server, self.next_server = self.next_server, None
                try:
                    execute(self.store, record, should_stop=self._stop(job_id).is_set, dataset=self.datasets.pop(job_id, None),
                            crew=crew, data=self.data, server=server)
                except (JobCancelled, JobFailed, UserError):
                    pass  # the record says how it ended
                self._start_next_server()  # while this runner waits, idle, for its next job
        return self.store.load(job_id).state

    def _start_next_server(self) -> None:
        with self.server_lock:
            if self.next_server is None:
                self.next_server = start_server()

    def cancel(self, job_id: str) -> None:
        self._stop(job_id).set()

    def _stop(self, job_id: str) -> threading.Event:
        return self.stops.setdefault(job_id, threading.Event())


def runner_name(job_id: str) -> str:
    """The name runners of dtrain 0.1 took, one per job (a record that names no runner had one)."""
    return f"runner-{job_id}"


def new_runner(root: str) -> tuple[str, Any]:
    """A new runner, ready for any job: its name ("runner-<random>") and handle."""
    import ray

    name = f"{RUNNER_PREFIX}{uuid.uuid4().hex[:12]}"
    handle = (
        ray.remote(JobRunner)
        .options(
            name=name,
            namespace=NAMESPACE,
            lifetime="detached",
            num_cpus=0,
            resources=placement.ON_HEAD,
            # cancel() must get through while run() trains, and while the run() calls
            # of registries that were lost wait for it.
            max_concurrency=16,
            # A lost runner is restarted and runs the job again, which resumes it from
            # its last checkpoint; its parameter server and workers die with it.
            max_restarts=RUNNER_RESTARTS,
            max_task_retries=-1,
        )
        .remote(root)
    )
    return name, handle
