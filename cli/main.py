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
        if "got " not in message:
            message += f" (got {options.get(field)!r})"
        raise UserError(f"{option_name(field)}: {message}") from None


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run directory; refuse one that is a file, cannot be made, or already holds a run."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--out: {run_dir} is a file, expected a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise UserError(f"--out: {run_dir} is not empty; choose a new directory (nothing in it was changed)")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out: cannot create {run_dir}: {e.strerror}") from None


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
        Optional[int],
        typer.Option(help="Samples each worker trains between weight syncs in epoch 1.", show_default="2000 / workers"),
    ] = None,
    sync_growth: Annotated[
        Optional[float],
        typer.Option(help="Factor the sync block grows by each epoch, up to a whole shard.", show_default="2"),
    ] = None,
    combine: Annotated[str, typer.Option(help="Combine rule: bmuf (block momentum) or average.")] = "bmuf",
    block_momentum: Annotated[
        Optional[float],
        typer.Option(help="BMUF block momentum.", show_default="1 - 1/workers, at most 0.5 on whole-shard rounds"),
    ] = None,
    kernel: Annotated[str, typer.Option(help="SGD kernel: auto, numba or numpy.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same weights.")] = 0,
    until_accuracy: Annotated[
        Optional[float], typer.Option(help="Stop once test accuracy reaches this fraction, e.g. 0.97.")
    ] = None,
    data_dir: Annotated[
        Optional[Path],
        typer.Option(help="Directory of the four IDX files.", show_default="the MNIST shipped with dtrain"),
    ] = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="Run directory (new or empty).", show_default="runs/JOB_ID")
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
    try:
        prepare_run_dir(run_dir)
    except UserError as e:
        raise fail(str(e)) from None
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
        raise fail(f"job {job_id} interrupted; what it had written is in {run_dir}", 130) from None

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
    """Entry point: like ``app()``, but a usage error is one line, not a box."""
    try:
        code = app(standalone_mode=False)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # click's UsageError family, without importing Typer's private click
        if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
            raise
        message = e.format_message()
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `dtrain`: the help is the message
            err.print(message, markup=False, highlight=False)
        else:
            err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    sys.exit(code or 0)
