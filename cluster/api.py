"""dtrain's HTTP API, version 1: the job commands over HTTP, for clients without Ray.

    GET  /api/v1/service                        what answers: version, storage, runtime
    GET  /api/v1/pool                           the warm workers kept between jobs (null in local mode)
    GET  /api/v1/jobs                           every job's record
    POST /api/v1/jobs                           submit a job spec (JSON, flat or nested: spec.py)
    GET  /api/v1/jobs/{id}                      one job's record
    GET  /api/v1/jobs/{id}/metrics?since=N      its epoch lines from the N-th on
    GET  /api/v1/jobs/{id}/progress?since=N&version=V&wait=S
                                                its record and epoch lines from the N-th on, once
                                                either has changed since V (a long poll)
    GET  /api/v1/jobs/{id}/logs                 its epoch lines, streamed as NDJSON until the job ends
    POST /api/v1/jobs/{id}/cancel               stop it at its next epoch
    POST /api/v1/jobs/{id}/resume               continue a FAILED or CANCELLED job
    GET  /api/v1/jobs/{id}/artifacts/{name}     spec.json, metrics.jsonl, report.json or model.npz

The same server serves the live web pages (pages.py): `/` lists the jobs, `/jobs/{id}`
draws one job's curves as it trains and, once it has succeeded, shows its HTML report
(`/jobs/{id}/report`, reports/html.py: what `dtrain report --html` writes). `make_app` builds it over a `Jobs` (cluster/client.py: the same calls the CLI makes),
so it answers exactly what `dtrain` commands answer. Every request carries the
bearer token (`Authorization: Bearer ...`), compared in constant time. A refused
request gets JSON `{"error": ..., "field": ...}` and its status: 400 a bad spec or
id, 401 no or a wrong token, 404 no such job or file, 409 not in this state.
api_server.py serves it on the head node.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import Body, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError

from dtrain import __version__
from dtrain.cluster import jobwatch, pages
from dtrain.reports.html import render_html
from dtrain.cluster.jobstore import ARTIFACTS, JobRecord, JobStore, valid_job_id
from dtrain.errors import NotFound, UserError
from dtrain.spec import JobSpec, spec_error

PREFIX = "/api/v1"

#: The largest request body accepted (a job spec is well under 4 KiB).
MAX_BODY_BYTES = 64 << 10

#: The longest a streamed log waits for news before it reads the job's files again anyway.
STREAM_WAIT_S = 2.0

#: Pages (not the API) may run their own inline script and load nothing from elsewhere.
CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; frame-ancestors 'self'"
)

#: Finished jobs' rendered reports kept in memory (a page takes a second or two of matplotlib).
REPORTS_KEPT = 16

#: The cookie a browser keeps the token in (pages.py).
COOKIE = "dtrain_token"

SIGN_IN = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>dtrain</title></head><body>'
    "<p>This dtrain server needs its token: open <code>/?token=&lt;token&gt;</code> once "
    "(the token is in the head node's &lt;storage&gt;/api_token, or Ray's token with token authentication).</p></body></html>"
)


def refusal(status: int, problem: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": problem, "field": field}, status_code=status)


def make_app(jobs: Any, token: str, where: str = "", ray_address: str | None = None,
             registry: str | None = None) -> FastAPI:
    """The API over `jobs` (LocalJobs or ClusterJobs), for requests bearing `token`; a cluster's
    API also says its Ray address, so that a client can tell it is the one it meant (client.py).
    `registry`: the id of the cluster's registry (its head node's), for records read straight
    from the head node's disk as the registry reads them (jobstore.effective)."""
    app = FastAPI(
        title="dtrain",
        version=__version__,
        summary="Distributed MLP training on Ray: submit, follow and pull jobs.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    expected = f"Bearer {token}".encode()

    def authorised(request: Request) -> bool:
        if hmac.compare_digest(request.headers.get("authorization", "").encode(), expected):
            return True
        # A browser's pages (pages.py): the token in a cookie, for reading only.
        cookie = f"Bearer {request.cookies.get(COOKIE, '')}".encode()
        if request.method == "GET" and hmac.compare_digest(cookie, expected):
            return True
        # The first page a browser opens: /?token=..., which sets that cookie.
        given = f"Bearer {request.query_params.get('token', '')}".encode()
        return request.url.path == "/" and request.method == "GET" and hmac.compare_digest(given, expected)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if not authorised(request):
            if request.url.path.startswith(PREFIX):
                return refusal(401, "no or a wrong bearer token (Authorization: Bearer <token>)")
            return HTMLResponse(SIGN_IN, status_code=401, headers={"Content-Security-Policy": CSP})
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return refusal(413, f"request body over {MAX_BODY_BYTES} bytes")
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.exception_handler(UserError)
    async def user_error(request: Request, e: UserError) -> JSONResponse:
        return refusal(e.status, e.problem, e.field)

    add_pages(app, jobs)
    add_service_routes(app, jobs, where, ray_address)
    add_job_routes(app, jobs, registry)
    return app


def checked(job_id: str) -> str:
    """`job_id` if it can be a job id; UserError (400) if not, before it reaches the store."""
    if not valid_job_id(job_id):
        raise UserError(f"{job_id!r} is not a job id (up to 32 hex digits)", "job_id")
    return job_id


# Each route below is a nested function closed over `jobs`: FastAPI reads the routes from their decorators.
def add_pages(app: FastAPI, jobs: Any) -> None:
    """The browser's pages (pages.py): the jobs, a job's live curves, a succeeded job's report."""
    @app.get("/", include_in_schema=False)
    def jobs_page(request: Request) -> Response:
        if "token" in request.query_params:  # remember it, and take it out of the address bar
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, request.query_params["token"], httponly=True, samesite="strict")
            return response
        return HTMLResponse(pages.jobs_page())

    @app.get("/jobs/{job_id}", include_in_schema=False)
    def job_page(job_id: str) -> HTMLResponse:
        return HTMLResponse(pages.job_page(jobs.job(checked(job_id)).id))

    rendered: dict[str, str] = {}

    @app.get("/jobs/{job_id}/report", include_in_schema=False)
    def report_page(job_id: str) -> HTMLResponse:
        """A succeeded job's HTML report, drawn once (a finished job's files never change)."""
        if job_id not in rendered:
            page = render_html(jobs.report(checked(job_id)), jobs.metrics(job_id))
            if len(rendered) >= REPORTS_KEPT:
                rendered.pop(next(iter(rendered)))
            rendered[job_id] = page
        return HTMLResponse(rendered[job_id])


