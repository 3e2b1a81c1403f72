"""Checking a cluster address in seconds, before `ray.init` spends a minute retrying it.

Three steps, each with what is left of one deadline:
1. a TCP connection and an HTTP/2 greeting (Ray's GCS speaks gRPC): catches
   nothing listening, a host that does not answer, and something that is not Ray;
2. this client's token settings: with token authentication on and no token,
   Ray's client aborts the whole process, so that case must be caught before;
3. one authenticated call to the GCS, in a thread we stop waiting for at the
   deadline: catches a wrong token.
Each failure is a UserError with one line that says what to fix.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time

from dtrain.errors import UserError

_H2_GREETING = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS
_H2_SETTINGS = 0x4

TOKEN_HINT = (
    "set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token, or copy the head node's "
    "~/.ray/auth_token here; for a cluster without token authentication set RAY_AUTH_MODE=disabled"
)


def split_address(address: str, source: str = "--address") -> tuple[str, int]:
    if "://" in address:
        raise UserError(f"{source}: expected the cluster's host:port (e.g. 10.0.0.5:6379), not a URL: {address!r}")
    host, sep, port = address.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise UserError(f"{source}: expected host:port, 'auto' or 'local', got {address!r}")
    if not 0 < int(port) < 65536:
        raise UserError(f"{source}: port {port} is out of range (1-65535)")
    return host, int(port)


def _greet(address: str, host: str, port: int, deadline: float, source: str) -> None:
    """TCP connect and an HTTP/2 SETTINGS exchange, within the deadline."""
    unreachable = f"{source}: cannot reach a Ray cluster at {address}"
    try:
        sock = socket.create_connection((host, port), timeout=max(0.05, deadline - time.monotonic()))
    except socket.timeout:
        raise UserError(f"{unreachable}: no answer within the time allowed") from None
    except OSError as e:
        raise UserError(f"{unreachable}: {e.strerror or e}") from None
    try:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        sock.sendall(_H2_GREETING)
        header = b""
        while len(header) < 9:
            chunk = sock.recv(9 - len(header))
            if not chunk:
                break
            header += chunk
    except OSError:  # timeouts included
        raise UserError(f"{unreachable}: it accepts connections but does not answer") from None
    finally:
        sock.close()
    if len(header) < 9 or header[3] != _H2_SETTINGS:
        raise UserError(f"{unreachable}: something answers there, but not a Ray cluster")


def _token_settings() -> tuple[bool, bool]:
    """(token authentication on in this client, a token found)."""
    from ray._raylet import AuthenticationMode, AuthenticationTokenLoader, get_authentication_mode
    from ray.exceptions import AuthenticationError

    token_mode = get_authentication_mode() == AuthenticationMode.TOKEN
    try:
        has_token = AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True)
    except AuthenticationError:  # e.g. RAY_AUTH_TOKEN_PATH names a missing file
        has_token = False
    return token_mode, has_token


def probe(address: str, timeout_s: float = 3.0, source: str = "--address") -> None:
    """Return if `address` (a GCS host:port) takes this client; else raise UserError, within ~timeout_s.

    `source` names where the address came from (--address, RAY_ADDRESS, the cluster `ray start` recorded).
    """
    deadline = time.monotonic() + timeout_s
    host, port = split_address(address, source)
    _greet(address, host, port, deadline, source)
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if token_path and not os.path.isfile(os.path.expanduser(token_path)):
        raise UserError(f"RAY_AUTH_TOKEN_PATH: {token_path}: no such file (expected the cluster's token)")

    import ray._raylet as raylet
    from ray.exceptions import AuthenticationError

    token_mode, has_token = _token_settings()
    if token_mode and not has_token:
        raise UserError(f"{source}: the cluster at {address} needs an authentication token and none is set: {TOKEN_HINT}")

    outcome: dict[str, BaseException | bool] = {}

    def call() -> None:
        try:
            ms = max(100, int((deadline - time.monotonic()) * 1000) - 250)
            client = raylet.InnerGcsClient.standalone(address, None, ms)  # asks for the cluster id: authenticated
            client.internal_kv_get(b"session_name", namespace=b"session", timeout=max(0.1, deadline - time.monotonic()))
            outcome["ok"] = True
        except BaseException as e:  # noqa: BLE001 - judged below
            outcome["error"] = e

    # Ray's client logs one warning line per failed attempt to descriptor 2; the
    # user gets dtrain's one line instead.
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            thread = threading.Thread(target=call, name="dtrain-probe", daemon=True)
            thread.start()
            thread.join(max(0.1, deadline - time.monotonic()))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    if outcome.get("ok"):
        return
    error = outcome.get("error")
    if thread.is_alive() or error is None:
        raise UserError(f"{source}: the Ray cluster at {address} did not answer within {timeout_s:g} s")
    if isinstance(error, AuthenticationError):
        if token_mode and has_token:
            raise UserError(f"{source}: the cluster at {address} refused this client's authentication token: {TOKEN_HINT}")
        raise UserError(f"{source}: the cluster at {address} needs an authentication token: {TOKEN_HINT}")
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    raise UserError(f"{source}: {address} answers, but not as a usable Ray cluster: {first}")
