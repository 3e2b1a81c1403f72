"""The HTTP API (cluster/api.py) and the client that needs no Ray (cluster/http_client.py).

In-process: the real app over a real job store, through FastAPI's test client (what
it refuses, and how). On the real two-node cluster: the API actor the head serves,
the real `dtrain` CLI in processes that never import Ray, a wrong token, and the
API's process killed and back with the jobs intact.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clusters import wait_until
from dtrain.cluster.api import MAX_BODY_BYTES, make_app, openapi_schema
from dtrain.cluster.client import LocalJobs
from dtrain.cluster.jobstore import JobStore, local_owner
from dtrain.files import append_jsonl
from dtrain.spec import JobSpec

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api(tmp_path):
    jobs = LocalJobs(tmp_path / "storage")
    record = jobs.store.create(JobSpec(workers=2, epochs=1), local_owner())
    return TestClient(make_app(jobs, TOKEN)), record


def test_the_committed_openapi_schema_is_the_apps():
    committed = json.loads((ROOT / "docs" / "openapi-v1.json").read_text())
    assert committed == json.loads(json.dumps(openapi_schema())), "regenerate: python -m dtrain.cluster.api > docs/openapi-v1.json"
    assert all(path.startswith("/api/v1/") for path in committed["paths"])


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Bearer {TOKEN}x", TOKEN, f"Basic {TOKEN}"])
def test_every_request_without_the_right_bearer_token_is_refused(api, header):
    client, record = api
    headers = {"Authorization": header} if header else {}
    for method, path in [("GET", "/api/v1/jobs"), ("GET", f"/api/v1/jobs/{record.id}"), ("POST", "/api/v1/jobs"),
                         ("GET", f"/api/v1/jobs/{record.id}/artifacts/spec.json"), ("GET", "/api/v1/openapi.json")]:
        response = client.request(method, path, headers=headers)
        assert response.status_code == 401 and "bearer token" in response.json()["error"]


def test_reads_answer_what_the_store_holds(api):
    client, record = api
    listed = client.get("/api/v1/jobs", headers=AUTH)
    assert listed.status_code == 200 and [j["id"] for j in listed.json()] == [record.id]
    assert client.get(f"/api/v1/jobs/{record.id}", headers=AUTH).json()["state"] == "PENDING"
    spec = client.get(f"/api/v1/jobs/{record.id}/artifacts/spec.json", headers=AUTH)
    assert spec.status_code == 200 and JobSpec.model_validate(spec.json()) == JobSpec(workers=2, epochs=1)
    assert client.get(f"/api/v1/jobs/{record.id}/metrics", headers=AUTH).json() == []
    headers = client.get("/api/v1/jobs", headers=AUTH).headers
    assert "default-src 'none'" in headers["content-security-policy"]


def test_a_long_poll_answers_as_soon_as_the_job_changes(api, tmp_path):
    """`progress` with an earlier answer's version waits for news: a new epoch line or a new
    record ends the wait at once, and with none it answers, unchanged, when the wait is over."""
    client, record = api
    store = JobStore(tmp_path / "storage")
    url = f"/api/v1/jobs/{record.id}/progress"
    first = client.get(url, headers=AUTH).json()  # no version: at once
    assert first["record"]["state"] == "PENDING" and first["metrics"] == []
    same = client.get(url, params={"version": first["version"], "wait": 0.2}, headers=AUTH).json()
    assert same["version"] == first["version"] and same["metrics"] == []

    for change, expect in [
        (lambda: append_jsonl(store.job_dir(record.id) / "metrics.jsonl", {"epoch": 1}), lambda a: a["metrics"] == [{"epoch": 1}]),
        (lambda: store.update(record.id, message="waiting for CPUs"), lambda a: a["record"]["message"] == "waiting for CPUs"),
    ]:
        seen = client.get(url, headers=AUTH).json()["version"]
        writer = threading.Timer(0.3, change)  # the job's runner, writing while the poll waits
        writer.start()
        t0 = time.monotonic()
        answer = client.get(url, params={"version": seen, "wait": 10}, headers=AUTH).json()
        writer.join()
        assert expect(answer) and answer["version"] != seen
        assert time.monotonic() - t0 < 5, "the poll waited out its 10 s instead of answering the change"
    assert client.get(url, params={"version": "x", "since": -1}, headers=AUTH).json()["field"] == "since"


def test_a_gathering_long_poll_answers_the_changes_of_its_time_together_and_a_job_s_end_at_once(api, tmp_path):
    """With `gather`, the epoch lines written meanwhile come in one answer no sooner than
    `gather` after the request; the record of a job that ended is answered at once."""
    client, record = api
    store = JobStore(tmp_path / "storage")
    url = f"/api/v1/jobs/{record.id}/progress"
    metrics = store.job_dir(record.id) / "metrics.jsonl"
    gather = 1.5

    seen = client.get(url, headers=AUTH).json()["version"]
    writers = [threading.Timer(0.1 * (k + 1), append_jsonl, (metrics, {"epoch": k + 1})) for k in range(3)]
    for writer in writers:
        writer.start()
    t0 = time.monotonic()
    answer = client.get(url, params={"version": seen, "wait": 10, "gather": gather}, headers=AUTH).json()
    took = time.monotonic() - t0
    for writer in writers:
        writer.join()
    assert answer["metrics"] == [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]
    assert gather <= took < 5

    seen = answer["version"]
    ending = threading.Timer(0.1, store.update, (record.id,), {"state": "SUCCEEDED"})
    ending.start()
    t0 = time.monotonic()
    answer = client.get(url, params={"since": 3, "version": seen, "wait": 10, "gather": gather}, headers=AUTH).json()
    took = time.monotonic() - t0
    ending.join()
    assert answer["record"]["state"] == "SUCCEEDED" and answer["metrics"] == []
    assert took < gather, "the end of the job waited for the gathering"


def test_the_log_stream_sends_each_epoch_line_as_it_is_written_then_the_final_record(api, tmp_path):
    client, record = api
    store = JobStore(tmp_path / "storage")
    append_jsonl(store.job_dir(record.id) / "metrics.jsonl", {"epoch": 1})

    def the_job_runs_on() -> None:  # the job's runner, while the stream waits for news
        append_jsonl(store.job_dir(record.id) / "metrics.jsonl", {"epoch": 2})
        store.update(record.id, state="SUCCEEDED", ended_at=time.time())

    writer = threading.Timer(0.3, the_job_runs_on)
    writer.start()
    response = client.get(f"/api/v1/jobs/{record.id}/logs", headers=AUTH)  # returns once the job has ended
    writer.join()
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    assert lines[:2] == [{"epoch": 1}, {"epoch": 2}] and lines[2]["record"]["state"] == "SUCCEEDED" and len(lines) == 3
    assert client.get("/api/v1/jobs/abcdef12/logs", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    "path, status, field",
    [
        ("/api/v1/jobs/ZZZ", 400, "job_id"),
        ("/api/v1/jobs/0123456789abcdef0123456789abcdef0", 400, "job_id"),  # 33 digits
        ("/api/v1/jobs/abcdef12", 404, None),
        ("/api/v1/jobs/abcdef12/metrics", 404, None),
        ("/api/v1/jobs/{id}/metrics?since=-1", 400, "since"),
        ("/api/v1/jobs/{id}/artifacts/job.json", 404, "name"),
        ("/api/v1/jobs/{id}/artifacts/..%2F..%2Fjob.json", 404, None),
        ("/api/v1/jobs/{id}/artifacts/%2Fetc%2Fpasswd", 404, None),
        ("/api/v1/jobs/{id}/artifacts/model.npz", 404, None),  # not written yet
    ],
)
def test_what_is_not_an_id_a_job_or_one_of_its_files_is_refused_with_json(api, path, status, field):
    client, record = api
    response = client.get(path.replace("{id}", record.id), headers=AUTH)
    assert response.status_code == status
    if response.headers["content-type"] == "application/json" and "error" in response.json():
        assert response.json()["field"] == field


def test_a_bad_spec_is_refused_naming_its_setting_and_nothing_is_recorded(api):
    client, record = api
    for spec, field in [({"workers": 0}, "workers"), ({"algorithm": "sync", "clients": 4}, "clients"),
                        ({"algorithm": "fedprox", "clients": 4, "rounds": 2}, "mu")]:
        response = client.post("/api/v1/jobs", headers=AUTH, json=spec)
        assert response.status_code == 400 and response.json()["field"] == field, response.json()
    big = client.post("/api/v1/jobs", headers={**AUTH, "Content-Type": "application/json"}, content=b" " * (MAX_BODY_BYTES + 1))
    assert big.status_code == 413
    assert [j["id"] for j in client.get("/api/v1/jobs", headers=AUTH).json()] == [record.id]


def test_a_browser_signs_in_once_with_the_token_and_then_may_only_read(api):
    client, record = api
    assert client.get("/").status_code == 401 and "token" in client.get("/").text  # a page, not JSON
    assert client.get("/?token=wrong", follow_redirects=False).status_code == 401
    signed_in = client.get(f"/?token={TOKEN}", follow_redirects=False)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"  # the token leaves the address bar
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    client.cookies.set("dtrain_token", TOKEN)
    page = client.get(f"/jobs/{record.id}")
    assert page.status_code == 200 and f"Job {record.id}" in page.text and "default-src 'none'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text  # nothing loaded from elsewhere
    assert client.get("/api/v1/jobs").status_code == 200
    assert client.post("/api/v1/jobs", json={"workers": 2}).status_code == 401  # the cookie never changes a job
    assert client.post(f"/api/v1/jobs/{record.id}/cancel").status_code == 401
    assert client.get("/jobs/nothex").status_code == 400 and client.get("/jobs/abcdef12").status_code == 404


# ------------------------------------------------------------------ on the real two-node cluster

#: Runs the real CLI and says on stderr, last, whether the process ever imported Ray: at exit,
#: or just before the CLI exits without Python's teardown (cli/main.py), which skips atexit.
NO_RAY_CLI = (
    "import atexit, os, sys\n"
    "def say():\n"
    "    sys.stderr.write('\\nRAY_IMPORTED\\n' if 'ray' in sys.modules else '\\nNO_RAY\\n')\n"
    "    sys.stderr.flush()\n"
    "atexit.register(say)\n"
    "exit_now = os._exit\n"
    "os._exit = lambda code: (say(), exit_now(code))\n"
    "from dtrain.cli.entry import main\n"
    "main()\n"
)


def http_dtrain(cluster, home: Path, *args: str, token: str | None = None, timeout: float = 180):
    """`dtrain ARGS --address <the cluster's API>` from a machine outside the cluster: no Ray
    settings, a fresh HOME, the token only if given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DTRAIN_"))}
    env.update(HOME=str(home), **({"DTRAIN_TOKEN": token} if token else {}))
    proc = subprocess.run([sys.executable, "-c", NO_RAY_CLI, *args, "--address", cluster.api],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=home)
    assert proc.stderr.rstrip().endswith("NO_RAY"), proc.stderr  # the HTTP client never imported Ray
    proc.stderr = proc.stderr.rstrip().removesuffix("NO_RAY").rstrip()
    return proc


