"""Connecting to Ray: a running cluster, or an embedded single-node instance (local mode).

Without an address dtrain does what `ray.init()` users expect: it joins the
cluster that `ray start` started on this machine, if that cluster answers, and
only otherwise starts an embedded one.

Authentication is Ray's own. dtrain sets no RAY_AUTH_MODE for a cluster, so a
cluster without authentication takes a client without a token, and with token
authentication the token comes from wherever Ray reads it (RAY_AUTH_TOKEN,
RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token). The cluster found on this machine is
joined as `ray.init(address="auto")` joins it, which (Ray 2.60) turns token
authentication on by itself when this machine holds a token.

An address that will not do fails in seconds with one line instead of Ray's
20 s to minutes of retries: a plain TCP connect first (nothing listening, a
host that does not answer), then `ray.init` with Ray's own connection settings
shortened (CLIENT_TIMEOUTS), so that a wrong token or a server that is not Ray
fails after one attempt.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dtrain.cluster.placement import native_stderr_muted
from dtrain.errors import UserError

#: How long an address may take to accept a TCP connection before it counts as unreachable.
REACH_TIMEOUT_S = 3.0

#: Ray's own settings, read from its environment, that bound a client's first connection:
#: one attempt instead of 20 a second apart (NUM_REDIS_GET_RETRIES), 1 s instead of 5 for
#: the channel (the TCP connection is already known to work by then) and 2 s instead of
#: 30 for the first reply. Measured from the command's start against a server that is not
#: Ray: 80 s -> 5.9 s; against a wrong token: 21 s -> 2.2 s. A value the user set wins.
#: tests/test_connect.py fails if a Ray release stops honouring them.
CLIENT_TIMEOUTS = {
    "RAY_NUM_REDIS_GET_RETRIES": "1",
    "RAY_gcs_rpc_server_connect_timeout_s": "1",
    "RAY_py_gcs_connect_timeout_s": "2",
}

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

TOKEN_HINT = (
    "give this client the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, or the head node's "
    "~/.ray/auth_token copied here) and set RAY_AUTH_MODE=token"
)


@dataclass(frozen=True)
class Target:
    """Where to run: runtime "local" (an embedded Ray) or "cluster" (join `address`).

    `ray_address` is what `ray.init` is given: "auto" for the cluster found on this
    machine (so Ray applies its own rules for it, token included), else `address`.
    """

    runtime: str
    address: str | None = None
    ray_address: str | None = None
    source: str = "address"  # where the address came from: an input name (errors.UserError.field), or what it is


def connect_local(num_cpus: int | None = None) -> None:
    """Start an embedded Ray on this machine unless this process is already connected."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage-stats banner
    if "ray" not in sys.modules:
        # Token authentication, Ray 2.60's default for a new local cluster, said explicitly
        # so that Ray does not print a warning about having chosen it (and Ray 2.55 does the
        # same). Only before Ray loads: a Ray that has read its settings already would
        # disagree with the processes it starts.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    # Workers ask for fractions of a CPU on purpose; without this the raylet prints
    # a warning about "worker processes ... the maximum expected startup
    # concurrency" on the driver's stdout (which --json keeps for its one object).
    os.environ.setdefault("RAY_worker_maximum_startup_concurrency", "256")
    import ray

    if ray.is_initialized():
        return
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=False,
        _system_config={"max_direct_call_object_size": INLINE_OBJECT_BYTES},
    )


def stop_local() -> None:
    """Disconnect from Ray (stopping the embedded Ray this process started), if connected."""
    ray = sys.modules.get("ray")  # commands that never used Ray do not import it here
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def ray_address_file() -> Path:
    """Where `ray start` records the address of the cluster it started on this machine (Ray's rule)."""
    tmp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    return Path(tmp) / "ray" / "ray_current_cluster"


def recorded_address() -> str | None:
    """The address `ray start` recorded on this machine, if any."""
    try:
        return ray_address_file().read_text().strip() or None
    except OSError:
        return None


