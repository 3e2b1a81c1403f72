"""Keeping stdout for dtrain's own results.

Ray's driver prints some raylet messages (a worker that died, start-up
warnings) straight to file descriptor 1, where no Ray option reaches them.
`--json` promises JSON and nothing else on stdout, so once a command may
talk to Ray, and until the process exits, descriptor 1 points at stderr and
dtrain writes its results (sys.stdout) to a duplicate of the original stdout.
"""

from __future__ import annotations

import io
import os
import sys
from typing import TextIO


def reserve_stdout() -> TextIO:
    """Send everything written to descriptor 1 to stderr from now on; return a stream to the real stdout.

    Where stdout is not a real file (e.g. under typer's CliRunner), nothing is
    redirected and sys.stdout itself is returned.
    """
    try:
        fd = sys.stdout.fileno()
        err_fd = sys.stderr.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return sys.stdout
    sys.stdout.flush()
    results = os.fdopen(os.dup(fd), "w", buffering=1)
    os.dup2(err_fd, fd)
    sys.stdout = results  # print() and the rich consoles write results there too
    return results