def add_service_routes(app: FastAPI, jobs: Any, where: str, ray_address: str | None) -> None:
    """What answers, its warm pool, the jobs, and submitting one."""
    @app.get(f"{PREFIX}/service")
    def service() -> dict[str, Any]:
        """What answers here: dtrain's version, where its jobs are kept, the runtime."""
        answer = {"dtrain_version": __version__, "storage": jobs.root, "where": where or jobs.where, "runtime": jobs.runtime}
        return {**answer, "ray_address": ray_address} if ray_address else answer

    @app.get(f"{PREFIX}/pool")
    def pool() -> dict[str, Any] | None:
        """The warm workers the cluster keeps between jobs (cluster/pool.py); null in local mode."""
        return jobs.pool()

    @app.get(f"{PREFIX}/jobs")
    def list_jobs() -> list[JobRecord]:
        """Every job's record, oldest first."""
        return jobs.jobs()

    @app.post(f"{PREFIX}/jobs", status_code=201)
    def submit(spec: dict[str, Any] = Body(description="A job spec (spec.py): nested, or flat as submit's options")) -> JobRecord:
        """Submit a job; its record (PENDING), or 400 naming the setting at fault."""
        try:
            parsed = JobSpec.model_validate(spec)
        except ValidationError as e:
            raise spec_error(e, spec) from None
        return jobs.submit(parsed)

    @app.get(f"{PREFIX}/jobs/{{job_id}}")
    def status(job_id: str) -> JobRecord:
        """One job's record: state, progress, accuracy, workers."""
        return jobs.job(checked(job_id))


