"""`dtrain list | status | logs | cancel | pull | report`: the jobs of a cluster, or of local storage."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dtrain.cli.app import EXIT_FAILED, EXIT_INTERRUPTED, user_errors, Address, JobId, Json, Local, Storage, app, note, out, prepare_out_dir
from dtrain.reports.words import job_kind
from dtrain.cli.progress import epoch_line


def jobs_or_fail(address: str | None, local: bool, storage: str | None) -> Any:
    from dtrain.cli.stdout import reserve_stdout
    from dtrain.cluster.client import open_jobs

    reserve_stdout()  # Ray's driver prints raylet messages to descriptor 1
    with user_errors():
        return open_jobs(address, local, storage)


def age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


STATE_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "yellow", "RUNNING": "cyan", "PENDING": "magenta"}


@app.command("list")
def list_jobs(address: Address = None, local: Local = False, storage: Storage = None, as_json: Json = False) -> None:
    """All jobs, oldest first: id, state, progress, accuracy, workers, age."""
    jobs = jobs_or_fail(address, local, storage)
    with user_errors():
        records = jobs.jobs()
    if as_json:
        print(json.dumps([r.summary() for r in records]))
        return
    if not records:
        out.print(f"no jobs yet in {jobs.where}", markup=False, highlight=False, soft_wrap=True)
        return
    table = Table(title=Text(f"Jobs in {jobs.where}"), title_justify="left")
    for column in ("id", "state", "kind", "progress", "test acc", "workers", "age"):
        table.add_column(column, justify="left" if column in ("id", "state", "kind") else "right")
    now = time.time()
    for r in records:
        table.add_row(
            r.id,
            Text(r.state, STATE_STYLE[r.state]),
            job_kind(r.spec, short=True),
            r.spec.period_label(r.epoch),
            percent(r.test_accuracy),
            str(r.spec.workers),
            age(now - r.created_at),
        )
    out.print(table)


@app.command()
def status(
    job_id: Annotated[Optional[str], typer.Argument(help="The job's id; without it, the service itself.", show_default=False)] = None,
    address: Address = None,
    local: Local = False,
    storage: Storage = None,
    as_json: Json = False,
) -> None:
    """One job: state, epoch, accuracy, samples/s, workers alive and where they run.

    Without a job id: where the jobs are kept, how many are in each state, and on a
    cluster the URL of its HTTP API and the warm workers it keeps between jobs."""
    jobs = jobs_or_fail(address, local, storage)
    if job_id is None:
        service_status(jobs, as_json)
        return
    with user_errors():
        r = jobs.job(job_id)
    if as_json:
        print(json.dumps(r.summary()))
        return
    ended = r.ended_at or time.time()  # an interrupted job has no end time
    rows = [
        ("state", Text.assemble((r.state, STATE_STYLE[r.state]), f"  {r.message}" if r.message else "")),
        tuple(r.spec.period_label(r.epoch).split()),
        ("test accuracy", percent(r.test_accuracy)),
        ("test loss", "-" if r.test_loss is None else f"{r.test_loss:.4f}"),
        ("samples/s", "-" if r.samples_per_s is None else f"{r.samples_per_s:,.0f}"),
        ("workers", f"{r.workers_alive} alive of {r.spec.workers}"
         + (f", {r.cpus_per_worker:g} CPU each" if r.cpus_per_worker else "")
         + f", {r.worker_restarts} restart{'s' if r.worker_restarts != 1 else ''}"),
        ("recoveries", f"{r.recoveries} (went back to the last checkpoint)" if r.recoveries else "0"),
        ("nodes", ", ".join(f"{node[:8]}: {n}" for node, n in r.nodes.items()) or "-"),
        (
            "pending for" if r.state == "PENDING" else "ran for" if r.done else "running for",
            "-" if r.done and not r.ended_at else age(ended - (r.started_at or r.created_at)),
        ),
        ("submitted", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at))),
    ]
    table = Table(title=f"Job {r.id}", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else Text(value))
    out.print(table)


def service_status(jobs: Any, as_json: bool) -> None:
    """`dtrain status` without a job id."""
    with user_errors():
        states = Counter(r.state for r in jobs.jobs())
        api = jobs.api_url() if jobs.runtime == "cluster" else {}
        pool = jobs.pool()
    facts = {"runtime": jobs.runtime, "storage": jobs.where, "jobs": dict(sorted(states.items())), "api": api.get("url"),
             "pool": pool}
    if api.get("error"):
        facts["api_error"] = api["error"]
    if as_json:
        print(json.dumps(facts))
        return
    table = Table(title="dtrain", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("runtime", jobs.runtime)
    table.add_row("jobs in", jobs.where)
    table.add_row("jobs", ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "none")
    if jobs.runtime == "cluster":
        table.add_row("HTTP API", api.get("url") or api.get("error", "-"))
    if pool is not None:
        table.add_row("warm workers", pool_line(pool))
    out.print(table)


def pool_line(pool: dict[str, Any]) -> str:
    """The warm pool in a line: how many workers, busy and idle, on how many nodes, their memory."""
    if pool.get("problem"):
        return f"off: {pool['problem']}"
    if not pool["idle_s"]:
        return "off (DTRAIN_POOL_IDLE_S=0 on the head)"
    workers = pool["workers"]
    busy = sum(1 for w in workers if w["job"])
    nodes = len({w["node"] for w in workers})
    mib = sum(w["rss_mib"] for w in workers if not w["job"])
    return (f"{len(workers)} ({busy} in jobs, {len(workers) - busy} idle) on {nodes} node{'s' if nodes != 1 else ''}; "
            f"idle ones use {mib:,.0f} MiB (at most {pool['memory_mib']:,.0f} per node) and go after {age(pool['idle_s'])} idle")


@app.command()
def logs(
    job_id: JobId,
    follow_: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job ends."),
    address: Address = None,
    local: Local = False,
    storage: Storage = None,
    as_json: Json = False,
) -> None:
    """A job's progress, one line per epoch, then its state (with --json: JSON lines).

    With --follow, it waits for the job's end and exits 1 if the job failed or was cancelled.
    """
    from dtrain.cluster.client import follow

    jobs = jobs_or_fail(address, local, storage)

    def emit(text: str, data: dict[str, Any]) -> None:
        print(json.dumps(data) if as_json else text, flush=True)

    try:
        with user_errors():
            record = jobs.job(job_id)
            spec = record.spec
            if follow_:

                def on_event(kind: str, payload: dict[str, Any]) -> None:
                    if kind == "epoch":
                        emit(epoch_line(payload, spec), {"event": "epoch", **payload})
                    elif kind == "pending" and payload["message"]:
                        emit(f"pending: {payload['message']}", {"event": "pending", **payload})
                    elif kind == "started":
                        emit(f"training on {payload['workers']} workers, {payload['startup_s']:.1f} s after submission",
                             {"event": "started", **payload})

                record = follow(jobs, job_id, on_event)
            else:
                for line in jobs.metrics(job_id):
                    emit(epoch_line(line, spec), {"event": "epoch", **line})
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    emit(f"{record.state}" + (f": {record.message}" if record.message else ""), {"event": "state", **record.summary()})
    if follow_ and record.state in ("FAILED", "CANCELLED"):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def cancel(job_id: JobId, address: Address = None, local: Local = False, storage: Storage = None, as_json: Json = False) -> None:
    """Stop a job (at its next epoch) and wait until it has stopped; its metrics so far are kept."""
    jobs = jobs_or_fail(address, local, storage)
    with user_errors():
        record = jobs.cancel(job_id)
    if as_json:
        print(json.dumps(record.summary()))
    else:
        out.print(
            f"job {record.id}: {record.state}" + (f" ({record.message})" if record.message else ""),
            markup=False, highlight=False, soft_wrap=True,
        )


@app.command()
def pull(
    job_id: JobId,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Directory to write into (new or empty).", show_default="./JOB_ID")
    ] = None,
    address: Address = None,
    local: Local = False,
    storage: Storage = None,
    as_json: Json = False,
) -> None:
    """Copy a job's artifacts (spec.json, metrics.jsonl, report.json, model.npz) into a new directory.

    On a cluster the bytes come through Ray, so this works on a node that does not share the head's disk.
    """
    from dtrain.cluster.client import pull as pull_artifacts

    dest = out_dir or Path(job_id)
    jobs = jobs_or_fail(address, local, storage)
    with user_errors():
        jobs.job(job_id)  # an unknown id fails before anything is created
        prepare_out_dir(dest, "--out" if out_dir else "--out (default ./JOB_ID)")
        written = pull_artifacts(jobs, job_id, dest)
    if as_json:
        print(json.dumps({"job_id": job_id, "dir": str(dest), "files": [p.name for p in written]}))
    else:
        out.print(
            f"{len(written)} files of job {job_id} in {dest}: {', '.join(p.name for p in written)}",
            markup=False, highlight=False, soft_wrap=True,
        )


@app.command()
def report(
    job_id: JobId,
    html: Annotated[
        Optional[Path],
        typer.Option("--html", help="Also write the report as one self-contained HTML page (plots included) to this file.",
                     show_default=False),
    ] = None,
    graphics: Annotated[
        bool, typer.Option("--graphics", help="Draw the digits as sixel images where the terminal supports them.")
    ] = False,
    address: Address = None,
    local: Local = False,
    storage: Storage = None,
    as_json: Json = False,
) -> None:
    """A succeeded job's evaluation: accuracy, per-class table, example digits, misclassifications."""
    from dtrain.cli.report import print_report

    if html is not None:
        from dtrain.cli.report import check_html_path

        with user_errors():
            check_html_path(html)  # before any work
    jobs = jobs_or_fail(address, local, storage)
    with user_errors():
        data = jobs.report(job_id)
        history = jobs.metrics(job_id) if html is not None or not as_json else None
        if html is not None:
            from dtrain.cli.report import write_html
            from dtrain.reports.html import render_html

            write_html(html, render_html(data, history))
    if as_json:
        print(json.dumps(data if html is None else {**data, "html": str(html.resolve())}))
        return
    print_report(
        Console(file=sys.stdout), data, f"Job {job_id}: `dtrain pull {job_id}` copies its artifacts here", history,
        graphics=graphics, note=note,
    )
    if html is not None:
        out.print(f"HTML report: {html.resolve()}", markup=False, highlight=False, soft_wrap=True)
