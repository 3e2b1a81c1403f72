"""The `dtrain` command line, end to end: CliRunner in-process, and a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
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
    assert {"job_id", "state", "test_accuracy", "epochs", "workers", "job_dir", "out", "runtime"} <= set(payload)
    assert payload["state"] == "SUCCEEDED" and payload["runtime"] == "local"
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
    return [sys.executable, "-c", "from dtrain.cli.entry import main; main()"]


def processes_with_env(entry: str) -> list[str]:
    """Command lines of the live processes whose environment holds `entry` (NAME=value):
    a process and all it started, as Ray's worker processes rename themselves."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if entry.encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120])
        except OSError:  # it exited meanwhile
            continue
    return found


def test_real_subprocess_trains_and_prints_json(tmp_path):
    """The installed entry point, its own embedded Ray, exit code and clean stdout; and the
    embedded Ray is gone when the command has exited (dtrain stops it itself, faster than
    Ray's exit hook). From a fresh HOME, as a new user's first run: Ray prints nothing of its own."""
    ray_tmp = tempfile.mkdtemp(prefix="dtr", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_TMPDIR=ray_tmp, HOME=str(tmp_path / "home"))
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
    assert [line for line in proc.stderr.splitlines() if not line.startswith("job ")] == []  # no Ray warnings
    # Every process of that embedded Ray (its workers too) has exited.
    deadline = time.monotonic() + 30
    while (left := processes_with_env(f"RAY_TMPDIR={ray_tmp}")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, left
    shutil.rmtree(ray_tmp, ignore_errors=True)


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


def test_more_workers_than_the_cluster_can_hold_is_refused(tmp_path):
    """One worker more than the rule allows on this machine's CPUs, whatever their number:
    refused before any Ray starts, so the test never launches a huge job."""
    from dtrain.cluster.placement import MAX_WORKERS_PER_CPU, local_cpus

    cpus = local_cpus()
    workers = int(MAX_WORKERS_PER_CPU * cpus) + 1
    result = run_cli("submit", "--local", "--workers", str(workers), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --workers: {workers} workers on {cpus:g} CPUs; expected at most {workers - 1} ({MAX_WORKERS_PER_CPU} per CPU)"
    ]
    assert not (tmp_path / "run").exists()


def test_usage_errors_are_one_line_too():
    proc = subprocess.run(
        [*dtrain_command(), "submit", "--lr", "abc"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: Invalid value for '--lr': Input should be a valid number, unable to parse string as a number"
    ]


def test_the_cli_starts_without_numpy_or_ray():
    """Loading the commands imports neither (each command loads what it needs): `dtrain status`
    over HTTP is a few hundred ms, most of it the interpreter and this import."""
    loaded = subprocess.run([sys.executable, "-c", "import sys, dtrain.cli.main; print(sorted({'numpy', 'ray'} & set(sys.modules)))"],
                            capture_output=True, text=True, timeout=60)
    assert loaded.stdout.strip() == "[]", loaded.stderr


def test_local_jobs_are_listed_reported_and_pulled_without_a_cluster(ray_cluster, tmp_path, mnist):
    storage = str(tmp_path / "storage")
    submitted = run_cli("submit", "--workers", "2", "--epochs", "1", "--storage", storage, "--json")
    assert submitted.exit_code == 0, submitted.output
    job_id = json.loads(submitted.stdout)["job_id"]

    listed = json.loads(run_cli("list", "--storage", storage, "--json").stdout)
    assert [(j["job_id"], j["state"], j["epoch"], j["owner"]["runtime"]) for j in listed] == [(job_id, "SUCCEEDED", 1, "local")]
    table = run_cli("list", "--storage", storage).stdout
    assert job_id in table and "SUCCEEDED" in table and "1/1" in table

    status = json.loads(run_cli("status", job_id, "--storage", storage, "--json").stdout)
    assert status["state"] == "SUCCEEDED" and status["test_accuracy"] > 0.9

    report = json.loads(run_cli("report", job_id, "--storage", storage, "--json").stdout)
    assert report["test"]["accuracy"] == status["test_accuracy"]
    assert len(report["examples"][0]["pixels"]) == 784  # a report draws its digits without the dataset
    human = run_cli("report", job_id, "--storage", storage).stdout
    assert "Test accuracy" in human and "true 7" in human
    assert "Confusion matrix" in human and "Workers" in human

    logs = run_cli("logs", job_id, "--storage", storage).stdout.splitlines()
    assert logs[0].startswith("epoch 1/1  test acc") and logs[-1] == "SUCCEEDED"

    pulled = run_cli("pull", job_id, "-o", str(tmp_path / "pulled"), "--storage", storage, "--json")
    assert sorted(json.loads(pulled.stdout)["files"]) == ["metrics.jsonl", "model.npz", "report.json", "spec.json"]
    model = load_model(tmp_path / "pulled" / "model.npz")
    assert (model.predict(mnist.x_test) == mnist.y_test).mean() == pytest.approx(status["test_accuracy"])
    again = run_cli("pull", job_id, "-o", str(tmp_path / "pulled"), "--storage", storage)
    assert again.exit_code == 2 and "is not empty" in again.stderr  # nothing pulled over earlier files


def test_local_job_is_cancelled_from_another_process(tmp_path):
    start_and_cancel_a_local_job(tmp_path)


def start_and_cancel_a_local_job(tmp_path) -> tuple[Path, str]:
    """A long local job in a `dtrain submit` process, cancelled by `dtrain cancel` once it trains."""
    from dtrain.cluster.client import LocalJobs

    storage = tmp_path / "storage"
    proc = subprocess.Popen(
        [*dtrain_command(), "submit", "--local", "--workers", "2", "--epochs", "1000", "--storage", str(storage)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    jobs = LocalJobs(storage)
    deadline = time.monotonic() + 180
    while not any(j.state == "RUNNING" and j.epoch >= 1 for j in jobs.jobs()):
        assert time.monotonic() < deadline and proc.poll() is None, "the job never ran"
        time.sleep(0.2)
    job_id = jobs.jobs()[0].id

    cancelled = run_cli("cancel", job_id, "--storage", str(storage), "--json")
    assert cancelled.exit_code == 0, cancelled.output
    assert json.loads(cancelled.stdout)["state"] == "CANCELLED"
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"job {job_id} cancelled: stopped after" in err and "Traceback" not in err
    assert jobs.metrics(job_id)  # the epochs it trained are kept
    return storage, job_id


def test_a_cancelled_local_job_resumes_and_trains_on(tmp_path):
    """The cancel request that stopped a job is not still there to stop its resumed run at once."""
    from dtrain.cluster.client import LocalJobs

    storage, job_id = start_and_cancel_a_local_job(tmp_path)
    jobs = LocalJobs(storage)
    stopped_at = jobs.job(job_id).epoch
    proc = subprocess.Popen(
        [*dtrain_command(), "resume", job_id, "--local", "--storage", str(storage)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 180
    while not (jobs.job(job_id).state == "RUNNING" and jobs.job(job_id).epoch > stopped_at):
        assert time.monotonic() < deadline, "the resumed job never trained"
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.2)
    cancelled = run_cli("cancel", job_id, "--storage", str(storage), "--json")
    assert cancelled.exit_code == 0, cancelled.output
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"job {job_id} cancelled: stopped after" in err, err
    assert f"resuming  from epoch {stopped_at}, its last checkpoint" in err and "Traceback" not in err


def test_detach_needs_a_cluster_and_unknown_jobs_are_one_line(tmp_path):
    storage = str(tmp_path / "storage")
    detached = run_cli("submit", "--local", "--detach", "--storage", storage)
    assert detached.exit_code == 2
    assert detached.stderr.startswith("error: --detach: a local-mode job ends with this command")
    for command in ("status", "logs", "cancel", "report", "pull"):
        result = run_cli(command, "0123abcd", "--storage", storage)
        assert result.exit_code == 2
        assert result.stderr.strip() == f"error: no job '0123abcd' in {storage} (`dtrain list` shows the jobs)"
    assert run_cli("list", "--storage", storage).stdout.startswith("no jobs yet in")


@pytest.mark.parametrize("text", ["ab[/]cd", "[red]x.png", "[bold", "x[/bold]y", "\\[link=a]b"])
def test_user_text_that_looks_like_markup_is_printed_as_it_is(tmp_path, text):
    """Errors quote the user's text verbatim, in one line: never parsed as Rich markup."""
    storage = str(tmp_path / "storage")
    cases = [
        (["status", text, "--storage", storage], f"error: no job {text!r} in {storage} (`dtrain list` shows the jobs)"),
        (["predict", str(tmp_path / text), str(tmp_path / "digit.png")], f"error: {tmp_path / text}: no such file"),
        (["submit", "--data-dir", str(tmp_path / text)],
         f"error: {tmp_path / text}: no such directory (expected the four IDX files of a dataset)"),
    ]
    for args, expected in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output, result.exception)
        assert result.stderr.strip().splitlines() == [expected]


def test_a_job_message_with_markup_is_shown_verbatim(tmp_path):
    """`status` and `list` show what the record says, brackets included (a FAILED job's message quotes paths)."""
    from dtrain.cluster.jobstore import JobStore, local_owner
    from dtrain.spec import JobSpec

    storage = tmp_path / "st[/]or[red]age"
    store = JobStore(storage)
    record = store.create(JobSpec(), local_owner())
    store.update(record.id, state="FAILED", message="/data/[/]x: no such directory")
    status = runner.invoke(app, ["status", record.id, "--storage", str(storage)])
    assert status.exit_code == 0, (status.output, status.exception)
    assert "FAILED  /data/[/]x: no such directory" in status.stdout
    listed = runner.invoke(app, ["list", "--storage", str(storage)])
    assert listed.exit_code == 0, (listed.output, listed.exception)
    assert f"Jobsin{storage}" in "".join(listed.stdout.split())  # the title may wrap
    empty = runner.invoke(app, ["list", "--storage", str(tmp_path / "[/]none")])
    assert empty.exit_code == 0 and empty.stdout.strip() == f"no jobs yet in {tmp_path / '[/]none'}"


def test_a_path_that_is_not_utf8_is_printed_as_its_own_bytes(tmp_path):
    """A file name from the command line that is not UTF-8 (Python holds it as surrogates)
    goes back out to stdout as the same bytes, not as a UnicodeEncodeError traceback."""
    storage = os.fsencode(tmp_path) + b"/caf\xe9"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}  # as under a UTF-8 locale such as en_US.UTF-8
    proc = subprocess.run(
        [*map(os.fsencode, dtrain_command()), b"list", b"--storage", storage], capture_output=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"no jobs yet in " + storage + b"\n"


@pytest.mark.parametrize("other_thread", [False, True])
def test_a_command_exits_without_the_interpreter_s_teardown_unless_something_may_need_it(tmp_path, other_thread):
    """`dtrain` skips Python's teardown of its modules once its output is flushed (tens of ms
    of every command); not with another thread running (or Ray imported): their exit hooks run."""
    script = (
        "import atexit, sys, threading, time\n"
        "from dtrain.cli.main import main\n"
        "atexit.register(lambda: print('teardown ran', file=sys.stderr))\n"
        + ("threading.Thread(target=time.sleep, args=(0.5,), daemon=True).start()\n" if other_thread else "")
        + f"sys.argv = ['dtrain', 'list', '--json', '--storage', {str(tmp_path / 'storage')!r}]\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []  # flushed whole before the exit
    assert ("teardown ran" in proc.stderr) == other_thread
