"""Where jobs are kept: one directory per job under the storage root.

    <root>/jobs/<id>/job.json        the job's record (state, progress, owner)
    <root>/jobs/<id>/spec.json       what was asked
    <root>/jobs/<id>/metrics.jsonl   one line per epoch
    <root>/jobs/<id>/model.npz       the trained weights      (SUCCEEDED only)
    <root>/jobs/<id>/report.json     the evaluation report    (SUCCEEDED only)
    <root>/jobs/<id>/cancel          a cancel request, for a job run by a local process

Every file is written atomically (write, then rename), so a reader in another
process, or after a crash, sees each file whole or not at all. The store is
plain files on purpose: `list`, `report` and `pull` work after the job's actors
are gone, after the cluster is restarted, and with no cluster at all.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from dtrain.files import DamagedFile, read_jsonl, write_json
from dtrain.errors import Conflict, NotFound, UserError
from dtrain.spec import JobSpec

State = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
TERMINAL: frozenset[str] = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})

#: What `pull` copies, in this order; model.npz and report.json exist only for SUCCEEDED jobs.
ARTIFACTS = ("spec.json", "metrics.jsonl", "report.json", "model.npz")

DEFAULT_STORAGE = "~/.dtrain"


class Owner(BaseModel):
    """Who runs the job, so a reader can tell a live job from one whose runner is gone.

    runtime "local": the dtrain process `pid` on `host` runs it in an embedded Ray.
    runtime "cluster": the job registry `registry` runs it: the id of the cluster's head node,
    so the same across restarts of the registry actor, and new with each cluster. Once
    the job's runner starts, `pid` is the runner's process (on the head node), and `runner`
    names that actor.
    """

    # "kind" in job.json files of dtrain 0.1
    runtime: Literal["local", "cluster"] = Field(validation_alias=AliasChoices("runtime", "kind"))
    host: str
    pid: int = 0
    registry: str = ""
    runner: str = ""  # the name of the runner actor (cluster), so that a restarted registry finds it


class JobRecord(BaseModel):
    """The state of one job as `list` and `status` show it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    state: State = "PENDING"
    spec: JobSpec
    owner: Owner
    created_at: float = Field(default_factory=time.time)
    placed_at: float | None = None  # when its workers' CPUs were reserved
    started_at: float | None = None
    ended_at: float | None = None
    message: str = ""  # why it is PENDING, why it FAILED
    epoch: int = 0
    test_accuracy: float | None = None
    test_loss: float | None = None
    samples_per_s: float | None = None
    workers_alive: int = 0
    worker_restarts: int = 0  # workers Ray restarted (each took its shard back and redid its round)
    recoveries: int = 0  # times the job went back to its last checkpoint (lost server or runner, resume)
    cpus_per_worker: float | None = None
    nodes: dict[str, int] = Field(default_factory=dict)  # node id -> workers on it
    worker_pids: list[int] = Field(default_factory=list)  # each worker's process id, by rank, as placed
    server_pid: int | None = None  # the parameter server's process id

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def summary(self) -> dict[str, Any]:
        """The record as --json prints it: plain JSON data, the id as "job_id" as in every other output."""
        data = self.model_dump(mode="json")
        return {"job_id": data.pop("id"), **data}


def local_owner() -> Owner:
    return Owner(runtime="local", host=socket.gethostname(), pid=os.getpid())


def resolve_root(storage: str | os.PathLike | None) -> Path:
    """--storage / DTRAIN_STORAGE / ~/.dtrain, with ~ expanded here."""
    raw = storage or os.environ.get("DTRAIN_STORAGE") or DEFAULT_STORAGE
    return Path(raw).expanduser().absolute()


def new_job_id() -> str:
    return secrets.token_hex(4)


def valid_job_id(job_id: str) -> bool:
    return 1 <= len(job_id) <= 32 and all(c in "0123456789abcdef" for c in job_id)


