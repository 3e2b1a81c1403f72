"""Clusters started the way users start them: `ray start`, in a fresh HOME, stopped by process group.

Each `ray start` runs in a session of its own, so every daemon and worker it starts
shares its process group: stopping the cluster kills that group and nothing else on
the machine (`ray stop` would stop every Ray here, the test session's own included).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DTRAIN = [sys.executable, "-c", "from dtrain.cli.entry import main; main()"]
RAY = str(Path(sys.executable).with_name("ray"))

#: One machine holds every node: small object stores, so several nodes fit in memory.
NODE_FLAGS = ["--num-cpus", "2", "--object-store-memory", "100000000", "--memory", "1000000000"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readme_cluster_blocks() -> list[list[str]]:
    """The README's Cluster section: its first two bash blocks (no authentication, token), as lines."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("\n## Cluster\n") :]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[:2]
    return [[line.split("#")[0].strip() for line in b.splitlines() if line.split("#")[0].strip()] for b in blocks]


def fresh_env(home: Path, tmpdir: str, **extra: str) -> dict[str, str]:
    """A new user's environment: no token, no Ray settings, a HOME of its own; jobs under that HOME."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DTRAIN_"))}
    env.update(HOME=str(home), RAY_TMPDIR=tmpdir, RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


class RayStart:
    """A cluster of `ray start` nodes on this machine, all in one private Ray temp dir."""

    def __init__(self) -> None:
        self.tmpdir = tempfile.mkdtemp(prefix="dtr", dir="/tmp")  # short: Ray's socket paths live under it
        self.port = free_port()
        self.groups: list[int] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def run(self, line: str, env: dict[str, str]) -> None:
        """Run one README line: `export ...`, `ray ...` or `dtrain ...`, HEAD and port 6379 made this cluster's."""
        line = line.replace("HEAD:6379", self.address).replace("--port 6379", f"--port {self.port}")
        words = line.split()
        if words[0] == "export":
            for assignment in words[1:]:
                name, _, value = assignment.partition("=")
                env[name] = value
            return
        if words[:2] == ["ray", "start"]:
            self.start(words[2:], env)
        elif words[0] == "ray":
            subprocess.run([RAY, *words[1:]], env=env, check=True, capture_output=True, timeout=60)
        else:
            raise AssertionError(f"unexpected README line {line!r}")

    def start(self, args: list[str], env: dict[str, str]) -> None:
        proc = subprocess.Popen(
            [RAY, "start", *args, *NODE_FLAGS, "--disable-usage-stats"],
            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.groups.append(proc.pid)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out[-2000:]

    def stop(self) -> None:
        for group in self.groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while any(_alive(g) for g in self.groups) and time.monotonic() < deadline:
            time.sleep(0.1)


def _alive(group: int) -> bool:
    return subprocess.run(["pgrep", "-g", str(group)], capture_output=True).returncode == 0


def dtrain(*args: str, env: dict[str, str], timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
    """`dtrain ARGS` in a new process; returns it and how long it took."""
    t0 = time.monotonic()
    proc = subprocess.run([*DTRAIN, *args], env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - t0


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single stderr line of a refused command (exit 2, no traceback), or fail."""
    lines = proc.stderr.strip().splitlines()
    if proc.returncode != 2 or len(lines) != 1 or "Traceback" in proc.stderr:
        pytest.fail(f"expected one error line and exit 2, got exit {proc.returncode}:\n{proc.stderr[-3000:]}")
    return lines[0]
