"""The one exception type that means "the user gave us something wrong"."""

from __future__ import annotations

import re
from collections.abc import Callable


class UserError(Exception):
    """Bad input from the user: a file, an option, a job id.

    `field` names the input at fault in the engine's words: a JobSpec field
    ("workers"), a client setting ("address", "storage"), or an environment
    variable (upper case, "RAY_ADDRESS"). `problem` says what was wrong and what
    was expected, naming any other input in backquotes (`local`). The CLI words
    the inputs as its options (`--workers`) and prints one line, exit status 2, no
    traceback; `str(error)` is the engine's own wording.
    """

    #: The HTTP status the API answers it with (cluster/api.py), and the client reads back.
    status = 400

    def __init__(self, problem: str, field: str | None = None):
        super().__init__(problem, field)
        self.problem = problem
        self.field = field

    def __str__(self) -> str:
        return self.worded(lambda name: name)

    def worded(self, name_of: Callable[[str], str]) -> str:
        """The message with every input named by `name_of` (the CLI: "workers" -> "--workers"):
        the field, and the inputs the problem names in backquotes (`address`)."""
        problem = re.sub(r"`(\w+)`", lambda m: name_of(m.group(1)), self.problem)
        return f"{name_of(self.field)}: {problem}" if self.field else problem


class NotFound(UserError):
    """A job (or a job's file) that does not exist."""

    status = 404


class Conflict(UserError):
    """A request the job's state does not allow now (cancel an ended job, resume a running one)."""

    status = 409


def error_for_status(status: int) -> type[UserError]:
    """The UserError class an API refusal with HTTP `status` stands for."""
    return {cls.status: cls for cls in (NotFound, Conflict)}.get(status, UserError)
