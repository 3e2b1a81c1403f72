"""The `dtrain` command line: a thin Typer layer over dtrain's library functions.

Commands live in `submit.py` (training) and `jobs.py` (list, status, logs,
cancel, pull, report); importing them registers them on the one `app`.
"""

from __future__ import annotations

import os
import sys

from dtrain.cli import submit, jobs, predict, show  # noqa: F401, I001  (registers the commands, in --help order)
from dtrain.cli.app import EXIT_FAILED, EXIT_USER_ERROR, app, err
from dtrain.cli.stdout import results_written
from dtrain.cluster.connect import stop_local
from dtrain.errors import UserError

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: like ``app()``, but a usage error is one line, not a box."""
    try:
        run()
    except SystemExit as done:  # how every command ends, but for an error with a traceback
        wind_up()
        exit_without_teardown(done.code)
        raise
    except BaseException:
        wind_up()
        raise


def wind_up() -> None:
    results_written()
    stop_local()


def exit_without_teardown(code: object) -> None:
    """Exit with `code` at once, once the output is flushed, skipping the interpreter's teardown
    of every module it loaded: 30-60 ms at the end of every command, and of every followed
    job (as mypy does). Only where that teardown has nothing left to do: no Ray in this process
    (its exit hooks disconnect the driver, and stop an embedded Ray), no other thread. Returns
    otherwise, for the usual exit."""
    import threading

    if "ray" in sys.modules or threading.active_count() > 1 or not (code is None or isinstance(code, int)):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe or stream: the usual exit says so
        return
    os._exit(code or 0)


def run(args: list[str] | None = None) -> None:
    """Run the command `args` (default: sys.argv[1:]) and exit with its status."""
    keep_undecodable_bytes(sys.stdout)
    try:
        code = app(args=args, prog_name="dtrain", standalone_mode=False)
    except KeyboardInterrupt:
        sys.exit(130)
    except UserError as e:  # a command that did not catch its own: still one line
        err.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(EXIT_USER_ERROR)
    except Exception as e:  # click's UsageError family, without importing Typer's private click
        if is_ray_error(e):  # the cluster went away under the command
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            err.print(f"error: Ray: {first}", markup=False, highlight=False, soft_wrap=True)
            sys.exit(EXIT_FAILED)
        if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
            raise
        message = e.format_message()
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `dtrain`: the help is the message
            err.print(message, markup=False, highlight=False)
        else:
            err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    sys.exit(code or 0)


def keep_undecodable_bytes(stream: object) -> None:
    """Let `stream` print text holding bytes that were not UTF-8 (a file name, as Python decodes
    it from the command line) as those same bytes, instead of failing with UnicodeEncodeError."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None and getattr(stream, "errors", None) == "strict":
        reconfigure(errors="surrogateescape")


def is_ray_error(e: BaseException) -> bool:
    """A Ray error (without importing Ray for commands that never started it)."""
    ray_exceptions = sys.modules.get("ray.exceptions")
    return ray_exceptions is not None and isinstance(e, ray_exceptions.RayError)
