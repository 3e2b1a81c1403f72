"""The `dtrain` command line: a thin Typer layer over dtrain's library functions.

Commands live in `submit.py` (training) and `jobs.py` (list, status, logs,
cancel, pull, report); importing them registers them on the one `app`.
"""

from __future__ import annotations

import sys

from dtrain.cli import submit, jobs  # noqa: F401, I001  (registers the commands, in --help order)
from dtrain.cli.app import app, err

__all__ = ["app", "main"]


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
