"""Joining a cluster as a new user would: `ray start` clusters in fresh HOMEs, the README's commands, the real CLI.

(a) a cluster without authentication, joined with no --address;
(b) a token-authenticated cluster, joined by a client that holds the token;
(c) the same cluster refusing a client without the token, or with a wrong one: one line, exit 2, fast;
(d) a second node joined with the README's commands, with and without token authentication;
(e) an address where nothing listens, and one where something that is not Ray does.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ray_start import RayStart, dtrain, fresh_env, free_port, one_line_error, readme_cluster_blocks

#: How long a refused command may take, start-up of Python and Ray included (Ray alone retries for 20 s to minutes).
FAST_S = 10.0


def start_from_readme(cluster: RayStart, lines: list[str], head_env: dict, node_env: dict) -> dict:
    """Run the README block: the head's lines in its environment, the rest in another node's; return the client's env.

    Where the README says to copy the head node's ~/.ray/auth_token, the copy is made before the node starts.
    """
    env = head_env
    for line in lines:
        if line.startswith("ray start --address"):
            token = Path(head_env["HOME"], ".ray", "auth_token")
            if token.exists():
                copy = Path(node_env["HOME"], ".ray", "auth_token")
                copy.parent.mkdir(exist_ok=True)
                copy.write_bytes(token.read_bytes())
            cluster.run(line, node_env)
            env = node_env
        elif line.startswith("dtrain"):
            assert line == "dtrain submit --workers 8", line
        else:
            cluster.run(line, env)
            if line.startswith("ray start --head"):
                env = node_env  # what follows happens on another node
    return node_env


@contextmanager
def readme_cluster(tmp_path: Path, block: int) -> Iterator[tuple[RayStart, dict]]:
    """The README's Cluster block `block` (0: no authentication, 1: token) run on a fresh
    head and node; yields the cluster and a client's environment, and stops the cluster."""
    lines = readme_cluster_blocks()[block]
    cluster = RayStart()
    try:
        head = fresh_env(tmp_path / "head", cluster.tmpdir)
        yield cluster, start_from_readme(cluster, lines, head, fresh_env(tmp_path / "node", cluster.tmpdir))
    finally:
        cluster.stop()


def submit_on_two_nodes(env: dict) -> dict:
    """The README's `dtrain submit --workers 8` (one epoch, to keep CI short), as JSON."""
    proc, _ = dtrain("submit", "--workers", "8", "--epochs", "1", "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["state"] == "SUCCEEDED" and result["runtime"] == "cluster", result
    assert result["test_accuracy"] > 0.9
    return result


def nodes_of(job_id: str, env: dict) -> dict:
    proc, _ = dtrain("status", job_id, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["nodes"]


def test_a_cluster_without_authentication_is_joined_with_no_address(tmp_path: Path):
    """(a) and (d) without a token: `ray start` on a fresh machine, then plain `dtrain submit`."""
    with readme_cluster(tmp_path, block=0) as (cluster, client):
        assert not (tmp_path / "head" / ".ray" / "auth_token").exists()  # nothing made a token
        job = submit_on_two_nodes(client)
        assert len(nodes_of(job["job_id"], client)) == 2  # the README's second node took workers


def test_a_token_cluster_takes_its_token_and_refuses_anything_else_in_one_line(tmp_path: Path):
    """(b), (c) and (d) with token authentication."""
    with readme_cluster(tmp_path, block=1) as (cluster, client):
        job = submit_on_two_nodes(client)  # (b)
        assert len(nodes_of(job["job_id"], client)) == 2

        stranger = fresh_env(tmp_path / "stranger", cluster.tmpdir)  # (c): a fresh HOME, no token
        wrong = {**stranger, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
        for args, env, expected in [
            (["list"], stranger, "needs an authentication token"),  # the cluster running here, auto
            (["list", "--address", cluster.address], stranger, "needs an authentication token"),
            (["list", "--address", cluster.address], {**stranger, "RAY_AUTH_MODE": "token"}, "this client has no token"),
            (["status", job["job_id"], "--address", cluster.address], wrong, "refused this client's authentication token"),
        ]:
            proc, took = dtrain(*args, env=env)
            line = one_line_error(proc)
            assert expected in line and "RAY_AUTH_TOKEN" in line, line  # it says what to do
            assert took < FAST_S, (args, took)


@pytest.fixture
def not_ray():
    """A TCP server that answers every connection with an HTTP response and closes it."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    server.close()


def test_an_address_with_no_ray_behind_it_is_one_line_fast(tmp_path: Path, not_ray: str):
    """(e): nothing listening, and a server that is not Ray."""
    env = fresh_env(tmp_path / "home", str(tmp_path))
    nothing = f"127.0.0.1:{free_port()}"
    for address, expected in [
        (nothing, f"cannot reach a Ray cluster at {nothing}: Connection refused"),
        (not_ray, "did not answer as a Ray cluster"),
    ]:
        proc, took = dtrain("list", "--address", address, env=env)
        assert expected in one_line_error(proc)
        assert took < FAST_S, (address, took)
    assert not (tmp_path / "home" / ".dtrain").exists()  # nothing was recorded for a cluster never reached