def test_the_cli_works_over_http_without_ray_and_the_api_survives_its_process(two_node_cluster, tmp_path, mnist):
    cluster = two_node_cluster
    service = cluster.json("status")  # through Ray: starts the registry and its API
    assert service["runtime"] == "cluster" and service["api"] == cluster.api
    home = tmp_path / "laptop"
    home.mkdir()

    submitted = http_dtrain(cluster, home, "submit", "--workers", "2", "--epochs", "1", "--json", token=cluster.token)
    assert submitted.returncode == 0, submitted.stderr
    result = json.loads(submitted.stdout)
    assert result["state"] == "SUCCEEDED" and result["runtime"] == "cluster" and result["test_accuracy"] > 0.9
    job_id = result["job_id"]

    listed = json.loads(http_dtrain(cluster, home, "list", "--json", token=cluster.token).stdout)
    assert job_id in [j["job_id"] for j in listed]
    logs = http_dtrain(cluster, home, "logs", job_id, "--json", token=cluster.token)
    assert logs.returncode == 0 and json.loads(logs.stdout.splitlines()[0])["epoch"] == 1
    pulled = http_dtrain(cluster, home, "pull", job_id, "-o", str(home / "got"), token=cluster.token)
    assert pulled.returncode == 0, pulled.stderr
    assert sorted(p.name for p in (home / "got").iterdir()) == ["metrics.jsonl", "model.npz", "report.json", "spec.json"]
    status = http_dtrain(cluster, home, "status", job_id, token=cluster.token, timeout=60)
    assert status.returncode == 0 and job_id in status.stdout
    # Without a job id, over HTTP too: the service, with the warm workers the job gave back.
    service = http_dtrain(cluster, home, "status", token=cluster.token, timeout=60)
    assert service.returncode == 0 and "warm workers" in service.stdout, service.stdout
    pool = json.loads(http_dtrain(cluster, home, "status", "--json", token=cluster.token, timeout=60).stdout)["pool"]
    assert pool["idle_s"] == 600 and len(pool["workers"]) >= 2

    # examples/classify_over_http.py: the newest model over HTTP, a PNG, plain NumPy
    from PIL import Image

    Image.fromarray(mnist.x_test[0].reshape(28, 28)).save(home / "digit.png")
    example = subprocess.run([sys.executable, str(ROOT / "examples" / "classify_over_http.py"), cluster.api, str(home / "digit.png")],
                             capture_output=True, text=True, timeout=60, env={**os.environ, "DTRAIN_TOKEN": cluster.token})
    assert example.returncode == 0 and example.stdout.strip() == f"job {job_id}: {mnist.y_test[0]}", example.stderr

    for token in (None, "wrong"):
        refused = http_dtrain(cluster, home, "list", token=token, timeout=30)
        assert refused.returncode == 2 and refused.stdout == ""
        assert refused.stderr.count("\n") == 0 and "DTRAIN_TOKEN" in refused.stderr, refused.stderr
    missing = http_dtrain(cluster, home, "status", "abcdef12", token=cluster.token, timeout=30)
    assert missing.returncode == 2 and "no job 'abcdef12'" in missing.stderr

    # Kill the API's process: Ray restarts the actor, which serves the same port and jobs.
    pid = int(cluster.run_python("print(ray.get(ray.get_actor('api', namespace='dtrain').pid.remote()))"))
    os.kill(pid, signal.SIGKILL)

    def answers_again():
        proc = http_dtrain(cluster, home, "list", "--json", token=cluster.token, timeout=30)
        return proc.returncode == 0 and job_id in proc.stdout

    wait_until(answers_again, 60, "the API to come back after its process was killed", interval=0.5)
    new_pid = int(cluster.run_python("print(ray.get(ray.get_actor('api', namespace='dtrain').pid.remote()))"))
    assert new_pid != pid


