"""The client side of jobs: what `dtrain` commands call, whether a cluster is up or not.

`open_jobs` picks one of two views of the same storage:
- ClusterJobs: a Ray cluster answers; jobs run in it, through its registry.
- LocalJobs: no cluster; jobs run in this process on an embedded Ray, and
  list/status/logs/pull/cancel read and write the storage directory directly
  (no Ray started just to list jobs).
Both return plain data (JobRecord, dicts, bytes) and raise UserError for a bad request.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dtrain.cluster.connect import Target, connect, resolve
from dtrain.cluster.http_client import HttpJobs, advertised_api, is_http
from dtrain.cluster.jobstore import (
    ARTIFACTS,
    JobRecord,
    JobStore,
    check_resumable,
    local_owner,
    new_job_id,
    resolve_root,
    wait_for_local_cancel,
)
from dtrain.files import write_atomic
from dtrain.errors import Conflict, UserError
from dtrain.spec import JobSpec

#: How often a follower asks for news of a running job (through Ray; over HTTP, it waits for news).
POLL_S = 0.25

#: How long one long poll of the cluster's HTTP API may wait for news of a followed job.
WAIT_S = 5.0

#: A followed job's news comes at most this often while it trains (its end at once): an answer
#: costs the API and this client CPU on the cores the job trains on (jobwatch.py).
GATHER_S = 0.25

#: A local job's own cancel request is honoured within this long.
LOCAL_CANCEL_TIMEOUT_S = 30.0


class LocalJobs:
    """Jobs in a storage directory on this machine; new ones run in this process."""

    runtime = "local"

    def __init__(self, root: Path):
        self.store = JobStore(root)
        self.root = str(root)
        self.where = self.root

    def run(
        self,
        spec: JobSpec,
        on_created: Callable[[JobRecord], None],
        on_event: Callable[[str, dict[str, Any]], None],
        dataset: Any = None,
    ) -> JobRecord:
        """Run a job to its end in this process (embedded Ray); returns the final record.

        Raises UserError when the job is refused, JobFailed / JobCancelled when it ends early.
        """
        record = self.store.create(spec, local_owner())
        on_created(record)
        return self._execute(record, on_event, dataset)

    def resume(
        self, job_id: str, on_created: Callable[[JobRecord], None], on_event: Callable[[str, dict[str, Any]], None]
    ) -> JobRecord:
        """Run a FAILED or CANCELLED job again in this process, from its last checkpoint."""
        record = self.job(job_id)
        check_resumable(record)
        record = self.store.reopen(job_id, local_owner())
        on_created(record)
        return self._execute(record, on_event, None)

    def _execute(self, record: JobRecord, on_event: Callable[[str, dict[str, Any]], None], dataset: Any) -> JobRecord:
        from dtrain.cluster.execute import execute

        # run_job starts the embedded Ray itself, while it loads the kernel in a thread.
        execute(self.store, record, on_event=on_event, dataset=dataset)
        return self.store.load(record.id)

    def jobs(self) -> list[JobRecord]:
        return self.store.live_records()

    def job(self, job_id: str) -> JobRecord:
        return self.store.live(job_id)

    def metrics(self, job_id: str, since: int = 0) -> list[dict[str, Any]]:
        return self.store.metrics(job_id, since)

    def artifact(self, job_id: str, name: str) -> bytes | None:
        return self.store.read_artifact(job_id, name)

    def report(self, job_id: str) -> dict[str, Any]:
        return self.store.report(job_id)

    def pool(self) -> dict[str, Any] | None:
        """Local mode keeps no warm workers: each job starts its own."""
        return None

    def cancel(self, job_id: str) -> JobRecord:
        record = self.job(job_id)
        if record.done:
            raise Conflict(f"job {job_id} has already ended: {record.state}")
        return wait_for_local_cancel(self.store, job_id, LOCAL_CANCEL_TIMEOUT_S)


class ClusterJobs:
    """Jobs of a running Ray cluster, through its registry actor."""

    runtime = "cluster"

    def __init__(self, target: Target, storage: str | None):
        from dtrain.cluster.registry import get_or_create_registry

        connect(target)
        self._attach(get_or_create_registry(storage), target.address)

    @classmethod
    def of_registry(cls, registry: Any, address: str | None = None) -> ClusterJobs:
        """The jobs of `registry`, from a process already in its cluster (the API server)."""
        jobs = cls.__new__(cls)
        jobs._attach(registry, address)
        return jobs

    def _attach(self, registry: Any, address: str | None) -> None:
        self.address = address
        self.registry = registry
        self.root = self._call(self.registry.storage)
        self.where = f"{self.root} on the head node" + (f" of {address}" if address else "")

    def api_url(self) -> dict[str, Any]:
        """Where this cluster's HTTP API listens: {"url": ...}, or {"error": why it does not}."""
        from ray.exceptions import RayActorError

        from dtrain.cluster.api_server import get_or_create_api

        try:
            # The registry started it; one that died is started again here.
            return self._call(get_or_create_api(str(self.root)).url)
        except RayActorError as e:
            return {"error": f"the dtrain API did not start: {str(e).strip().splitlines()[-1]}"}

    def pool(self) -> dict[str, Any]:
        """The cluster's warm workers (cluster/pool.py): settings, and each one's node, job, idle time, memory."""
        return self._call(self.registry.pool_status)

    def _call(self, method: Any, *args: Any) -> Any:
        """Call a registry method; its UserError comes back as itself, with no remote traceback."""
        import ray
        from ray.exceptions import RayTaskError

        try:
            return ray.get(method.remote(*args))
        except RayTaskError as e:
            if isinstance(e.cause, UserError):
                raise type(e.cause)(e.cause.problem, e.cause.field) from None
            raise

    def submit(self, spec: JobSpec) -> JobRecord:
        answer = self._call(self.registry.submit, spec, new_job_id())  # the id makes a retried call find its job
        if "error" in answer:
            raise UserError(answer["error"], answer.get("field"))
        return JobRecord.model_validate(answer)

    def resume(self, job_id: str) -> JobRecord:
        from ray.exceptions import RayActorError

        try:  # not retried: run again, a resume that did start would be refused as running
            answer = self._call(self.registry.resume.options(max_task_retries=0), job_id)
        except RayActorError:
            raise UserError(
                f"the cluster's job registry restarted while resuming job {job_id}; "
                f"`dtrain status {job_id}` shows whether it resumed, else run `dtrain resume {job_id}` again"
            ) from None
        if "error" in answer:
            raise UserError(answer["error"], answer.get("field"))
        return JobRecord.model_validate(answer)

    def jobs(self) -> list[JobRecord]:
        return [JobRecord.model_validate(r) for r in self._call(self.registry.jobs)]

    def job(self, job_id: str) -> JobRecord:
        return JobRecord.model_validate(self._call(self.registry.job, job_id))

    def metrics(self, job_id: str, since: int = 0) -> list[dict[str, Any]]:
        return self._call(self.registry.metrics, job_id, since)

    def artifact(self, job_id: str, name: str) -> bytes | None:
        return self._call(self.registry.artifact, job_id, name)

    def report(self, job_id: str) -> dict[str, Any]:
        return self._call(self.registry.report, job_id)

    def cancel(self, job_id: str) -> JobRecord:
        return JobRecord.model_validate(self._call(self.registry.cancel, job_id))


