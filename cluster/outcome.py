"""How a job can end other than with a model, and how its progress is told."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: progress callback: (event name, payload)
OnEvent = Callable[[str, dict[str, Any]], None]


class JobFailed(Exception):
    """The job ran but could not produce a model (e.g. it diverged)."""


class JobCancelled(Exception):
    """The job was asked to stop (`dtrain cancel`, or Ctrl-C in local mode)."""


class ServerRestarted(Exception):
    """A call reached a parameter server that Ray restarted, before the job configured it again:
    the job goes back to its last checkpoint, as when the server is lost (training.py)."""


class WorkersLost(Exception):
    """A node with some of the job's workers is gone, and Ray could not restart them elsewhere."""

    def __init__(self, message: str, epochs_done: int):
        super().__init__(message)
        self.epochs_done = epochs_done