def test_commands_on_the_head_take_its_advertised_api_and_go_through_ray_when_it_does_not_fit(two_node_cluster):
    cluster = two_node_cluster
    cluster.json("status")  # starts the registry and its API, which advertises itself in the storage
    advert_file = cluster.storage / "api.json"
    wait_until(advert_file.exists, 60, "the API to write api.json")
    advert = json.loads(advert_file.read_text())
    assert advert["url"] == cluster.api

    def head_dtrain(*args: str) -> tuple[dict, bool]:
        """`dtrain ARGS --json` on the head, as its user (no address): the answer, and whether it imported Ray."""
        proc = subprocess.run([sys.executable, "-c", NO_RAY_CLI, *args, "--json"], capture_output=True, text=True,
                              timeout=180, env=cluster.env)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.splitlines()[-1]), proc.stderr.rstrip().endswith("RAY_IMPORTED")

    submitted, imported_ray = head_dtrain("submit", "--workers", "2", "--epochs", "1")
    assert submitted["state"] == "SUCCEEDED" and submitted["runtime"] == "cluster" and not imported_ray
    status, imported_ray = head_dtrain("status")
    assert cluster.api in status["storage"] and not imported_ray

    # An advert of another cluster (or a stale one): the same command, through Ray.
    try:
        advert_file.write_text(json.dumps({**advert, "ray_address": "10.9.9.9:6379"}))
        status, imported_ray = head_dtrain("status")
        assert imported_ray and cluster.api not in status["storage"] and status["runtime"] == "cluster"
    finally:
        advert_file.write_text(json.dumps(advert))


