"""Connecting to Ray: a running cluster, or an embedded single-node instance (local mode).

Without an address dtrain does what `ray.init()` users expect: it joins the
cluster that `ray start` started on this machine, if that cluster answers, and
only otherwise starts an embedded one. An address that does not answer fails
in seconds with one line, instead of Ray's minute of retries.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dtrain.cluster.probe import probe
from dtrain.errors import UserError

#: How long an address may take to accept a connection before it counts as unreachable.
PROBE_TIMEOUT_S = 3.0

#: Task results up to this size travel inside Ray's RPC replies instead of through the
#: shared-memory object store (Ray's default limit is 100 KiB). A sync round moves the
#: weights (199 KiB for 784-64-10) from each worker to the server and back; kept out of
#: the object store, it skips the raylet's create/seal/fetch steps. Measured with the real
#: workers and server, ms per round: 1 worker 4.2 -> 2.6, 2 workers 5.5 -> 3.7, 8 workers
#: 15.5 -> 12.8; training phase of `--workers 8` (32 epochs), median of 3 alternated runs:
#: 4.72 -> 4.20 s. Inside replies, weights go worker -> driver -> server, a copy per hop, so
#: larger models (795 KiB at hidden 256, which a single run measured slower this way) keep
#: the object store, where the server reads them without copies. A cluster started with
#: `ray start` keeps its own setting (deploy/README.md).
INLINE_OBJECT_BYTES = 256 << 10

#: How long the start-up's own node lookup polls before leaving it to Ray's (_prompt_node_lookup).
NODE_REGISTRATION_WAIT_S = 10.0


@dataclass(frozen=True)
class Target:
    """Where to run: mode "local" (an embedded Ray) or "cluster" (join `address`)."""

    mode: str
    address: str | None = None


def connect_local(num_cpus: int | None = None) -> None:
    """Start an embedded Ray on this machine unless this process is already connected."""
    import ray

    if ray.is_initialized():
        return
    # Workers ask for fractions of a CPU on purpose; without this the raylet prints
    # a warning about "worker processes ... the maximum expected startup
    # concurrency" on the driver's stdout (which --json keeps for its one object).
    os.environ.setdefault("RAY_worker_maximum_startup_concurrency", "256")
    with _without_idle_head_processes(), _prompt_node_lookup():
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level="WARNING",
            log_to_driver=False,
            _system_config={"max_direct_call_object_size": INLINE_OBJECT_BYTES},
        )


@contextmanager
def _without_idle_head_processes() -> Iterator[None]:
    """While Ray starts here: leave out three head processes an embedded Ray never uses.

    With include_dashboard=False, `ray.init` still starts a dashboard process, only
    to report usage statistics (which `ray.init` itself turns off for a local
    cluster, released wheels), and waits 0.3-0.5 s for it to answer; the autoscaler's
    monitor has no nodes to add to a single machine; the log monitor forwards
    workers' prints, which dtrain does not ask for (log_to_driver=False). They took
    1.2 s of CPU while the workers start on 2 cores. Measured, 5 alternated runs:
    `ray.init` 1.7-2.5 s -> 1.0 s; Ray up and 8 actors ready 4.7-5.6 s -> 3.9-4.1 s.
    Usage statistics turned on keep the dashboard. Should Ray's internals have moved,
    Ray starts them all.
    """
    try:
        from ray._private.node import Node

        rays_node_init, rays_start_api_server = Node.__init__, Node.start_api_server
    except (ImportError, AttributeError):
        rays_node_init = None
    if rays_node_init is None:
        yield
        return

    def lean_node_init(self: Any, *args: Any, **kwargs: Any) -> None:
        params = kwargs.get("ray_params", args[0] if args else None)
        if kwargs.get("head") and kwargs.get("ray_init_cluster") and hasattr(params, "include_log_monitor"):
            params.no_monitor = True
            params.include_log_monitor = False
        rays_node_init(self, *args, **kwargs)

    def lean_start_api_server(self: Any, *args: Any, **kwargs: Any) -> None:
        # Read now: ray.init sets the variable just before it starts the head.
        if kwargs.get("include_dashboard") is not False or os.environ.get("RAY_USAGE_STATS_ENABLED") != "0":
            rays_start_api_server(self, *args, **kwargs)

    Node.__init__, Node.start_api_server = lean_node_init, lean_start_api_server
    try:
        yield
    finally:
        Node.__init__, Node.start_api_server = rays_node_init, rays_start_api_server


@contextmanager
def _prompt_node_lookup() -> Iterator[None]:
    """While Ray starts here: find the new node as soon as it has registered.

    `ray.init` starts the raylet, waits 0.1 s, then asks the GCS for the node through
    a C++ call that, if the raylet has not registered yet, sleeps a whole second
    before asking again. The raylet takes 0.5-1.3 s to register here, so most
    starts lost most of a second. This polls the GCS's node table every 20 ms first
    (`ray.init` 2.2-3.2 s -> 1.8-2.6 s, 5 alternated runs each). Should Ray's
    internals have moved, Ray's own lookup runs as before.
    """
    try:
        from ray._private import services, state

        rays_lookup = services.get_node
    except (ImportError, AttributeError):
        rays_lookup = None
    if rays_lookup is None:
        yield
        return

    def get_node(gcs_address: str, node_id: str) -> Any:
        try:
            table = state.GlobalState()
            table._initialize_global_state(services._get_gcs_client_options(gcs_address))
            deadline = time.monotonic() + NODE_REGISTRATION_WAIT_S
            while not node_listed(table.node_table(), node_id) and time.monotonic() < deadline:
                time.sleep(0.02)
        except Exception:  # noqa: BLE001 - any trouble: Ray's own lookup below decides
            pass
        return rays_lookup(gcs_address, node_id)

    services.get_node = get_node
    try:
        yield
    finally:
        services.get_node = rays_lookup


def node_listed(nodes: list[dict[str, Any]], node_id: str) -> bool:
    """Whether GCS's node table lists `node_id` yet. Also True for a table whose rows lack
    "NodeID" (Ray renamed it): polling could never end then, so Ray's own lookup decides."""
    return any(n.get("NodeID", node_id) == node_id for n in nodes)


