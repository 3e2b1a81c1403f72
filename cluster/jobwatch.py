"""Waiting for a job's record or epoch lines to change, where its files are (the head node).

A job's runner writes its record (job.json) and appends its epoch lines
(metrics.jsonl) in the job's directory; nothing else announces a change. The
HTTP API's long poll (`/jobs/{id}/progress`) and log stream wait here, so that a
follower hears of an epoch, or of the job's end, within `INTERVAL_S` of it
rather than at its next poll: looking at two files' metadata is a few
microseconds, where a poll through the API is a request and two registry calls.

A follower may also ask for news at most every so often (`gather_s`): the
changes of that time come in one answer, and the job's end at once. Each answer
costs the API and the follower CPU on the cores the job trains on; a warm
8-worker job has an epoch every 80 ms or so, more often than anyone reads them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from dtrain.cluster.jobstore import TERMINAL

#: How often a waiter looks at the files' metadata.
INTERVAL_S = 0.01

#: The longest one wait may last: a long poll answers at least this often.
MAX_WAIT_S = 10.0

#: At most this many more looks for a change to settle (a job that writes without pause is answered anyway).
SETTLE_LOOKS = 5

#: The longest a waiter gathers changes before answering (`gather_s`).
MAX_GATHER_S = 2.0

FILES = ("job.json", "metrics.jsonl")


def version(job_dir: Path) -> str:
    """What the job's files are now, as a token that changes whenever either is written: each
    one's inode, modification time (ns) and size, or "-" while it does not exist. (The inode:
    the record is replaced by a new file on each write, and two writes of the same size may
    fall in one tick of the file system's clock.)"""
    parts = []
    for name in FILES:
        try:
            st = os.stat(job_dir / name)
        except OSError:
            parts.append("-")
        else:
            parts.append(f"{st.st_ino}.{st.st_mtime_ns}.{st.st_size}")
    return ":".join(parts)


def ended(job_dir: Path) -> bool:
    """Whether the job's record says that the job has ended (a record not there or not readable: no)."""
    try:
        return json.loads((job_dir / "job.json").read_bytes()).get("state") in TERMINAL
    except (OSError, ValueError, AttributeError):
        return False


def wait_for_change(job_dir: Path, seen: str, timeout_s: float, gather_s: float = 0.0) -> str:
    """Wait until the job's files are no longer at version `seen`, or `timeout_s` (at most
    MAX_WAIT_S) has passed; returns their version then.

    A change is answered once the files have kept still for INTERVAL_S: the runner appends
    an epoch's line and then rewrites the record, and one answer for both halves what the
    followers' requests cost the cores the job trains on. With `gather_s` (at most
    MAX_GATHER_S), a change is answered no sooner than `gather_s` after the call, with
    whatever else changed meanwhile, unless the job has ended."""
    start = time.monotonic()
    deadline = start + min(max(timeout_s, 0.0), MAX_WAIT_S)
    gathered = min(start + min(max(gather_s, 0.0), MAX_GATHER_S), deadline)
    looked_at = seen  # the last version whose record was read for the job's state
    while time.monotonic() < deadline:
        now = version(job_dir)
        if now != seen:
            if time.monotonic() >= gathered:
                break
            if now != looked_at:
                looked_at = now
                if ended(job_dir):
                    break
        time.sleep(INTERVAL_S)
    else:
        now = version(job_dir)
    for _ in range(SETTLE_LOOKS):
        if now == seen:
            break
        time.sleep(INTERVAL_S)
        if (settled := version(job_dir)) == now:
            break
        now = settled
    return now
