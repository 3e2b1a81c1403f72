"""The jobs of a cluster through its HTTP API (api.py): a client that needs no Ray, nor any library.

`HttpJobs` answers the calls `dtrain` commands make (cluster/client.py's Jobs), so
every job command works with `--address http://HOST:PORT` (or DTRAIN_ADDRESS) as
it does through Ray, with the same output and exit codes; nothing here imports
Ray. `Client` is the same for scripts and notebooks. `advertised_api` finds the API
of a cluster whose head node is this machine, so that commands run there skip Ray too.

The bearer token: DTRAIN_TOKEN, else the file DTRAIN_TOKEN_PATH names, else the
api_token of the default storage (~/.dtrain/api_token: on the head node itself),
else Ray's token (RAY_AUTH_TOKEN, ~/.ray/auth_token) for a cluster whose Ray
authentication is on.
"""

from __future__ import annotations

import json
import os
import time
from functools import cached_property
from pathlib import Path
from typing import Any

from dtrain.cluster.jobstore import DEFAULT_STORAGE, JobRecord
from dtrain.errors import Conflict, NotFound, UserError, error_for_status
from dtrain.spec import JobSpec

#: Seconds a request may take (a cancel waits for the job to stop: up to ~30 s).
TIMEOUT_S = 60.0

#: What the cluster's API server writes in its storage directory once it listens (api_server.py).
ADVERT_FILE = "api.json"

TOKEN_HINT = "set DTRAIN_TOKEN to the head node's <storage>/api_token (or, with Ray's token authentication on, Ray's token)"


def quote(part: str) -> str:
    """A path segment as sent: what the user typed, never a path of its own (`..`, `/`)."""
    from urllib.parse import quote as url_quote

    return url_quote(part, safe="")


def is_http(address: str | None) -> bool:
    return bool(address) and address.startswith(("http://", "https://"))  # type: ignore[union-attr]


def client_token() -> str | None:
    if os.environ.get("DTRAIN_TOKEN"):
        return os.environ["DTRAIN_TOKEN"].strip()
    candidates = [os.environ.get("DTRAIN_TOKEN_PATH"), f"{DEFAULT_STORAGE}/api_token",
                  os.environ.get("RAY_AUTH_TOKEN_PATH"), "~/.ray/auth_token"]
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser().read_text().strip()
    return None