class JobStore:
    """Job records and artifacts under one storage root."""

    def __init__(self, root: Path):
        self.root = root
        self.jobs = root / "jobs"

    def job_dir(self, job_id: str) -> Path:
        return self.jobs / job_id

    def create(self, spec: JobSpec, owner: Owner, job_id: str | None = None) -> JobRecord:
        """A new PENDING job with a short id that no other job in this store has.

        With `job_id` (chosen by the client, so that a retried submit finds its job)
        that id or FileExistsError.
        """
        if job_id is not None and not valid_job_id(job_id):
            raise UserError(f"{job_id!r} is not a job id (up to 32 hex digits)")
        try:
            self.jobs.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create {self.jobs}: {e.strerror}", "storage") from None
        for candidate in [job_id] if job_id else (new_job_id() for _ in range(100)):
            try:
                self.job_dir(candidate).mkdir()  # exclusive: two clients never get one id
            except FileExistsError:
                if job_id:
                    raise
                continue
            record = JobRecord(id=candidate, spec=spec, owner=owner)
            write_json(self.job_dir(candidate) / "spec.json", spec.model_dump(mode="json"))
            self.save(record)
            return record
        raise RuntimeError(f"could not find a free job id in {self.jobs}")

    def save(self, record: JobRecord) -> None:
        write_json(self.job_dir(record.id) / "job.json", record.model_dump(mode="json"))

    def update(self, job_id: str, **fields: Any) -> JobRecord:
        """Change some fields of a record (the caller is the job's only writer)."""
        record = self.load(job_id).model_copy(update=fields)
        self.save(record)
        return record

    def load(self, job_id: str) -> JobRecord:
        path = self.job_dir(job_id) / "job.json"
        if not valid_job_id(job_id) or not path.is_file():
            raise NotFound(f"no job {job_id!r} in {self.root} (`dtrain list` shows the jobs)")
        return JobRecord.model_validate_json(path.read_bytes())

    def records(self) -> list[JobRecord]:
        """Every job in the store, oldest first; unreadable records are skipped."""
        found = []
        if not self.jobs.is_dir():
            return found
        for path in self.jobs.glob("*/job.json"):
            try:
                found.append(JobRecord.model_validate_json(path.read_bytes()))
            except (OSError, ValueError):
                continue  # a job dir being created, or damaged by hand: not a job to list
        return sorted(found, key=lambda r: r.created_at)

    def live(self, job_id: str, live_registry: str | None = None) -> JobRecord:
        """The job's record as it really is (see `effective`); UserError for an unknown id."""
        return effective(self.load(job_id), live_registry)

    def live_records(self, live_registry: str | None = None) -> list[JobRecord]:
        return [effective(r, live_registry) for r in self.records()]

    def metrics(self, job_id: str, since: int = 0) -> list[dict[str, Any]]:
        """The job's epoch lines from the `since`-th on; UserError for an unknown id (not an empty list)."""
        self.load(job_id)
        try:
            return read_jsonl(self.job_dir(job_id) / "metrics.jsonl")[since:]
        except DamagedFile as e:
            raise UserError(str(e)) from None

    def read_artifact(self, job_id: str, name: str) -> bytes | None:
        """An artifact's bytes, or None if the job has not written it; UserError for an unknown id or name."""
        if name not in ARTIFACTS:
            raise UserError(f"{name!r} is not a job artifact; expected one of {', '.join(ARTIFACTS)}")
        self.load(job_id)
        path = self.job_dir(job_id) / name
        return path.read_bytes() if path.is_file() else None

    def report(self, job_id: str) -> dict[str, Any]:
        data = self.read_artifact(job_id, "report.json")
        if data is None:
            state = self.load(job_id).state
            raise Conflict(f"job {job_id} has no report: it is {state} (a report is written when a job succeeds)")
        return json.loads(data)

    # Cancel requests, for jobs run by a local dtrain process that no registry can reach.
    def request_cancel(self, job_id: str) -> None:
        (self.job_dir(job_id) / "cancel").touch()

    def cancel_requested(self, job_id: str) -> bool:
        return (self.job_dir(job_id) / "cancel").exists()

    def clear_cancel(self, job_id: str) -> None:
        """Remove a cancel request once it has been honoured (or the job ended without it)."""
        (self.job_dir(job_id) / "cancel").unlink(missing_ok=True)

    def reopen(self, job_id: str, owner: Owner) -> JobRecord:
        """Make an ended job PENDING again for `owner` to resume. A cancel request left from
        its last run is dropped first: it was for that run, not this one."""
        self.clear_cancel(job_id)
        return self.update(
            job_id, state="PENDING", message="resuming from its last checkpoint", ended_at=None, placed_at=None, owner=owner
        )

    def forget(self, job_id: str) -> None:
        """Remove a job that was refused before it started (nothing of it is worth keeping)."""
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def effective(record: JobRecord, live_registry: str | None = None) -> JobRecord:
    """The record as it really is: a job still marked running whose runner is gone has failed.

    `live_registry` is the id of the registry asking (None: no cluster is up).
    Jobs of a cluster registry other than the live one were running when their
    cluster stopped; local jobs are alive while their dtrain process is (a
    process on another host cannot be checked, and is taken as alive).
    """
    if record.done:
        return record
    owner = record.owner
    if owner.runtime == "local":
        gone = owner.host == socket.gethostname() and not pid_alive(owner.pid)
        why = f"interrupted: the dtrain process that ran it (pid {owner.pid}) is gone"
    else:
        gone = owner.registry != live_registry
        why = "interrupted: the Ray cluster it ran on stopped"
    if not gone:
        return record
    return record.model_copy(update={"state": "FAILED", "message": why, "workers_alive": 0})


def wait_for_local_cancel(store: JobStore, job_id: str, timeout_s: float, poll_s: float = 0.1) -> JobRecord:
    """Ask the local dtrain process running a job to stop it, and wait until its record says it has.

    The process checks for the request at each epoch and writes the final state
    itself (it is the record's only writer); a process that is gone leaves a job
    that reads FAILED (interrupted). One that does not answer in time is reported,
    not overruled.
    """
    store.request_cancel(job_id)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = effective(store.load(job_id))
        if record.done:
            return record
        time.sleep(poll_s)
    owner = store.load(job_id).owner
    raise UserError(
        f"job {job_id} did not stop within {timeout_s:g} s; its process (pid {owner.pid} on {owner.host}) "
        "will stop it at its next epoch"
    )


def check_resumable(record: JobRecord) -> None:
    """Raise UserError unless the job ended without succeeding (it then resumes from its last checkpoint)."""
    if record.state == "SUCCEEDED":
        raise Conflict(f"job {record.id} has already SUCCEEDED; there is nothing to resume")
    if not record.done:
        raise Conflict(f"job {record.id} is {record.state}; only a FAILED or CANCELLED job can be resumed")
