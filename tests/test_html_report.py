"""`dtrain report` on a real trained job: the terminal report, --graphics, and the HTML page,
checked as HTML and as rendered by headless Chromium (screenshot, DOM, console)."""

from __future__ import annotations

import base64
import html.parser
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dtrain.reports.html import render_html
from dtrain.cli.main import app
from dtrain.cli.render import HALF_BLOCK
from dtrain.cluster.client import LocalJobs

from browser import CHROMIUM, CHROMIUM_FLAGS, load_in_chromium

runner = CliRunner()



def run_cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def job(ray_cluster, tmp_path_factory) -> dict[str, Any]:
    """One real job, trained once for this module: 2 workers, 2 epochs (~2 s on the shared Ray)."""
    storage = tmp_path_factory.mktemp("report-storage")
    submitted = run_cli("submit", "--workers", "2", "--epochs", "2", "--storage", str(storage), "--json")
    assert submitted.exit_code == 0, submitted.output
    job_id = json.loads(submitted.stdout)["job_id"]
    jobs = LocalJobs(storage)
    return {"id": job_id, "storage": str(storage), "report": jobs.report(job_id), "history": jobs.metrics(job_id)}


@pytest.fixture(scope="module")
def html_file(job, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """The page as `dtrain report JOB --html FILE --json` writes it, and what that printed."""
    path = tmp_path_factory.mktemp("html") / "report.html"
    result = run_cli("report", job["id"], "--storage", job["storage"], "--html", str(path), "--json")
    assert result.exit_code == 0, result.output
    return path, json.loads(result.stdout)


@pytest.fixture(scope="module")
def page(job) -> str:
    return render_html(job["report"], job["history"])


class Tags(html.parser.HTMLParser):
    """Every start tag with its attributes, and the text."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


# --- the terminal report ------------------------------------------------------------------


def test_terminal_report_shows_the_jobs_figures(job):
    result = run_cli("report", job["id"], "--storage", job["storage"])
    assert result.exit_code == 0, result.output
    text, report = result.stdout, job["report"]
    assert f"Test accuracy {report['test']['accuracy'] * 100:.2f}%" in text and "after 2 epochs on 2 workers" in text
    accuracy = [h["test_accuracy"] for h in job["history"]]
    assert f"Test accuracy by epoch  " in text and f"{accuracy[0] * 100:.2f}% -> {accuracy[-1] * 100:.2f}%" in text
    assert "Per class (test set)" in text and "precision" in text and f"{report['test']['f1'][0]:.3f}" in text
    assert "Confusion matrix" in text and str(report["test"]["confusion"][1][1]) in text  # the 1s, on the diagonal
    assert "Workers" in text and "samples/s" in text and "train loss" in text
    assert len(report["workers"][0]["by_epoch"]) == 2  # each worker's own figures, epoch by epoch
    assert "Examples" in text and "true 7 -> 7" in text
    first = report["misclassified"][0]
    assert "Most confident misclassifications" in text and f"true {first['label']} -> {first['predicted']}" in text
    assert any(ch in text for ch in "%@#") and HALF_BLOCK not in text and "\x1b[" not in text  # ASCII off a terminal
    assert text.rstrip().endswith(f"Job {job['id']}: `dtrain pull {job['id']}` copies its artifacts here")


def test_report_graphics_off_a_terminal_is_text_and_a_note(job):
    result = run_cli("report", job["id"], "--storage", job["storage"], "--graphics")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == "--graphics: stdout is not a terminal; digits are drawn as text"
    assert "true 7 -> 7" in result.stdout and "\x1bPq" not in result.stdout and any(ch in result.stdout for ch in "%@#")


def test_report_graphics_on_a_terminal(job, monkeypatch):
    from test_sixel import run_in_terminal

    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    args = ["report", job["id"], "--storage", job["storage"], "--local", "--graphics"]
    drawn = run_in_terminal(args, answer=b"\x1b[?62;4;22c")  # says it draws sixels
    assert drawn.count(b"\x1bPq") == len(job["report"]["examples"]) + min(3, len(job["report"]["misclassified"]))
    assert b"true 7 -> 7" in drawn and b"Test accuracy" in drawn and HALF_BLOCK.encode() not in drawn
    plain = run_in_terminal(args, answer=b"\x1b[?62;22c")  # no 4: no sixels
    assert b"\x1bPq" not in plain and b"does not say it draws sixel images" in plain
    assert HALF_BLOCK.encode() in plain and b"true 7 -> 7" in plain  # a colour terminal: half blocks


# --- the HTML page, as HTML -----------------------------------------------------------------


def test_html_page_holds_the_report_and_only_inline_images(page, job):
    report = job["report"]
    tags = Tags(page)
    text = tags.plain()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page.lower()
    assert "http://" not in page and "https://" not in page and "url(" not in page  # nothing to fetch
    images = tags.all("img")
    assert images and all(img["src"].startswith("data:image/png;base64,") for img in images)
    for img in images:  # each is a real PNG of the size the page says (a digit's is zoomed by CSS)
        picture = Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1])))
        size = (int(img["width"]), int(img["height"]))
        assert picture.format == "PNG" and img["alt"]
        assert (picture.size, size) == ((28, 28), (84, 84)) if img.get("class") == "digit" else picture.size == size
    alts = [img["alt"] for img in images]
    assert any(a.startswith("Accuracy by epoch") for a in alts) and any(a.startswith("Loss by epoch") for a in alts)
    assert any(a.startswith("Confusion matrix heatmap") for a in alts)
    assert any(a.startswith("Samples per second by worker") for a in alts)
    by_worker = [a for a in alts if a.startswith("Training loss by epoch of each worker")]
    assert len(by_worker) == 1 and all(f"worker {w['rank']} " in by_worker[0] for w in report["workers"])
    shown = report["misclassified"] + report["examples"]
    assert sum(a.startswith("test digit #") for a in alts) == len(shown)
    assert sum(a.startswith("Probabilities of test digit #") for a in alts) == len(shown)

    assert f"Test accuracy {report['test']['accuracy'] * 100:.2f}%" in text
    assert f"(loss {report['test']['loss']:.4f})" in text and "after 2 epochs on 2 workers" in text
    for h in job["history"]:
        assert f"{h['test_accuracy'] * 100:.2f}%" in text and f"{h['train_loss']:.4f}" in text
    assert "Per class" in text and f"{report['test']['precision'][3]:.3f}" in text and "Workers" in text
    first = report["misclassified"][0]
    p = np.asarray(first["probabilities"])
    second = int(np.argsort(-p, kind="stable")[1])
    assert f"test #{first['index']}: true {first['label']} → {first['predicted']}" in text
    assert f"top 3: {first['predicted']}: {p.max() * 100:.1f}%, {second}: {p[second] * 100:.1f}%" in text
    table = page.split("<caption>Confusion matrix (rows true", 1)[1].split("</table>", 1)[0]
    rows = [[int(v) for v in Tags(row).plain().split()] for row in table.split("<tr>")[2:]]  # past the header
    assert rows == [[k, *counts] for k, counts in enumerate(report["test"]["confusion"])]


def test_html_escapes_every_text_it_is_given(job):
    report = json.loads(json.dumps(job["report"]))
    report["job_id"] = "<script>alert('id')</script>"
    report["spec"]["data_dir"] = '/tmp/"><img src=x onerror=alert(1)>&'
    report["dataset"]["name"] = "<b>bold</b>"
    report["misclassified"], report["examples"] = report["misclassified"][:1], []
    page = render_html(report, job["history"][:1])
    assert "<script" not in page and "<b>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;id&#x27;)&lt;/script&gt;" in page
    assert "/tmp/&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&amp;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert Tags(page).all("img")[0]["src"].startswith("data:image/png;base64,")


# --- dtrain report --html ---------------------------------------------------------------------


def test_report_html_writes_the_page_and_prints_its_path(html_file, job, tmp_path):
    path, printed = html_file
    assert printed["html"] == str(path.resolve()) and printed["test"] == job["report"]["test"]
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]  # no temporary file left behind
    again = tmp_path / "again.html"
    again.write_text("an older page")
    result = run_cli("report", job["id"], "--storage", job["storage"], "--html", str(again))
    assert result.exit_code == 0, result.output
    assert "Test accuracy" in result.stdout and result.stdout.rstrip().endswith(f"HTML report: {again.resolve()}")
    assert again.read_text().startswith("<!DOCTYPE html>") and sorted(p.name for p in tmp_path.iterdir()) == ["again.html"]


def test_report_html_bad_paths_get_one_line(job, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for target, message in [
        ("/nope/x.html", "--html: /nope/x.html: directory does not exist"),
        (str(tmp_path), f"--html: {tmp_path}: is a directory; give a file name such as report.html"),
        (f"{a_file}/x.html", f"--html: {a_file}/x.html: {a_file} is not a directory"),
    ]:
        result = run_cli("report", job["id"], "--storage", job["storage"], "--html", target)
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert result.stderr.strip() == f"error: {message}" and result.stdout == ""


def test_report_html_refuses_an_unknown_job_in_one_line(job, tmp_path):
    result = run_cli("report", "0123abcd", "--storage", job["storage"], "--html", str(tmp_path / "r.html"))
    assert result.exit_code == 2 and result.stderr.strip().startswith("error: no job '0123abcd'")
    assert not (tmp_path / "r.html").exists()


# --- the HTML page, in headless Chromium -----------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("DTRAIN_REQUIRE_CHROMIUM"):
            pytest.fail(f"DTRAIN_REQUIRE_CHROMIUM is set but there is no chromium at {CHROMIUM}")
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    return CHROMIUM


def run_chromium(chromium: str, profile: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def test_chromium_screenshot_shows_the_page(chromium, html_file, tmp_path_factory, capsys):
    path, _ = html_file
    out = tmp_path_factory.mktemp("chromium-screenshot")
    shot = out / "report.png"
    run = run_chromium(chromium, out / "profile", f"--screenshot={shot}", "--window-size=1200,3000", path.as_uri())
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    with capsys.disabled():
        print(f"\nscreenshot of the HTML report: {shot}")
    picture = np.asarray(Image.open(shot).convert("RGB"))
    assert picture.shape == (3000, 1200, 3)
    rgb = picture.astype(np.int32)
    colours, counts = np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2], return_counts=True)
    assert len(colours) > 1000  # plots, heatmap, digits: far from a blank page
    assert counts.max() / counts.sum() < 0.8  # the background is not nearly everything
    assert (picture.min(axis=2) < 100).mean() > 0.01  # dark ink: text, digits, bars


def test_chromium_dom_shows_the_figures(chromium, html_file, job, tmp_path):
    path, _ = html_file
    run = run_chromium(chromium, tmp_path / "profile", "--dump-dom", path.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    dom = Tags(run.stdout)
    images = dom.all("img")
    assert len(images) >= 4 + 2 * len(job["report"]["misclassified"] + job["report"]["examples"])
    assert all(img["src"].startswith("data:image/png;base64,") for img in images)
    assert any(img["alt"].startswith("Confusion matrix heatmap of the test set") for img in images)
    assert f"Test accuracy {job['report']['test']['accuracy'] * 100:.2f}%" in dom.plain()


def test_chromium_loads_the_page_without_errors_or_requests(chromium, html_file, tmp_path):
    path, _ = html_file
    loaded = load_in_chromium(chromium, path.as_uri(), tmp_path)
    assert loaded["problems"] == []
    assert loaded["images"] and all(complete and width > 0 for complete, width, _ in loaded["images"])  # every PNG decoded


def test_the_chromium_check_sees_errors(chromium, tmp_path):
    """The same check on a broken page finds what is wrong with it (so silence above means something)."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><script>console.error("boom"); no_such_function();</script>'
                   '<img src="http://127.0.0.1:9/x.png" alt="x"></body></html>')
    problems = load_in_chromium(chromium, bad.as_uri(), tmp_path)["problems"]
    assert any("boom" in p for p in problems) and any(p.startswith("uncaught") for p in problems)
    assert "request: http://127.0.0.1:9/x.png" in problems