class HttpJobs:
    """Jobs of a cluster, through its dtrain API at `address` (http://HOST:PORT)."""

    runtime = "cluster"

    def __init__(self, address: str, token: str | None = None):
        self.address = address.rstrip("/")
        token = token or client_token()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    # Asked for only when a command shows where the jobs are: `dtrain status JOB` is one request.
    @cached_property
    def service(self) -> dict[str, Any]:
        """What answers: dtrain's version, where its jobs are kept, its runtime (and Ray address)."""
        return self._json("GET", "/service")

    @property
    def root(self) -> str:
        return self.service["storage"]

    @property
    def where(self) -> str:
        return f"{self.root} on the head node of {self.address}"

    def _request(self, method: str, path: str, body: Any = None) -> bytes:
        """The answer's body; UserError (NotFound, Conflict) for a refusal, worded from its JSON."""
        # The standard library's HTTP: httpx cost 0.26 s of a 0.8 s `dtrain status` (its import,
        # and its TLS context even for http://), against the 0.25x of Ray's this is measured at.
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        headers = {**self.headers, **({"Content-Type": "application/json"} if data else {})}
        request = urllib.request.Request(f"{self.address}/api/v1{path}", data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        except (OSError, ValueError) as e:  # refused, unreachable, timed out, a malformed URL
            reason = getattr(e, "reason", e)
            raise UserError(f"cannot reach the dtrain API at {self.address}: {reason}", "address") from None
        if status == 401:
            raise UserError(f"the dtrain API at {self.address} refused this client's token: {TOKEN_HINT}", "address")
        try:
            answer = json.loads(text)
            problem, field = answer["error"], answer.get("field")
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{self.address} answered {status}, not as the dtrain API", "address") from None
        raise error_for_status(status)(problem, field)

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        return json.loads(self._request(method, path, body))

    def submit(self, spec: JobSpec) -> JobRecord:
        return JobRecord.model_validate(self._json("POST", "/jobs", spec.model_dump(mode="json")))

    def resume(self, job_id: str) -> JobRecord:
        return JobRecord.model_validate(self._json("POST", f"/jobs/{quote(job_id)}/resume"))

    def jobs(self) -> list[JobRecord]:
        return [JobRecord.model_validate(r) for r in self._json("GET", "/jobs")]

    def job(self, job_id: str) -> JobRecord:
        return JobRecord.model_validate(self._json("GET", f"/jobs/{quote(job_id)}"))

    def metrics(self, job_id: str, since: int = 0) -> list[dict[str, Any]]:
        return self._json("GET", f"/jobs/{quote(job_id)}/metrics?since={int(since)}")

    def progress(
        self, job_id: str, since: int, version: str = "", wait_s: float = 0.0, gather_s: float = 0.0
    ) -> tuple[JobRecord, list[dict[str, Any]], str]:
        """The job's record, its epoch lines from the `since`-th on, and their version; given an
        earlier answer's version, once they have changed since (the API waits up to `wait_s`,
        and gathers changes for `gather_s` unless the job has ended)."""
        from urllib.parse import urlencode

        query = urlencode({"since": int(since), "version": version, "wait": wait_s, "gather": gather_s})
        answer = self._json("GET", f"/jobs/{quote(job_id)}/progress?{query}")
        return JobRecord.model_validate(answer["record"]), answer["metrics"], answer["version"]

    def artifact(self, job_id: str, name: str) -> bytes | None:
        try:
            return self._request("GET", f"/jobs/{quote(job_id)}/artifacts/{quote(name)}")
        except NotFound as e:
            if e.field is None:  # the job exists and has not written it
                return None
            raise

    def report(self, job_id: str) -> dict[str, Any]:
        data = self.artifact(job_id, "report.json")
        if data is None:
            raise Conflict(f"job {job_id} has no report: it is {self.job(job_id).state} (a report is written when a job succeeds)")
        return json.loads(data)

    def cancel(self, job_id: str) -> JobRecord:
        return JobRecord.model_validate(self._json("POST", f"/jobs/{quote(job_id)}/cancel"))

    def api_url(self) -> dict[str, Any]:
        return {"url": self.address}

    def pool(self) -> dict[str, Any] | None:
        return self._json("GET", "/pool")


def advertised_api(address: str | None, root: Path) -> HttpJobs | None:
    """The HTTP API of the Ray cluster at `address`, when this machine is its head node and the API is up.

    Joining Ray as a driver costs a command ~1.5 s (import, connect, shut down); one HTTP
    request costs milliseconds. The API server leaves <storage>/api.json on the head
    (api_server.py); it is used only if it names that Ray address and its API
    answers this client, keeping its jobs in `root`. Anything else: None, and the
    command goes through Ray as before.
    """
    try:
        advert = json.loads((root / ADVERT_FILE).read_text())
        url, ray_address = advert["url"], advert["ray_address"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (address and same_address(ray_address, address)):
        return None
    jobs = HttpJobs(url)
    try:
        service = jobs.service
    except UserError:  # not listening (any more), or not for this client's token
        return None
    # Another cluster's API may have taken the port since: it must say the advertised cluster.
    if service.get("ray_address") != ray_address or Path(service["storage"]) != root:
        return None
    return jobs


def same_address(advertised: str, asked: str) -> bool:
    """Whether two host:port addresses of Ray's are one: the same port, and the same host or this
    machine by another name (the head advertises its IP; a client may say 127.0.0.1)."""
    a_host, _, a_port = advertised.rpartition(":")
    b_host, _, b_port = asked.rpartition(":")
    loopback = {"127.0.0.1", "localhost", "::1", ""}
    return a_port == b_port and (a_host == b_host or b_host in loopback)


class Client:
    """dtrain from a script or notebook, over HTTP:

        client = Client("http://head:8270")
        job = client.submit({"workers": 8, "epochs": 4})
        client.wait(job.id)
        theta, meta = client.model(job.id)
    """

    def __init__(self, address: str, token: str | None = None):
        self.jobs = HttpJobs(address, token)

    def submit(self, spec: JobSpec | dict[str, Any]) -> JobRecord:
        return self.jobs.submit(spec if isinstance(spec, JobSpec) else JobSpec.model_validate(spec))

    def status(self, job_id: str | None = None) -> JobRecord | list[JobRecord]:
        """One job's record, or every job's."""
        return self.jobs.job(job_id) if job_id else self.jobs.jobs()

    def wait(self, job_id: str, timeout_s: float | None = None, poll_s: float = 0.5) -> JobRecord:
        """The job's record once it has ended (TimeoutError after `timeout_s`)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not (record := self.jobs.job(job_id)).done:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {record.state} after {timeout_s:g} s")
            time.sleep(poll_s)
        return record

    def pull(self, job_id: str, dest: str | os.PathLike) -> list[Path]:
        from dtrain.cluster.client import pull

        return pull(self.jobs, job_id, Path(dest))

    def model(self, job_id: str) -> tuple[Any, dict[str, Any]]:
        """The job's trained weights as (flat float32 theta, metadata), read with allow_pickle=False."""
        import tempfile

        from dtrain.model.weights import read_weights

        data = self.jobs.artifact(job_id, "model.npz")
        if data is None:
            raise Conflict(f"job {job_id} has no model: it is {self.jobs.job(job_id).state}")
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "model.npz"
            path.write_bytes(data)
            return read_weights(path)
