"""Keeping stdout for dtrain's own results.

Ray's driver prints raylet messages (a worker that died, a task retried) to
stdout, where no Ray option reaches them: native code writes them to file
descriptor 1, and a background thread (Ray's error listener) prints them to
``sys.stdout``. `--json` promises JSON and nothing else on stdout, so once a
command may talk to Ray, and until the process exits, descriptor 1 points at
stderr, and sys.stdout sends the main thread's writes (dtrain's results) to a
duplicate of the original stdout and any other thread's to stderr.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from typing import TextIO


class MainThreadStdout(io.TextIOBase):
    """sys.stdout that keeps the real stdout for the main thread; other threads write to `others`."""

    def __init__(self, results: TextIO, others: TextIO):
        self.results, self.others = results, others
        self.done = False

    def _target(self) -> TextIO:
        main = threading.current_thread() is threading.main_thread()
        return self.results if main and not self.done else self.others

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self.results.flush()
        self.others.flush()

    def fileno(self) -> int:
        return self.results.fileno()

    def isatty(self) -> bool:
        return self.results.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.results.encoding

    def writable(self) -> bool:
        return True


def reserve_stdout() -> TextIO:
    """Send everything written to descriptor 1 to stderr from now on; return a stream to the real stdout.

    Where stdout is not a real file (e.g. under typer's CliRunner), nothing is
    redirected and sys.stdout itself is returned. Called again, it returns the same stream.
    """
    if isinstance(sys.stdout, MainThreadStdout) and not sys.stdout.done:
        return sys.stdout.results
    try:
        fd = sys.stdout.fileno()
        err_fd = sys.stderr.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return sys.stdout
    sys.stdout.flush()
    results = os.fdopen(os.dup(fd), "w", buffering=1, errors=getattr(sys.stdout, "errors", None))
    os.dup2(err_fd, fd)
    # print() and the rich consoles write results there too; Ray's threads do not.
    sys.stdout = MainThreadStdout(results, sys.stderr)
    return results


def results_written() -> None:
    """The command has written its results: whatever comes after (Ray flushes the messages it
    held back when it shuts down, at exit, in the main thread) goes to stderr."""
    if isinstance(sys.stdout, MainThreadStdout):
        sys.stdout.flush()
        sys.stdout.done = True
