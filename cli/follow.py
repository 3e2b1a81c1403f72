"""Following a job that `submit` or `resume` started, and printing how it ended."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from dtrain.cli.app import EXIT_FAILED, EXIT_INTERRUPTED, check_out_dir, err, fail, note, user_errors
from dtrain.errors import UserError
from dtrain.spec import JobSpec


def jobs_to_follow(address: str | None, local: bool, storage: str | None, out_dir: Path | None, detach: bool) -> Any:
    """The jobs a `submit` or `resume` starts in, once its options are checked (UserError if not)."""
    from dtrain.cli.stdout import reserve_stdout
    from dtrain.cluster.client import open_jobs

    if out_dir:
        check_out_dir(out_dir)  # made when the artifacts are copied into it
    reserve_stdout()  # before Ray connects: its driver prints raylet messages to descriptor 1
    jobs = open_jobs(address, local, storage)
    if detach and jobs.runtime == "local":
        raise UserError(
            "--detach: a local-mode job ends with this command; detach from jobs on a Ray cluster "
            "(start one with `ray start --head`, or pass --address)"
        )
    return jobs


# Start, follow, and the three ways a followed job ends (done, detached by Ctrl-C on a
# cluster, interrupted locally) read best together.
def drive(
    jobs: Any,
    spec: JobSpec,
    *,
    start_on_cluster: Callable[[], Any] | None,
    run_here: Callable[[Callable[[Any], None], Callable[[str, dict[str, Any]], None]], Any],
    out_dir: Path | None,
    detach: bool,
    as_json: bool,
) -> None:
    """Start a job (on the cluster, or here in local mode), follow it with a progress display, report.

    Exit code 0: the job succeeded; 1: it failed or was cancelled; 2: a user error; 130: Ctrl-C.
    """
    from dtrain.cli.progress import JobProgress
    from dtrain.cli.stdout import reserve_stdout
    from dtrain.cluster.client import follow

    if start_on_cluster is not None:
        record = submit_on_cluster(jobs, start_on_cluster, detach, as_json)
        if detach:
            return

    results = reserve_stdout()
    job_id = None

    def created(r: Any) -> None:
        nonlocal job_id
        job_id = r.id
        progress.on_created(r)

    try:
        with user_errors(), JobProgress(err, spec) as progress:
            if start_on_cluster is not None:
                created(record)
                record = follow(jobs, record.id, progress.on_event)
            else:
                try:
                    record = run_here(created, progress.on_event)
                except Exception as e:
                    # However the job ended, execute recorded it; the record says how (exit 1, one line).
                    record = jobs.job(job_id) if job_id else None
                    if record is None or not record.done:
                        raise e from None
    except KeyboardInterrupt:
        if start_on_cluster is not None:  # detaching is what Ctrl-C does here, not an error
            note(
                f"detached from job {job_id}; it keeps running. Follow it with `dtrain logs {job_id} --follow`, "
                f"stop it with `dtrain cancel {job_id}`"
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
        raise fail(f"job {job_id} interrupted and cancelled", EXIT_INTERRUPTED) from None

    print_outcome(jobs, record, spec, results, out_dir, as_json)


def submit_on_cluster(jobs: Any, start: Callable[[], Any], detach: bool, as_json: bool) -> Any:
    """Submit the job on the cluster and say where to follow it, or (detached) print its id or
    record for good: the job's record."""
    with user_errors():
        record = start()
    page = job_page(jobs, record.id)
    if detach:
        if as_json:
            print(json.dumps(record.summary()))
        else:
            print(record.id)
            note(f"job {record.id} submitted; follow it with: dtrain logs {record.id} --follow" + (f", or at {page}" if page else ""))
    elif page and not as_json:
        note(f"job {record.id}: its page is {page}")
    return record


def job_page(jobs: Any, job_id: str) -> str | None:
    """The URL of the job's live page on the cluster's HTTP API, or None if it has none."""
    try:
        url = jobs.api_url().get("url")
    except Exception:  # the page is a convenience: never the reason a submit fails
        return None
    return f"{url}/jobs/{job_id}" if url else None


def print_outcome(jobs: Any, record: Any, spec: JobSpec, results: Any, out_dir: Path | None, as_json: bool) -> None:
    """How the job ended, on `results` (the reserved stdout): a failure in one line (exit 1), or
    the report (copied to `out_dir` first if asked), as JSON or for humans."""
    from dtrain.cluster.client import pull
    from dtrain.reports.job_report import JobReport

    if record.state != "SUCCEEDED":
        if as_json:
            print(json.dumps({"job_id": record.id, "state": record.state, "error": record.message}), file=results)
        raise fail(f"job {record.id} {record.state.lower()}: {record.message}", EXIT_FAILED)
    with user_errors():
        if out_dir:
            pull(jobs, record.id, out_dir)
        report = JobReport.of(jobs.report(record.id))
    job_dir = f"{jobs.root}/jobs/{record.id}"
    if as_json:
        history = jobs.metrics(record.id)
        print(
            json.dumps(
                {
                    "job_id": record.id,
                    "state": record.state,
                    "test_accuracy": report.test["accuracy"],
                    "test_loss": report.test["loss"],
                    "epochs": report.epochs_run,
                    "rounds": report.rounds_run,
                    "workers": spec.workers,
                    "runtime": jobs.runtime,
                    "job_dir": job_dir,
                    "out": str(out_dir) if out_dir else None,
                    "timing": report.timing,
                    "history": [
                        {k: h[k] for k in ("epoch", "round", "test_accuracy", "test_loss", "samples_per_s", "wall_time_s") if k in h}
                        for h in history
                    ],
                }
            ),
            file=results,
        )
    else:
        from dtrain.cli.report import print_report

        where = f"Job {record.id}: artifacts in {job_dir}" + ("" if jobs.runtime == "local" else " on the head node")
        where += f", copied to {out_dir}" if out_dir else ("" if jobs.runtime == "local" else f"; `dtrain pull {record.id}` copies them to ./{record.id}")
        print_report(Console(file=results), report, where, jobs.metrics(record.id))
