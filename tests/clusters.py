"""A real Ray cluster of two nodes on one machine, for the tests that need one.

`TwoNodes` starts tests/two_nodes.py in its own process and runs the real
`dtrain` CLI in new processes against it, as a user would.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
DTRAIN = [sys.executable, "-c", "from dtrain.cli.entry import main; main()"]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TwoNodes:
    """A two-node cluster in its own process (tests/two_nodes.py), and how clients reach it."""

    def __init__(self, storage: Path):
        # A short private temp dir: Ray's sockets live under it, and its record of the
        # cluster (for auto-join) must not touch the machine's /tmp/ray.
        self.tmpdir = tempfile.mkdtemp(prefix="dtr", dir="/tmp")
        self.token = secrets.token_hex(16)
        self.storage = storage
        self.api_port = free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"  # the dtrain HTTP API the head serves
        self.env = {
            **os.environ,
            "RAY_TMPDIR": self.tmpdir,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_USAGE_STATS_ENABLED": "0",
            # A lost node is declared dead after ~2 s instead of Ray's default ~15 s.
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_failure_threshold": "2",
            "DTRAIN_STORAGE": str(storage),
            "DTRAIN_API_PORT": str(self.api_port),
        }
        self.env.pop("RAY_ADDRESS", None)
        self.proc = subprocess.Popen(
            [sys.executable, str(TESTS / "two_nodes.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self.env,
            text=True,
        )
        info = self._answer(120, "the two-node Ray cluster to start")
        self.address = info["address"]
        self.second_node = info["second_node"]

    def _answer(self, timeout: float, what: str) -> dict:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0]:
            self.stop()
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        return json.loads(line[0])

    def command(self, command: str, timeout: float = 60) -> dict:
        """Send tests/two_nodes.py a command (remove-node, add-node); return its answer."""
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._answer(timeout, command)

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            self.proc.kill()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def run(self, *args: str, timeout: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
        """`dtrain ARGS` in a new process that joins this cluster."""
        return subprocess.run(
            [*DTRAIN, *args], capture_output=True, text=True, timeout=timeout, env=env or self.env
        )

    def registry_pid(self, timeout: float = 120) -> int:
        """The process id of the cluster's job registry, asked of the registry itself
        (a call that waits while Ray restarts it)."""
        from dtrain.cluster.registry import NAMESPACE, REGISTRY_NAME

        return int(self.run_python(f"print(ray.get(ray.get_actor({REGISTRY_NAME!r}, namespace={NAMESPACE!r}).pid.remote()))", timeout))

    def run_python(self, code: str, timeout: float = 120) -> str:
        """Run `code` in a new Ray driver joined to this cluster (`ray` imported); the last word it prints."""
        init = f"import ray; ray.init(address={self.address!r}, logging_level='ERROR'); "
        proc = subprocess.run([sys.executable, "-c", init + code], capture_output=True, text=True, timeout=timeout, env=self.env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()[-1]

    def json(self, *args: str, timeout: float = 180):
        proc = self.run(*args, "--json", timeout=timeout)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def job(self, job_id: str) -> dict:
        return self.json("status", job_id)

    def wait_for_epoch(self, job_id: str, epoch: int, timeout: float = 120) -> dict:
        """Wait until the job has finished `epoch` epochs, reading its record straight from the
        storage directory (the head node's disk is this machine's): prompt, unlike a CLI process."""
        from dtrain.cluster.jobstore import JobStore

        store = JobStore(self.storage)

        def reached() -> dict | None:
            record = store.load(job_id)
            return record.summary() if record.epoch >= epoch else None

        return wait_until(reached, timeout, f"job {job_id} to reach epoch {epoch}", interval=0.05)

    def follow(self, job_id: str, timeout: float = 300) -> dict:
        """Wait for the job's end with `dtrain logs --follow`; return its final record."""
        proc = self.run("logs", job_id, "--follow", "--json", timeout=timeout)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.splitlines()[-1])
