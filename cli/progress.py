"""The live progress of a running job, on stderr (stdout stays for results).

On a terminal: a rich progress bar (epoch, accuracy, loss, samples/s). Elsewhere
(a log file, a pipe, CI): one plain line per event, nothing cut or redrawn.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from dtrain.errors import UserError
from dtrain.spec import JobSpec


def placed_on(nodes: dict[str, int]) -> str:
    return f" on {len(nodes)} nodes" if len(nodes) > 1 else ""


def async_figures(record: dict[str, Any]) -> str:
    """An async epoch's staleness and dropped updates, for the progress and log lines ('' otherwise)."""
    if "mean_staleness" not in record:
        return ""
    dropped = record.get("dropped_updates", 0)
    return f"  staleness {record['mean_staleness']:.1f}" + (f", {dropped} dropped" if dropped else "")


def epoch_line(line: dict[str, Any], spec: JobSpec) -> str:
    """An epoch's line as `dtrain logs` prints it, from its metrics.jsonl record."""
    return (
        f"{spec.period_label(line['epoch'])}  test acc {line['test_accuracy'] * 100:6.2f}%  "
        f"loss {line['test_loss']:.4f}  train loss {line['train_loss']:.4f}  "
        f"{line['samples_per_s'] / 1000:6.0f}k samples/s  {line['wall_time_s']:7.1f} s" + async_figures(line)
    )


def describe(kind: str, payload: dict[str, Any], spec: JobSpec) -> tuple[str, str] | None:
    """(what the job is doing, its latest figures) after an event of the runner, or None to show nothing."""
    if kind == "pending":
        return ("pending", payload["message"]) if payload.get("message") else None
    if kind == "connected":
        shared = "" if payload["cpus_per_worker"] >= 1 else f", sharing {payload['cpus']:g} CPUs"
        return f"starting {spec.workers} workers{shared}", ""
    if kind == "started":
        return "training", f"started in {payload['startup_s']:.1f} s" + placed_on(payload.get("nodes") or {})
    if kind == "recovering" and payload.get("resumed"):
        return "resuming", f"from epoch {payload['epochs_done']}, its last checkpoint"
    if kind == "recovering":
        return "recovering", f"back to epoch {payload['epochs_done']}: {payload['reason']}"
    if kind == "epoch":
        return "training", (
            f"test acc {payload['test_accuracy'] * 100:.2f}%  loss {payload['test_loss']:.4f}  "
            f"{payload['samples_per_s'] / 1000:.0f}k samples/s" + async_figures(payload)
        )
    return None


class JobProgress:
    """Turns the runner's events into progress for a human: a bar on a terminal, lines elsewhere."""

    def __init__(self, console: Console, spec: JobSpec):
        self.console = console
        self.spec = spec
        self.job_id = "?"
        self.live = console.is_terminal
        self.last_line = ""
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[figures]}", markup=False),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("connecting to Ray", total=spec.periods, figures="")

    def __enter__(self) -> JobProgress:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if self.live:
            if isinstance(exc, UserError):
                self.progress.live.transient = True  # the one error line says it all
            self.progress.stop()

    def on_created(self, record: Any) -> None:
        self.job_id = record.id
        self._show("connecting to Ray", "")

    def on_event(self, kind: str, payload: dict[str, Any]) -> None:
        shown = describe(kind, payload, self.spec)
        if shown:
            self._show(*shown, epoch=payload["epoch"] if kind == "epoch" else None)

    def _show(self, doing: str, figures: str, epoch: int | None = None) -> None:
        if self.live:
            update: dict[str, Any] = {"description": f"job {self.job_id}: {doing}", "figures": figures}
            if epoch is not None:
                update["completed"] = epoch
            self.progress.update(self.task, **update)
            return
        where = self.spec.period_label(epoch) if epoch is not None else doing
        line = f"job {self.job_id}: {where}" + (f"  {figures}" if figures else "")
        if line != self.last_line:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
            self.last_line = line