Jobs = LocalJobs | ClusterJobs | HttpJobs


def requested_storage(storage: str | None) -> str | None:
    """--storage, else DTRAIN_STORAGE; relative paths made absolute here (~ is expanded where the jobs are kept)."""
    raw = storage or os.environ.get("DTRAIN_STORAGE") or None
    if raw and not raw.startswith("~"):
        raw = str(Path(raw).absolute())
    return raw


def open_jobs(address: str | None = None, local: bool = False, storage: str | None = None) -> Jobs:
    """The jobs of the cluster at `address` (or the one running on this machine), else of the local storage."""
    address = address or os.environ.get("DTRAIN_ADDRESS") or None
    if is_http(address) and not local:
        if storage:
            raise UserError("an HTTP address's cluster keeps its jobs where its registry does; omit `storage`", "storage")
        return HttpJobs(address)  # type: ignore[arg-type]
    target = resolve(address, local)
    requested = requested_storage(storage)
    if target.runtime == "local":
        return LocalJobs(resolve_root(requested))
    return advertised_api(target.address, resolve_root(requested)) or ClusterJobs(target, requested)


def follow(
    jobs: Jobs,
    job_id: str,
    on_event: Callable[[str, dict[str, Any]], None],
    poll_s: float = POLL_S,
) -> JobRecord:
    """Replay a job's progress as runner events ("pending", "started", "epoch") until it ends."""
    seen_epochs = 0
    started = False
    message = None
    version = ""
    while True:
        record, lines, version = progress(jobs, job_id, seen_epochs, version, poll_s)
        if record.state == "PENDING" and record.message != message:
            message = record.message
            on_event("pending", {"message": message})
        if record.started_at and not started:
            started = True
            on_event(
                "started",
                {
                    "startup_s": record.started_at - record.created_at,
                    "workers": record.spec.workers,
                    "cpus_per_worker": record.cpus_per_worker,
                    "nodes": record.nodes,
                },
            )
        for line in lines:
            seen_epochs += 1
            on_event("epoch", line)
        if record.done:
            return record


def progress(jobs: Jobs, job_id: str, since: int, version: str, poll_s: float) -> tuple[JobRecord, list[dict[str, Any]], str]:
    """The job's record and its epoch lines from the `since`-th on, and a version of them: at once
    when `version` is "", else once they have changed since that version. The cluster's HTTP API
    waits for the change (a long poll), so news arrives within tens of ms; through Ray, after `poll_s`."""
    if isinstance(jobs, HttpJobs):
        return jobs.progress(job_id, since, version, WAIT_S if version else 0.0, GATHER_S)
    if version:
        time.sleep(poll_s)
    return jobs.job(job_id), jobs.metrics(job_id, since), "polled"


def pull(jobs: Jobs, job_id: str, dest: Path) -> list[Path]:
    """Copy a job's artifacts into `dest` (through Ray when the jobs are on a cluster); returns the files written."""
    record = jobs.job(job_id)
    written = []
    for name in ARTIFACTS:
        data = jobs.artifact(job_id, name)
        if data is None:
            continue
        write_atomic(dest / name, data)
        written.append(dest / name)
    if not written:
        raise UserError(f"job {job_id} ({record.state}) has no artifacts yet")
    return written
