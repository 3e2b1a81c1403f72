"""Durable file writes for everything dtrain keeps: atomic replace, synced appends, torn-line-tolerant reads."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write to a temporary file in the same directory, fsync, rename over `path`, fsync the directory.

    With `sync=False`, no fsync: a lost process still leaves the old file or the new one,
    whole, but a crash of the machine itself may leave neither (for files that can be
    made again, such as checkpoints).

    The file is created with mode 0o666 less the process umask (applied by the kernel,
    as for any new file): readable by whoever may read the directory, as reports and
    models are for sharing. The umask itself is never read or changed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        _sync_directory(path.parent)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new, exclusive, empty file next to `path`, named so remove_partial_writes finds it."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue


def _sync_directory(directory: Path) -> None:
    """Make a rename or a new file in `directory` durable (where the system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot sync a directory; the data itself is synced
    finally:
        os.close(fd)


def remove_partial_writes(directory: Path) -> list[Path]:
    """Delete what writes cut off between writing and renaming left in `directory` (a
    process or a whole cluster killed mid-write): their temporary files. None of them
    replaced the file it was for, so nothing is lost. Only for a directory nothing is
    writing to, such as a job's before its runner starts. Returns the files removed."""
    removed = [p for p in directory.rglob(".*.tmp") if p.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to the end of the file and sync it (only the job's one writer appends).

    A line that a crash cut off is never complete; readers skip it, and the next append
    removes it first, so it cannot join the new line into one unreadable line.
    """
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
    try:
        _drop_torn_line(fd)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _drop_torn_line(fd: int) -> None:
    """Truncate an unfinished last line (one not ended by a newline) off the file open at `fd`."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:  # back to the newline before the torn line, or the start of the file
        start = max(0, end - 4096)
        cut = os.pread(fd, end - start, start).rfind(b"\n")
        if cut >= 0:
            os.ftruncate(fd, start + cut + 1)
            return
        end = start
    os.ftruncate(fd, 0)


class DamagedFile(ValueError):
    """A file dtrain wrote does not read back as written: edited by hand, or damaged on disk."""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The file's complete lines as JSON; an unfinished last line (being written, or cut off
    by a crash) is not one of them. DamagedFile, naming the line, for a complete line that is
    not JSON."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    complete = data[: data.rfind(b"\n") + 1]
    records = []
    for number, line in enumerate(complete.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            raise DamagedFile(f"{path}: line {number} is not a JSON record (the file is damaged or was edited)") from None
    return records
