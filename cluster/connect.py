"""Connecting to Ray: an embedded single-node instance for local mode."""

from __future__ import annotations

import math
import os

from dtrain.errors import UserError


def connect_local(num_cpus: int | None = None) -> None:
    """Start an embedded Ray on this machine unless this process is already connected."""
    import ray

    if ray.is_initialized():
        return
    # Workers ask for fractions of a CPU on purpose; without this the raylet prints
    # a warning about "worker processes ... the maximum expected startup
    # concurrency" on the driver's stdout (which --json keeps for its one object).
    os.environ.setdefault("RAY_worker_maximum_startup_concurrency", "256")
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=False,
    )


def total_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 0.0))


#: Workers per CPU at the most: each is a process of ~130 MiB, and thousands of
#: them on a laptop would swamp it long before they trained anything.
MAX_WORKERS_PER_CPU = 32


def cpus_per_worker(workers: int, available: float) -> float:
    """1 CPU per worker where the cluster has enough, otherwise an equal share of what it has."""
    if available <= 0:
        raise ValueError("the Ray cluster reports no CPUs")
    if workers > MAX_WORKERS_PER_CPU * available:
        raise UserError(
            f"--workers: {workers} workers on {available:g} CPUs; expected at most "
            f"{int(MAX_WORKERS_PER_CPU * available)} ({MAX_WORKERS_PER_CPU} per CPU)"
        )
    # Rounded down: shares that add up to a hair over the total would leave a worker unplaced.
    return min(1.0, math.floor(available / workers * 10_000) / 10_000)