def stop_local() -> None:
    """Stop the embedded Ray this process started (and only disconnect from a cluster).

    The same as Ray's own `ray.shutdown()` at exit, less 1.5 s of waiting measured at
    every exit here: Ray's exit hook sleeps 0.5 s so that workers' log lines reach the
    driver (dtrain runs with log_to_driver off), and, when Ray started the autoscaler's
    monitor (connect_local asks it not to), Ray stops it after the GCS, so its SIGTERM
    handler hangs reporting to a GCS that is gone until it is killed a second later.
    On an embedded single-node Ray the monitor has nothing to save: it is killed first.
    """
    import sys

    if "ray" not in sys.modules:  # commands that never used Ray do not import it here
        return
    import ray

    if not ray.is_initialized():
        return
    try:
        from ray._private import ray_constants
        from ray._private import worker as ray_worker

        node = ray_worker._global_node
        if node is not None and node.head:
            for info in node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []):
                info.process.kill()
                info.process.wait(timeout=5)
    except Exception:  # Ray's internals moved: its own shutdown below is still right, only slower
        pass
    ray.shutdown()


def recorded_address() -> str | None:
    """The address `ray start` recorded on this machine (Ray's own file, under RAY_TMPDIR or /tmp)."""
    from ray._common.utils import get_ray_address_file

    try:
        with open(get_ray_address_file(None)) as f:
            return f.read().strip() or None
    except OSError:
        return None


def listening(address: str, timeout_s: float = 1.0) -> bool:
    """True if something accepts TCP connections at host:port."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def resolve(address: str | None, local: bool = False) -> Target:
    """Decide where to run from --address / RAY_ADDRESS / --local; raise UserError for an address that will not do."""
    if local and address:
        raise UserError("--local and --address: choose one (--local runs an embedded Ray in this process)")
    if local:
        return Target("local")
    source = "--address"
    if not address and os.environ.get("RAY_ADDRESS"):
        address, source = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    if address == "local":
        return Target("local")
    if not address:
        # A cluster `ray start` left running here is joined; a stale record of one that is gone is not.
        recorded = recorded_address()
        if not recorded or not listening(recorded):
            return Target("local")
        address, source = recorded, "the Ray cluster started on this machine"
    elif address == "auto":
        address = recorded_address()
        if not address:
            raise UserError(f"{source} auto: no Ray cluster was started on this machine (start one with `ray start --head`)")
    probe(address, PROBE_TIMEOUT_S, source)
    return Target("cluster", address)


def connect(target: Target) -> None:
    """Connect this process to `target` (once)."""
    import ray

    if target.mode == "local":
        connect_local()
        return
    if ray.is_initialized():
        return
    try:
        ray.init(address=target.address, logging_level="WARNING", log_to_driver=False)
    except ConnectionError as e:
        raise UserError(f"--address: cannot join the Ray cluster at {target.address}: {str(e).splitlines()[0]}") from None
