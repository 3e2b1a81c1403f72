"""The job runner the registry keeps between jobs: the last job's, idle, given the next job.

A new runner costs a job ~0.5 s (its process) and ~0.5 s more to load its
dataset, convert it and put it into the object store. The runner of a job that
has ended has all of that (datacache.py), so the registry keeps it, idle, and
gives it the next job: one runner at most, for as long as the warm pool keeps an
idle worker (DTRAIN_POOL_IDLE_S, pool.py; 0 keeps none). It asks for no CPUs.

Runners are named "runner-<random>", and a job's record names its runner
(`owner.runner`): that is how a restarted registry finds them. An idle runner
that no record names is let go when a registry starts.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from dtrain.cluster.job_runner import NAMESPACE, RUNNER_PREFIX, new_runner


class IdleRunner:
    """At most one idle runner, with the time it became idle."""

    def __init__(self, root: str, idle_s: float):
        self.root, self.idle_s = root, idle_s
        self.lock = threading.Lock()
        self.kept: tuple[str, Any, float] | None = None  # name, handle, time.monotonic() when idle

    def take(self) -> tuple[str, Any]:
        """The idle runner if there is one, else a new one: (name, handle)."""
        with self.lock:
            kept, self.kept = self.kept, None
        return kept[:2] if kept else new_runner(self.root)

    def keep(self, name: str, handle: Any) -> None:
        """Keep a runner whose job has ended for the next job; end it if one is kept already or none may be."""
        with self.lock:
            if self.kept is None and self.idle_s > 0:
                self.kept = (name, handle, time.monotonic())
                return
        import ray

        ray.kill(handle)

    def reap(self) -> None:
        """End the idle runner once it has been idle for `idle_s`."""
        with self.lock:
            if self.kept is None or time.monotonic() - self.kept[2] < self.idle_s:
                return
            kept, self.kept = self.kept, None
        import ray

        ray.kill(kept[1])

    def let_go_unnamed(self, named: set[str]) -> list[str]:
        """End the runners in the cluster that are not in `named` (those of running jobs) nor kept:
        the idle runner of a registry that was lost. Returns their names."""
        import ray

        with self.lock:
            kept = self.kept[0] if self.kept else None
        gone = []
        for actor in ray.util.list_named_actors(all_namespaces=True):
            name = actor["name"]
            if actor["namespace"] != NAMESPACE or not name.startswith(RUNNER_PREFIX) or name in named or name == kept:
                continue
            try:
                ray.kill(ray.get_actor(name, namespace=NAMESPACE))
            except ValueError:  # gone meanwhile
                continue
            gone.append(name)
        return gone
