"""Serving the HTTP API (api.py) from the head node: one detached actor, started with the registry.

Where it listens: DTRAIN_API_HOST and DTRAIN_API_PORT as set where `ray start
--head` ran (the actor inherits that environment), else 127.0.0.1:8270: loopback
unless told otherwise. Whom it answers: the bearer of the cluster's token. With
Ray's token authentication on (RAY_AUTH_MODE=token), that is Ray's own token, so
one secret serves both; otherwise dtrain makes one on first start, in
<storage>/api_token, mode 0600, which a client passes as DTRAIN_TOKEN.

Ray restarts the actor if its process dies; the new one serves the same port and
token (jobs live in the storage directory, not in the server).

Once it listens it writes <storage>/api.json: its URL and the address of its Ray
cluster. A `dtrain` command on the head node finds it there and talks HTTP
instead of joining Ray as a driver (http_client.advertised_api: ~1.5 s less per command).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from pathlib import Path
from typing import Any

from dtrain.cluster import placement
from dtrain.cluster.http_client import ADVERT_FILE
from dtrain.files import write_atomic

API_NAME = "api"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8270
TOKEN_FILE = "api_token"


def ray_token() -> str | None:
    """Ray's token when its token authentication is on in this environment, else None."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token").expanduser()
    return path.read_text().strip() if path.is_file() else None


def dtrain_token(root: Path) -> str:
    """The token in <root>/api_token, made (mode 0600, never readable by others) if there is none."""
    path = root / TOKEN_FILE
    root.mkdir(parents=True, exist_ok=True)  # a fresh head: no job has made the storage directory yet
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def service_token(root: Path) -> str:
    return ray_token() or dtrain_token(root)


class ApiServer:
    """Serves api.py's app over the registry's jobs, in a thread of this actor."""

    def __init__(self, root: str):
        import ray
        import uvicorn

        from dtrain.cluster.api import make_app
        from dtrain.cluster.client import ClusterJobs
        from dtrain.cluster.registry import get_registry

        self.host = os.environ.get("DTRAIN_API_HOST", DEFAULT_HOST)
        self.port = int(os.environ.get("DTRAIN_API_PORT", DEFAULT_PORT))
        jobs = ClusterJobs.of_registry(get_registry())
        self.ray_address = ray.get_runtime_context().gcs_address
        # On the head node, as the registry is: its id is this node's (registry.py).
        head = ray.get_runtime_context().get_node_id()
        app = make_app(jobs, service_token(Path(root)), ray_address=self.ray_address, registry=head)
        config = uvicorn.Config(app, host=self.host, port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="dtrain-api", daemon=True)
        self.thread.start()
        threading.Thread(target=self._advertise, args=(Path(root),), name="dtrain-api-advert", daemon=True).start()

    def _advertise(self, root: Path) -> None:
        """Write <root>/api.json once listening, for the head node's clients (http_client.advertised_api)."""
        where = self.url()
        if "url" in where:
            advert = {"url": where["url"], "ray_address": self.ray_address, "pid": os.getpid()}
            write_atomic(root / ADVERT_FILE, json.dumps(advert).encode())

    def pid(self) -> int:
        return os.getpid()

    def url(self) -> dict[str, Any]:
        """{"url": where it listens} once it does, or {"error": why it does not} (e.g. the port is taken)."""
        while self.thread.is_alive() and not self.server.started:
            self.thread.join(0.05)
        if not self.server.started:
            return {"error": f"the dtrain API could not listen on {self.host}:{self.port} (is the port taken? DTRAIN_API_PORT)"}
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return {"url": f"http://{host}:{self.port}", "host": self.host, "port": self.port}


def get_or_create_api(root: str) -> Any:
    """The cluster's API server actor, created on first use next to the registry."""
    return placement.head_service(ApiServer, API_NAME, get_if_exists=True, max_restarts=-1, max_concurrency=4).remote(root)
