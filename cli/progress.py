"""The live progress display of a running job (on stderr, so stdout stays for results)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from dtrain.errors import UserError
from dtrain.spec import JobSpec


class JobProgress:
    """Turns the runner's events into a rich progress bar: epoch, samples/s, accuracy, loss."""

    def __init__(self, console: Console, spec: JobSpec):
        self.spec = spec
        self.job_id = "?"
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[figures]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("connecting to Ray", total=spec.epochs, figures="")

    def __enter__(self) -> JobProgress:
        self.progress.start()
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, UserError):
            self.progress.live.transient = True  # the one error line says it all
        self.progress.stop()

    def on_created(self, record: Any) -> None:
        self.job_id = record.id
        self.progress.update(self.task, description=f"job {record.id}: starting {self.spec.workers} workers")

    def on_event(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "pending":
            self.progress.update(self.task, description=f"job {self.job_id}: pending", figures=payload["message"])
        elif kind == "connected":
            note = "" if payload["cpus_per_worker"] >= 1 else f", sharing {payload['cpus']:g} CPUs"
            self.progress.update(self.task, description=f"job {self.job_id}: starting {self.spec.workers} workers{note}")
        elif kind == "started":
            self.progress.update(
                self.task,
                description=f"job {self.job_id}: training",
                figures=f"started in {payload['startup_s']:.1f} s" + placed_on(payload.get("nodes") or {}),
            )
        elif kind == "epoch":
            self.progress.update(
                self.task,
                completed=payload["epoch"],
                figures=(
                    f"test acc {payload['test_accuracy'] * 100:.2f}%  loss {payload['test_loss']:.4f}  "
                    f"{payload['samples_per_s'] / 1000:.0f}k samples/s"
                ),
            )


def placed_on(nodes: dict[str, int]) -> str:
    return f" on {len(nodes)} nodes" if len(nodes) > 1 else ""
