"""The `dtrain` command line, end to end: CliRunner in-process, and a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dtrain.cli.main import app
from dtrain.model import load_model

runner = CliRunner()


def run_cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_submit_json_prints_one_object_and_writes_the_run(ray_cluster, tmp_path, mnist, job_storage):
    out = tmp_path / "run"
    result = run_cli("submit", "--workers", "2", "--epochs", "1", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)  # stdout holds exactly one JSON object
    assert {"job_id", "state", "test_accuracy", "epochs", "workers", "job_dir", "out", "mode"} <= set(payload)
    assert payload["state"] == "SUCCEEDED" and payload["mode"] == "local"
    assert payload["workers"] == 2 and payload["epochs"] == 1
    assert payload["test_accuracy"] > 0.9
    assert Path(payload["out"]) == out
    job_dir = job_storage / "jobs" / payload["job_id"]
    assert Path(payload["job_dir"]) == job_dir
    for name in ("model.npz", "metrics.jsonl", "report.json", "spec.json"):
        assert (out / name).is_file(), name
        assert (out / name).read_bytes() == (job_dir / name).read_bytes(), name
    assert json.loads((job_dir / "job.json").read_text())["state"] == "SUCCEEDED"
    model = load_model(out / "model.npz")
    assert (model.predict(mnist.x_test) == mnist.y_test).mean() == pytest.approx(payload["test_accuracy"])


def test_submit_prints_the_report_a_human_reads(ray_cluster, tmp_path):
    result = run_cli("submit", "--workers", "3", "--epochs", "1", "--hidden", "32,16", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Test accuracy" in text and "after 1 epoch on 3 workers" in text
    assert "Per class" in text and "precision" in text and "recall" in text
    assert "Examples" in text and "test #0" in text and "true 7" in text  # the first test digit is a 7
    assert "Most confident misclassifications" in text
    assert any(ch in text for ch in "%@#")  # digits drawn with the ASCII ramp
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["layer_sizes"] == [784, 32, 16, 10]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--workers", "0"], "--workers"),
        (["--epochs", "0"], "--epochs"),
        (["--lr", "-1"], "--lr"),
        (["--hidden", "0"], "--hidden"),
        (["--hidden", "64,abc"], "--hidden"),
        (["--activation", "tanh"], "--activation"),
        (["--sync-every", "0"], "--sync-every"),
        (["--kernel", "cuda"], "--kernel"),
        (["--until-accuracy", "1.5"], "--until-accuracy"),
    ],
)
def test_bad_options_get_one_line_naming_the_option(tmp_path, args, option):
    result = run_cli("submit", *args, "--out", str(tmp_path / "never"))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "never").exists()


def test_bad_data_dir_gets_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    result = run_cli("submit", "--data-dir", str(bad), "--out", str(tmp_path / "never"))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {bad}/train-images-idx3-ubyte.gz: not a gzip file (the name ends in .gz)"


def test_version_and_help():
    assert run_cli("--version").stdout.startswith("dtrain ")
    help_text = run_cli("submit", "--help").stdout
    for option in ("--workers", "--epochs", "--lr", "--hidden", "--activation", "--sync-every", "--seed", "--data-dir", "--out", "--json"):
        assert option in help_text


def dtrain_command() -> list[str]:
    return [sys.executable, "-c", "from dtrain.cli.main import main; main()"]


def test_real_subprocess_trains_and_prints_json(tmp_path):
    """The installed entry point, its own embedded Ray, exit code and clean stdout."""
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.run(
        [*dtrain_command(), "submit", "--workers", "2", "--epochs", "1", "--json", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["state"] == "SUCCEEDED" and payload["test_accuracy"] > 0.9
    assert "Traceback" not in proc.stderr


def test_real_subprocess_user_error_exit_2_without_traceback(tmp_path):
    proc = subprocess.run(
        [*dtrain_command(), "submit", "--data-dir", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing'}: no such directory (expected the four IDX files of a dataset)"]
    assert proc.stdout == ""


def test_out_that_is_a_file_or_holds_a_run_is_refused_and_left_alone(tmp_path):
    a_file = tmp_path / "afile"
    a_file.write_text("keep me")
    result = run_cli("submit", "--out", str(a_file))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --out: {a_file} is a file, expected a directory"
    previous = tmp_path / "previous-run"
    previous.mkdir()
    (previous / "model.npz").write_bytes(b"an earlier model")
    result = run_cli("submit", "--out", str(previous))
    assert result.exit_code == 2
    assert "is not empty" in result.stderr and "Traceback" not in result.output
    assert a_file.read_text() == "keep me" and (previous / "model.npz").read_bytes() == b"an earlier model"


def test_more_workers_than_the_cluster_can_hold_is_refused(ray_cluster, tmp_path):
    result = run_cli("submit", "--workers", "1000", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --workers: 1000 workers on 2 CPUs")


def test_usage_errors_are_one_line_too():
    proc = subprocess.run(
        [*dtrain_command(), "submit", "--lr", "abc"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: Invalid value for '--lr': Input should be a valid number, unable to parse string as a number"
    ]