def split_address(address: str, source: str = "address") -> tuple[str, int]:
    """(host, port) of a cluster address; UserError for anything that is not host:port."""
    if "://" in address:
        raise UserError(f"expected the cluster's host:port (e.g. 10.0.0.5:6379), not a URL: {address!r}", source)
    host, sep, port = address.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise UserError(f"expected host:port, 'auto' or 'local', got {address!r}", source)
    if not 0 < int(port) < 65536:
        raise UserError(f"port {port} is out of range (1-65535)", source)
    return host, int(port)


def check_reachable(address: str, source: str = "address", timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Return if something accepts TCP connections at `address`; else UserError within `timeout_s`."""
    host, port = split_address(address, source)
    unreachable = f"cannot reach a Ray cluster at {address}"
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except socket.timeout:
        raise UserError(f"{unreachable}: no answer within {timeout_s:g} s", source) from None
    except OSError as e:
        raise UserError(f"{unreachable}: {e.strerror or e}", source) from None


def listening(address: str, timeout_s: float = 1.0) -> bool:
    try:
        check_reachable(address, timeout_s=timeout_s)
    except UserError:
        return False
    return True


def resolve(address: str | None, local: bool = False) -> Target:
    """Decide where to run from --address / RAY_ADDRESS / --local; UserError for an address that will not do."""
    if local and address:
        raise UserError("choose `local` or `address`, not both (`local` runs an embedded Ray in this process)", "local")
    if local:
        return Target("local")
    source = "address"
    if not address and os.environ.get("RAY_ADDRESS"):
        address, source = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    if address == "local":
        return Target("local")
    if not address or address == "auto":
        recorded = recorded_address()
        if not address:
            # A cluster `ray start` left running here is joined; a stale record of one that is gone is not.
            if not recorded or not listening(recorded):
                return Target("local")
        elif not recorded:
            raise UserError("auto: no Ray cluster was started on this machine (start one with: ray start --head)", source)
        source = "the Ray cluster started on this machine"
        check_reachable(recorded, source)
        return Target("cluster", recorded, "auto", source)
    check_reachable(address, source)
    return Target("cluster", address, address, source)


def connect(target: Target) -> None:
    """Connect this process to `target` (once); UserError, in one line and within seconds, if it cannot."""
    if target.runtime == "local":
        connect_local()
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with client_timeouts():
        _join(target)


@contextmanager
def client_timeouts() -> Iterator[None]:
    """CLIENT_TIMEOUTS in the environment while Ray is imported and joins a cluster, then gone
    again, so no Ray process started later by this one inherits them."""
    added = [name for name in CLIENT_TIMEOUTS if name not in os.environ]
    os.environ.update({name: CLIENT_TIMEOUTS[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _join(target: Target) -> None:
    import ray
    from ray.exceptions import AuthenticationError

    if ray.is_initialized():
        return
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if token_path and not Path(token_path).expanduser().is_file():
        raise UserError(f"{token_path}: no such file (expected the cluster's token)", "RAY_AUTH_TOKEN_PATH")
    t0 = time.monotonic()
    try:
        # Ray's client logs a line per failed attempt on descriptor 2: the user gets one line from us instead.
        with native_stderr_muted():
            ray.init(address=target.ray_address, logging_level="WARNING", log_to_driver=False)
    except AuthenticationError:  # token mode on here, and no token to send
        raise UserError(f"{target.address}: token authentication is on here, but this client has no token: {TOKEN_HINT}", target.source) from None
    except (ConnectionError, RuntimeError) as e:
        raise UserError(_connection_problem(target, e, time.monotonic() - t0), target.source) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _connection_problem(target: Target, e: BaseException, waited_s: float) -> str:
    """One line saying why `ray.init` could not join `target`, from what Ray raised."""
    told = " ".join(str(x) for x in (e, e.__cause__, e.__context__) if x is not None)
    if "InvalidAuthToken" in told or "Unauthenticated" in told or "AuthenticationError" in told:
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
            return f"{target.address}: the cluster refused this client's authentication token: {TOKEN_HINT}"
        return f"{target.address}: the cluster needs an authentication token: {TOKEN_HINT}"
    if "TimedOut" in told or "Timed out" in told or "timed out" in told:
        return f"{target.address}: something listens there, but it did not answer as a Ray cluster within {waited_s:.0f} s"
    return f"{target.address}: cannot join the Ray cluster: {_first_line(e)}"
