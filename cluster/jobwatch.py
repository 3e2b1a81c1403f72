"""Waiting for a job's record or epoch lines to change, where its files are (the head node).

A job's runner writes its record (job.json) and appends its epoch lines
(metrics.jsonl) in the job's directory; nothing else announces a change. The
HTTP API's long poll (`/jobs/{id}/progress`) and log stream wait here, so that a
follower hears of an epoch, or of the job's end, within `INTERVAL_S` of it
rather than at its next poll: looking at two files' metadata is a few
microseconds, where a poll through the API is a request and two registry calls.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: How often a waiter looks at the files' metadata.
INTERVAL_S = 0.01

#: The longest one wait may last: a long poll answers at least this often.
MAX_WAIT_S = 10.0

#: At most this many more looks for a change to settle (a job that writes without pause is answered anyway).
SETTLE_LOOKS = 5

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


def wait_for_change(job_dir: Path, seen: str, timeout_s: float) -> str:
    """Wait until the job's files are no longer at version `seen`, or `timeout_s` (at most
    MAX_WAIT_S) has passed; returns their version then.

    A change is answered once the files have kept still for INTERVAL_S: the runner appends
    an epoch's line and then rewrites the record, and one answer for both halves what the
    followers' requests cost the cores the job trains on."""
    deadline = time.monotonic() + min(max(timeout_s, 0.0), MAX_WAIT_S)
    while (now := version(job_dir)) == seen and time.monotonic() < deadline:
        time.sleep(INTERVAL_S)
    for _ in range(SETTLE_LOOKS):
        if now == seen:
            break
        time.sleep(INTERVAL_S)
        if (settled := version(job_dir)) == now:
            break
        now = settled
    return now
