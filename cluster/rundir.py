"""A job's run directory and its turn: resuming what is there, and queueing behind older jobs."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dtrain.cluster.outcome import OnEvent
from dtrain.files import remove_partial_writes, write_json
from dtrain.spec import JobSpec


def wait_for_turn(may_start: Callable[[], bool] | None, stop: Callable[[], bool], emit: OnEvent, poll_s: float = 0.5) -> bool:
    """Wait until the job may reserve its CPUs; False if it was stopped first."""
    said = False
    while may_start is not None and not may_start():
        if stop():
            return False
        if not said:
            emit("pending", {"message": "queued behind older jobs that are waiting for CPUs"})
            said = True
        time.sleep(poll_s)
    return True


def start_or_resume(run_dir: Path, spec: JobSpec) -> None:
    """Prepare the run directory: kept as it is if it holds this job already (it resumes from
    its checkpoints, less what writes cut off by a crash left behind), else cleared of
    another job's metrics and checkpoints. A spec.json written before a field was added
    to the spec is the same job if it reads as the same spec."""
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_partial_writes(run_dir)
    spec_file = run_dir / "spec.json"
    if spec_file.is_file() and same_spec(json.loads(spec_file.read_text()), spec):
        return
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    write_json(spec_file, spec.model_dump(mode="json"))


def same_spec(saved: Any, spec: JobSpec) -> bool:
    try:
        return JobSpec.model_validate(saved) == spec
    except ValueError:
        return False
