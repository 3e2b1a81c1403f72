"""Running a recorded job: `run_job`, with the job's record in the store kept current.

The process that executes a job is its record's only writer: the client itself
in local mode, the job's runner actor on a cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dtrain.cluster.jobstore import JobRecord, JobStore
from dtrain.cluster.runner import JobCancelled, JobFailed, JobResult, OnEvent, run_job
from dtrain.data.mnist import Dataset
from dtrain.errors import UserError


def record_fields(record: JobRecord, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What an event of the runner changes in the job's record."""
    if kind == "pending":
        return {"message": payload["message"]}
    if kind == "placed":
        return {"placed_at": time.time()}
    if kind == "started":
        return {
            "state": "RUNNING",
            "started_at": record.started_at or time.time(),
            "message": "",
            "workers_alive": payload["workers"],
            "cpus_per_worker": payload["cpus_per_worker"],
            "nodes": payload["nodes"],
            "worker_pids": payload["pids"],
            "server_pid": payload["server_pid"],
        }
    if kind == "epoch":
        return {
            "message": "",
            "epoch": payload["epoch"],
            "test_accuracy": payload["test_accuracy"],
            "test_loss": payload["test_loss"],
            "samples_per_s": payload["samples_per_s"],
            "worker_restarts": record.worker_restarts + payload["worker_restarts"],
        }
    if kind == "recovering":
        return {"recoveries": record.recoveries + 1, "message": recovery_message(payload)}
    return {}


def recovery_message(payload: dict[str, Any]) -> str:
    """What a "recovering" event says: a resume goes on from its last epoch, a recovery goes back to it."""
    if payload.get("resumed"):
        return f"resuming from epoch {payload['epochs_done']}, its last checkpoint"
    return f"recovering from epoch {payload['epochs_done']}: {payload['reason']}"


def first_in_line(store: JobStore, record: JobRecord) -> bool:
    """True if no older job of the same cluster registry still waits for its CPUs."""
    return not any(
        r.state == "PENDING"
        and r.placed_at is None
        and r.created_at < record.created_at
        and r.owner.registry == record.owner.registry
        for r in store.records()
        if r.id != record.id
    )


def execute(
    store: JobStore,
    record: JobRecord,
    *,
    on_event: OnEvent | None = None,
    should_stop: Callable[[], bool] | None = None,
    dataset: Dataset | None = None,
    crew: Any = None,
    data: Any = None,
    server: Any = None,
) -> JobResult:
    """Run the job and leave its record in a final state; re-raise what ended it early.

    Refusing a job (bad data, a request the cluster cannot hold) is the caller's
    check, made before the job is recorded; here every way of ending is recorded.
    A job whose run directory holds checkpoints resumes from them.
    A cancel request in the store stops it like `should_stop` does. `crew` gives
    the job its workers, `data` its data if an earlier job left it, `server` a parameter
    server started for it (run_job's).
    """
    job_id = record.id

    def emit(kind: str, payload: dict[str, Any]) -> None:
        fields = record_fields(store.load(job_id), kind, payload)
        if fields:
            store.update(job_id, **fields)
        if on_event:
            on_event(kind, payload)

    def stop() -> bool:
        return (should_stop is not None and should_stop()) or store.cancel_requested(job_id)

    def end(state: str, message: str = "") -> None:
        store.update(job_id, state=state, message=message, ended_at=time.time(), workers_alive=0)
        store.clear_cancel(job_id)  # honoured, or too late: either way not for a later resume

    try:
        result = run_job(
            record.spec, store.job_dir(job_id), job_id, on_event=emit, dataset=dataset, should_stop=stop,
            may_start=(lambda: first_in_line(store, record)) if record.owner.runtime == "cluster" else None,
            crew=crew, data=data, server=server,
        )
    except JobCancelled as e:
        end("CANCELLED", str(e))
        raise
    except JobFailed as e:
        end("FAILED", str(e))
        raise
    except UserError as e:
        end("FAILED", str(e))
        raise
    except KeyboardInterrupt:
        end("CANCELLED", "interrupted (Ctrl-C)")
        raise
    except BaseException as e:
        end("FAILED", f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        raise
    end("SUCCEEDED")
    return result