@pytest.mark.parametrize("advert", ["not json", "{}", '{"url": "http://127.0.0.1:9", "ray_address": "10.0.0.5:6379"}'])
def test_an_advert_that_is_damaged_or_does_not_answer_is_passed_over(tmp_path, advert):
    from dtrain.cluster.http_client import advertised_api

    (tmp_path / "api.json").write_text(advert)
    assert advertised_api("10.0.0.5:6379", tmp_path) is None  # port 9: nothing listens


def test_an_advert_names_a_cluster_by_its_port_and_host_or_loopback():
    from dtrain.cluster.http_client import same_address

    assert same_address("10.0.0.5:6379", "10.0.0.5:6379") and same_address("10.0.0.5:6379", "127.0.0.1:6379")
    assert not same_address("10.0.0.5:6379", "10.0.0.6:6379") and not same_address("10.0.0.5:6379", "127.0.0.1:6380")


POINTS = "JSON.stringify(document.querySelectorAll('#accuracy circle.point').length)"


#: The text of the report the job page shows once the job has succeeded (same origin: readable).
REPORT = """JSON.stringify((document.getElementById("report").contentDocument || {}).body?.innerText || "")"""


def test_the_live_job_page_draws_its_curves_growing_in_chromium(two_node_cluster, tmp_path):
    """Headless Chromium on a running job's page: two screenshots, more points on the curve in
    the second, its figures and each worker's speed in the DOM, the HTML report once it has
    succeeded, no console errors, nothing loaded from elsewhere."""
    from browser import CHROMIUM, DevTools

    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("DTRAIN_REQUIRE_CHROMIUM"):
            pytest.fail(f"DTRAIN_REQUIRE_CHROMIUM is set but there is no chromium at {CHROMIUM}")
        pytest.skip(f"no chromium at {CHROMIUM}")
    cluster = two_node_cluster
    cluster.json("status")  # through Ray: the registry and its API are up
    home = tmp_path / "laptop"
    home.mkdir()
    started = http_dtrain(cluster, home, "submit", "--workers", "2", "--epochs", "12", "--detach", "--json", token=cluster.token)
    job_id = json.loads(started.stdout)["job_id"]
    browser = DevTools(CHROMIUM, tmp_path / "profile", tmp_path / "chromium.log", timeout=180)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.call(f"{domain}.enable", session=session)

        def evaluate(expression: str):
            return json.loads(browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                           session=session)["result"]["value"])

        def visit(url: str) -> None:
            browser.events.clear()
            browser.call("Page.navigate", {"url": url}, session=session)
            browser.wait_for("Page.loadEventFired")

        visit(f"{cluster.api}/?token={cluster.token}")  # sets the token's cookie, then shows the jobs
        wait_until(lambda: job_id in evaluate("JSON.stringify(document.body.innerText)"), 30, "the jobs page to list the job")
        visit(f"{cluster.api}/jobs/{job_id}")
        first = wait_until(lambda: evaluate(POINTS), 120, "the first epoch's point")
        shots = [base64.b64decode(browser.call("Page.captureScreenshot", session=session)["data"])]
        second = wait_until(lambda: (n := evaluate(POINTS)) > first and n, 120, "a later epoch's point")
        shots.append(base64.b64decode(browser.call("Page.captureScreenshot", session=session)["data"]))
        text = evaluate("JSON.stringify(document.body.innerText)")
        report = wait_until(lambda: evaluate(REPORT), 240, "the job's HTML report in its page")
        speeds = evaluate("JSON.stringify(document.querySelectorAll('#workers tr').length)")
    finally:
        browser.close()
    assert second > first >= 1
    assert f"Job {job_id}" in text and "test accuracy" in text and "samples/s by worker" in text
    assert speeds == 2
    assert "Test accuracy" in report and "Confusion matrix" in report
    for i, png in enumerate(shots):
        assert png.startswith(b"\x89PNG") and len(png) > 5000
        (tmp_path / f"job-page-{i}.png").write_bytes(png)
    assert shots[0] != shots[1]
    problems = [e for e in browser.events if e["method"] in ("Runtime.exceptionThrown",)
                or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "warning"))
                or (e["method"] == "Network.requestWillBeSent" and not e["params"]["request"]["url"].startswith((cluster.api, "data:")))]
    assert problems == [], [(e["method"], e["params"].get("request", {}).get("url"), e["params"].get("exceptionDetails"),
                             e["params"].get("args")) for e in problems]


def test_the_api_token_is_made_in_a_storage_directory_no_job_has_made_yet(tmp_path):
    """A fresh head without Ray's token: the first dtrain command starts the API before any
    job has made the storage directory (it used to fail, and the API stayed down)."""
    import stat

    from dtrain.cluster.api_server import TOKEN_FILE, dtrain_token

    root = tmp_path / "fresh" / "storage"
    token = dtrain_token(root)
    assert len(token) > 30 and (root / TOKEN_FILE).read_text().strip() == token
    assert stat.S_IMODE((root / TOKEN_FILE).stat().st_mode) == 0o600
    assert dtrain_token(root) == token  # kept, not made again
