"""The `dtrain` command line: a thin Typer layer over dtrain's library functions."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError
from rich.console import Console

from dtrain import __version__
from dtrain.errors import UserError
from dtrain.spec import JobSpec

app = typer.Typer(
    name="dtrain",
    help="Distributed per-sample SGD for a NumPy MLP on MNIST, over a Ray cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

EXIT_FAILED = 1
EXIT_USER_ERROR = 2


def fail(message: str, code: int = EXIT_USER_ERROR) -> typer.Exit:
    """Print one error line (no traceback) and return the Exit to raise."""
    err.print(f"[bold red]error:[/bold red] {message}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def build_spec(options: dict[str, Any]) -> JobSpec:
    """Validate the options into a JobSpec; a bad one raises UserError naming the option."""
    try:
        return JobSpec(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as e:
        first = e.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "options"
        message = first["msg"].removeprefix("Value error, ")
        raise UserError(f"{option_name(field)}: {message} (got {options.get(field)!r})") from None


def new_job_id() -> str:
    return secrets.token_hex(4)


def version_callback(value: bool) -> None:
    if value:
        out.print(f"dtrain {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version.")
    ] = None,
) -> None:
    """Distributed per-sample SGD for a NumPy MLP on MNIST, over a Ray cluster."""


@app.command()
def submit(
    workers: Annotated[int, typer.Option(help="Worker actors, each owning one shard of the training set.")] = 8,
    epochs: Annotated[int, typer.Option(help="Passes over the training set.")] = 32,
    lr: Annotated[float, typer.Option(help="Per-sample SGD learning rate.")] = 0.01,
    hidden: Annotated[str, typer.Option(help="Hidden layer sizes, e.g. 64 or 256,128.")] = "64",
    activation: Annotated[str, typer.Option(help="Hidden activation: relu or sigmoid.")] = "relu",
    sync_every: Annotated[
        Optional[int], typer.Option(help="Samples each worker trains between weight syncs in epoch 1. [default: 2000 / workers]")
    ] = None,
    sync_growth: Annotated[
        Optional[float], typer.Option(help="Factor the sync block grows by each epoch, up to a shard. [default: 2]")
    ] = None,
    combine: Annotated[str, typer.Option(help="Combine rule: bmuf (block momentum) or average.")] = "bmuf",
    block_momentum: Annotated[
        Optional[float], typer.Option(help="BMUF block momentum. [default: 1 - 1/workers]")
    ] = None,
    kernel: Annotated[str, typer.Option(help="SGD kernel: auto, numba or numpy.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same weights.")] = 0,
    until_accuracy: Annotated[
        Optional[float], typer.Option(help="Stop once test accuracy reaches this fraction, e.g. 0.97.")
    ] = None,
    data_dir: Annotated[
        Optional[Path], typer.Option(help="Directory of the four IDX files. [default: the MNIST shipped with dtrain]")
    ] = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="Run directory. [default: ./runs/JOB_ID]")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object at the end, nothing else on stdout.")] = False,
) -> None:
    """Train the MLP on the data, spread over Ray workers, and report how it did."""
    from dtrain.cli.progress import JobProgress
    from dtrain.cli.stdout import reserve_stdout
    from dtrain.cluster.runner import JobFailed, run_job

    try:
        spec = build_spec(
            dict(
                workers=workers, epochs=epochs, lr=lr, hidden=hidden, activation=activation, sync_every=sync_every,
                sync_growth=sync_growth, combine=combine, block_momentum=block_momentum, kernel=kernel, seed=seed,
                until_accuracy=until_accuracy, data_dir=str(data_dir) if data_dir else None,
            )
        )
        from dtrain.data.mnist import load_dataset

        dataset = load_dataset(spec.data_dir)
    except UserError as e:
        raise fail(str(e)) from None

    job_id = new_job_id()
    run_dir = out_dir or Path("runs") / job_id
    results = reserve_stdout()
    try:
        with JobProgress(err, spec, job_id) as progress:
            result = run_job(spec, run_dir, job_id, on_event=progress.on_event, dataset=dataset)
    except UserError as e:
        raise fail(str(e)) from None
    except JobFailed as e:
        if as_json:
            print(json.dumps({"job_id": job_id, "state": "FAILED", "error": str(e), "run_dir": str(run_dir)}), file=results)
        raise fail(f"job {job_id} failed: {e}", EXIT_FAILED) from None
    except KeyboardInterrupt:
        raise fail(f"job {job_id} interrupted; partial metrics are in {run_dir}", 130) from None

    report = result.report
    if as_json:
        print(
            json.dumps(
                {
                    "job_id": job_id,
                    "state": result.state,
                    "test_accuracy": report["test"]["accuracy"],
                    "test_loss": report["test"]["loss"],
                    "epochs": report["epochs_run"],
                    "workers": spec.workers,
                    "run_dir": str(run_dir),
                    "timing": report["timing"],
                    "history": [
                        {k: h[k] for k in ("epoch", "test_accuracy", "test_loss", "samples_per_s", "wall_time_s")}
                        for h in result.history
                    ],
                }
            ),
            file=results,
        )
    else:
        from dtrain.cli.report import print_report

        print_report(Console(file=results), report, dataset.x_test, str(run_dir))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
