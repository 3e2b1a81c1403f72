"""One job's runner actor: it checks the job can run, trains it, and stops it when asked.

The registry (registry.py) creates one per job, detached and named after the job
("runner-<job id>"), on the head node next to the storage directory. It drives the
job (data, parameter server, workers) and is its record's only writer. A lost
runner is restarted by Ray and runs the job again, which resumes it from its last
checkpoint.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from dtrain.cluster import placement
from dtrain.cluster.execute import execute
from dtrain.cluster.jobstore import JobStore
from dtrain.cluster.pool import PooledWorkers
from dtrain.cluster.workers import packable
from dtrain.cluster.runner import JobCancelled, JobFailed, preflight
from dtrain.errors import UserError

#: The Ray namespace of dtrain's named actors (the registry, the runners, the API, the warm workers).
NAMESPACE = "dtrain"

#: The registry's name in it.
REGISTRY_NAME = "registry"

#: Times Ray restarts a lost job runner (which then resumes the job from its last checkpoint).
RUNNER_RESTARTS = 3


class JobRunner:
    """Runs one job: checks it can run, trains it, stops it when asked."""

    def __init__(self, root: str, job_id: str):
        self.store = JobStore(Path(root))
        self.record = self.store.load(job_id)
        self.stop_requested = threading.Event()
        self.dataset = None
        self.running = threading.Lock()
        self.ran = False

    def prepare(self) -> UserError | None:
        """Check that the job can run here (its data, the workers it asks for): None, or why not."""
        try:
            self.dataset = preflight(self.record.spec, placement.node_cpus())
        except UserError as e:
            return e
        return None

    def run(self) -> str:
        """Train the job to the end; returns its final state (the record holds the details).

        Runs the job once per runner process: a second call (from a restarted registry)
        waits for the first's end. The record names this process as the job's runner.
        """
        with self.running:
            if not self.ran:
                self.ran = True
                owner = self.record.owner.model_copy(update={"pid": os.getpid()})
                self.record = self.store.update(self.record.id, owner=owner)
                import ray

                # The job's workers come from the cluster's warm pool, which the registry keeps.
                crew = PooledWorkers(ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE), self.record.id,
                                     pack=packable(self.record.spec))
                try:
                    execute(self.store, self.record, should_stop=self.stop_requested.is_set, dataset=self.dataset, crew=crew)
                except (JobCancelled, JobFailed, UserError):
                    pass  # the record says how it ended
        return self.store.load(self.record.id).state

    def cancel(self) -> None:
        self.stop_requested.set()


def runner_name(job_id: str) -> str:
    return f"runner-{job_id}"


def new_runner(root: str, job_id: str, wait_s: float = 30.0) -> Any:
    """A new runner for the job, named after it. A name still held by the job's last runner
    (killed when that run ended, and not yet gone) is waited for, up to `wait_s`."""
    import ray

    deadline = time.monotonic() + wait_s
    while True:
        try:
            return (
                ray.remote(JobRunner)
                .options(
                    name=runner_name(job_id),
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
                .remote(root, job_id)
            )
        except ValueError:  # the name is taken
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
