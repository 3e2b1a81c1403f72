"""Checkpoints of the parameter server's state, one per epoch, so a job can resume.

A checkpoint is an .npz of plain arrays (the update rule's state: for BMUF the
global model, its momentum buffer and start point; for FedAdam the model and
Adam's two moments) plus a JSON string of the figures that go with them
(epochs done, rounds applied, the epoch's training totals). It is written
atomically and read with allow_pickle=False; the last few are kept.

Checkpoints are not synced to disk. The server writes one at every epoch's end,
while the workers wait for the next epoch's weights, and syncing took 1.3 of its
2 ms (every epoch of a warm 8-worker job, which has 32 epochs of 80 ms). What a
sync would add is surviving a crash of the machine itself; after one, `load`
passes over a checkpoint the crash damaged or lost, and the job trains again
from an earlier one (or from its start), to the same results.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from dtrain.files import write_atomic

#: Checkpoints kept per job; older ones are removed once a newer one is on disk.
KEEP = 3

#: The arrays every rule keeps (others may add their own, e.g. FedAdam's moments).
ARRAYS = ("global_theta", "delta", "start")


def path_for(directory: Path, epochs_done: int) -> Path:
    return directory / f"epoch-{epochs_done:05d}.npz"


def save(directory: Path, epochs_done: int, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> Path:
    """Write the checkpoint after `epochs_done` epochs; remove all but the last KEEP."""
    buffer = io.BytesIO()
    np.savez(buffer, info=np.array(json.dumps({**info, "epochs_done": epochs_done})), **arrays)
    path = path_for(directory, epochs_done)
    write_atomic(path, buffer.getvalue(), sync=False)  # the module's docstring says why
    for old in sorted(directory.glob("epoch-*.npz"))[:-KEEP]:
        old.unlink(missing_ok=True)
    # A server killed mid-write left its temporary file; only this job's server writes here, one at a time.
    for partial in directory.glob(".epoch-*.npz.*.tmp"):
        partial.unlink(missing_ok=True)
    return path


def load(directory: Path, at_most: int) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The newest readable checkpoint of at most `at_most` epochs as (arrays, info), or None."""
    for path in sorted(directory.glob("epoch-*.npz"), reverse=True):
        if int(path.stem.removeprefix("epoch-")) > at_most:
            continue
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {k: np.array(archive[k], dtype=np.float32) for k in archive.files if k != "info"}
                missing = [k for k in ARRAYS if k not in arrays]
                if missing:
                    raise KeyError(missing)
                info = json.loads(str(archive["info"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            continue  # damaged by hand or by the disk: an older one will do
        return arrays, info
    return None
