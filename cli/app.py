"""The Typer application, its consoles and what every command shares (options, errors, exit codes)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.text import Text

from dtrain import __version__
from dtrain.errors import UserError

app = typer.Typer(
    name="dtrain",
    help="Distributed per-sample SGD for a NumPy MLP on MNIST, over a Ray cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

EXIT_FAILED = 1  # a followed job failed or was cancelled
EXIT_USER_ERROR = 2  # bad option, unknown job id, no cluster, bad file
EXIT_INTERRUPTED = 130

# Options shared by the commands that talk to jobs.
Address = Annotated[
    Optional[str],
    typer.Option(
        help="Cluster to use: http://HOST:PORT (its dtrain API: no Ray needed here), a Ray host:port, "
        "'auto' (the one `ray start` started here) or 'local'.",
        show_default="DTRAIN_ADDRESS, else RAY_ADDRESS, else the cluster running on this machine, else local mode",
    ),
]
Local = Annotated[bool, typer.Option("--local", help="Local mode: an embedded Ray in this process, even if a cluster runs.")]
Storage = Annotated[
    Optional[str],
    typer.Option(help="Where jobs are kept (on the head node for a cluster).", show_default="DTRAIN_STORAGE, else ~/.dtrain"),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of text.")]
JobId = Annotated[str, typer.Argument(help="The job id, as `dtrain submit` or `dtrain list` shows it.", show_default=False)]
CopyTo = Annotated[
    Optional[Path], typer.Option("--out", "-o", help="Also copy the artifacts into this directory (new or empty).")
]
Detach = Annotated[bool, typer.Option("--detach", help="Print the job id and return; the job runs on in the cluster.")]


def note(message: str) -> None:
    """One line for the user on stderr that is not an error."""
    err.print(message, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """A UserError inside becomes its one line on stderr and exit status 2."""
    try:
        yield
    except UserError as e:
        raise fail(e.worded(option_name)) from None


def option_name(name: str) -> str:
    """How the CLI spells an input the engine names (errors.UserError.field): the option
    `--cpus-per-worker` for "cpus_per_worker"; an environment variable or a description as it is."""
    if name.isupper() or " " in name:
        return name
    return "--" + name.replace("_", "-")


def fail(message: str, code: int = EXIT_USER_ERROR) -> typer.Exit:
    """Print one error line (no traceback) and return the Exit to raise. The message is
    printed as it is: it quotes what the user typed, which is no Rich markup."""
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    return typer.Exit(code)


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


def check_out_dir(path: Path, option: str = "--out") -> None:
    """Refuse a directory for artifacts that is a file, already holds files, or could not be
    made; create nothing (a command that is refused later leaves no directory behind)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{option}: {path} is a file, expected a directory")
    if path.is_dir():
        if any(path.iterdir()):
            raise UserError(f"{option}: {path} is not empty; choose a new directory (nothing in it was changed)")
        return
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option}: cannot create {path}: {parent} is not a writable directory")


def prepare_out_dir(path: Path, option: str = "--out") -> None:
    """check_out_dir, then create the directory."""
    check_out_dir(path, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{option}: cannot create {path}: {e.strerror}") from None