def add_job_routes(app: FastAPI, jobs: Any, registry: str | None) -> None:
    """One job's epoch lines (at once, by long poll, streamed), cancelling or resuming it, its files."""
    @app.get(f"{PREFIX}/jobs/{{job_id}}/metrics")
    def metrics(job_id: str, since: int = 0) -> list[dict[str, Any]]:
        """The job's epoch lines (metrics.jsonl) from the `since`-th on."""
        if since < 0:
            raise UserError(f"expected 0 or more, got {since}", "since")
        return jobs.metrics(checked(job_id), since)

    @app.get(f"{PREFIX}/jobs/{{job_id}}/progress")
    def progress(job_id: str, since: int = 0, version: str = "", wait: float = 0.0, gather: float = 0.0) -> dict[str, Any]:
        """The job's record and its epoch lines from the `since`-th on, with the `version` they
        are at. Given the version of an earlier answer and `wait` seconds (at most 10), it
        answers once the record or the lines have changed since, or when the wait is over.
        With `gather` seconds (at most 2), a change is answered no sooner than that after the
        request, together with what else changed meanwhile, unless the job has ended."""
        if since < 0:
            raise UserError(f"expected 0 or more, got {since}", "since")
        store = on_disk(jobs)
        store.load(checked(job_id))  # a 404 before any wait
        job_dir = store.job_dir(job_id)
        now = jobwatch.wait_for_change(job_dir, version, wait, gather) if version else jobwatch.version(job_dir)
        return {"record": store.live(job_id, registry), "metrics": store.metrics(job_id, since), "version": now}

    @app.get(f"{PREFIX}/jobs/{{job_id}}/logs")
    def logs(job_id: str) -> StreamingResponse:
        """The job's epoch lines as NDJSON, streamed as they are written, then its final record."""
        store = on_disk(jobs)
        store.load(checked(job_id))  # a 404 before the stream starts
        return StreamingResponse(stream(store, job_id, registry), media_type="application/x-ndjson")

    @app.post(f"{PREFIX}/jobs/{{job_id}}/cancel")
    def cancel(job_id: str) -> JobRecord:
        """Stop the job at its next epoch; returns once it has stopped."""
        return jobs.cancel(checked(job_id))

    @app.post(f"{PREFIX}/jobs/{{job_id}}/resume")
    def resume(job_id: str) -> JobRecord:
        """Continue a FAILED or CANCELLED job from its last checkpoint."""
        return jobs.resume(checked(job_id))

    @app.get(f"{PREFIX}/jobs/{{job_id}}/artifacts/{{name}}")
    def artifact(job_id: str, name: str) -> Response:
        """One of the job's files: spec.json, metrics.jsonl, report.json or model.npz."""
        if name not in ARTIFACTS:
            raise NotFound(f"{name!r} is not a job artifact; expected one of {', '.join(ARTIFACTS)}", "name")
        data = jobs.artifact(checked(job_id), name)
        if data is None:
            raise NotFound(f"job {job_id} has no {name} (yet)")
        kind = "application/octet-stream" if name.endswith(".npz") else "application/json"
        return Response(data, media_type=kind, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def on_disk(jobs: Any) -> JobStore:
    """The jobs' store where the API runs, on the head node's disk. A follower's reads (the long
    poll, the log stream) go there, as the registry's own reads do, rather than through the
    registry: following a job then costs the cores it trains on no registry calls."""
    return JobStore(Path(jobs.root))


def stream(store: JobStore, job_id: str, registry: str | None, wait_s: float = STREAM_WAIT_S) -> Iterator[bytes]:
    """A job's epoch lines as they come, one JSON object a line, then {"record": its final record}
    (as the registry whose id is `registry` reads it: jobstore.effective)."""
    job_dir = store.job_dir(job_id)
    seen, version = 0, jobwatch.version(job_dir)
    while True:
        record = store.live(job_id, registry)
        for line in store.metrics(job_id, seen):
            seen += 1
            yield (json.dumps(line) + "\n").encode()
        if record.done:
            yield (json.dumps({"record": record.model_dump(mode="json")}) + "\n").encode()
            return
        version = jobwatch.wait_for_change(job_dir, version, wait_s)


def openapi_schema() -> dict[str, Any]:
    """The API's OpenAPI schema, as committed in docs/openapi-v1.json (a test compares them)."""
    return make_app(jobs=None, token="").openapi()


if __name__ == "__main__":  # python -m dtrain.cluster.api > docs/openapi-v1.json
    print(json.dumps(openapi_schema(), indent=2, sort_keys=True))
