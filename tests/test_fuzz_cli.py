"""Every command, fed random and hostile arguments: never a traceback, and no change to the
jobs' storage directory (none of these inputs is meant to change it).

The commands run in-process through the real entry point (`dtrain.cli.main.run`, which
turns usage errors into one line as `dtrain` does). None of them starts Ray or a job:
`submit` is always given a data directory that does not exist (refused before Ray
starts), `resume` only ids of jobs that cannot be resumed, and job commands --local.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dtrain.cli.main import run
from dtrain.cluster.jobstore import JobStore, local_owner
from dtrain.files import append_jsonl
from dtrain.model.weights import save_weights
from dtrain.spec import JobSpec

runner = CliRunner()

MARKUP = ["[/]", "[red]", "[bold", "[/bold]", "\\[", "[link=x]", "[", "]"]
CONTROL = ["\x1b[31m", "\x1b]8;;x\x07", "\r", "\n", "\t", "\x7f", "\x08", "\u202e"]
NUMBERS = ["0", "-1", "1e309", "nan", "inf", "-inf", str(10**30), str(-(10**30)), "0x10", "1_000", "3.5"]
NOT_UTF8 = [b"\xff\xfe".decode("utf-8", "surrogateescape"), b"caf\xe9".decode("utf-8", "surrogateescape")]

piece = st.one_of(
    st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=12),
    st.sampled_from(MARKUP + CONTROL + NUMBERS + NOT_UTF8),
)
hostile = st.lists(piece, max_size=4).map("".join)


class World:
    """A storage directory holding one ended job, and files of every kind to point at."""

    def __init__(self, root: Path):
        self.root = root
        self.storage = root / "storage"
        store = JobStore(self.storage)
        record = store.create(JobSpec(epochs=2), local_owner())
        append_jsonl(store.job_dir(record.id) / "metrics.jsonl", {
            "epoch": 1, "train_loss": 0.5, "train_accuracy": 0.9, "test_loss": 0.4, "test_accuracy": 0.91,
            "samples": 60000, "rounds": 4, "worker_restarts": 0, "samples_per_s": 1e5, "train_time_s": 1.0,
            "wall_time_s": 1.2,
        })
        store.update(record.id, state="SUCCEEDED", epoch=1, test_accuracy=0.91, ended_at=record.created_at + 2)
        self.job_id = record.id
        files = root / "files"
        files.mkdir()
        self.model = files / "model.npz"
        sizes = (784, 8, 10)
        theta = np.random.default_rng(0).normal(size=784 * 8 + 8 + 8 * 10 + 10).astype(np.float32) * 0.01
        save_weights(self.model, theta, sizes, {"activation": "relu"})
        self.digits = files / "digits.npy"
        np.save(self.digits, np.random.default_rng(1).integers(0, 256, size=(3, 28, 28), dtype=np.uint8))
        self.garbage = files / "garbage.png"
        self.garbage.write_bytes(b"\x89PNG not really")
        self.directory = files / "a directory"
        self.directory.mkdir()
        self.outs = root / "outs"  # where commands may write (pull, report --html): not the storage
        self.outs.mkdir()
        self.cwd = root / "cwd"
        self.cwd.mkdir()

    def paths(self) -> st.SearchStrategy[str]:
        existing = [self.model, self.digits, self.garbage, self.directory, self.storage, self.root / "missing",
                    *(self.root / "files" / name for name in NOT_UTF8), self.root / "files" / "[red]x.png"]
        return st.one_of(
            st.sampled_from([str(p) for p in existing]),
            hostile.map(lambda name: str(self.root / "files" / name)),
            hostile,
        )

    def out_paths(self) -> st.SearchStrategy[str]:
        fixed = [self.garbage, self.directory, *(self.outs / name for name in NOT_UTF8)]
        return st.one_of(hostile.map(lambda name: str(self.outs / name)), st.sampled_from([str(p) for p in fixed]))

    def ids(self) -> st.SearchStrategy[str]:
        return st.one_of(st.just(self.job_id), st.sampled_from(["0123abcd", "", "../..", "f" * 33, "-", "--json"]), hostile)

    def storages(self) -> st.SearchStrategy[str]:
        odd = [self.root / name for name in (*NOT_UTF8, "[/]x", "\x1b[31m")] + [self.garbage, self.directory]
        return st.one_of(st.just(str(self.storage)), st.sampled_from([str(p) for p in odd]), self.paths())

    def snapshot(self) -> dict[str, tuple]:
        found = {}
        for dirpath, dirnames, filenames in os.walk(self.storage):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                info = os.lstat(path)
                found[path] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_size, info.st_mtime_ns)
        return found


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("fuzz"))


def options(pairs: dict[str, st.SearchStrategy[str]], flags: list[str]) -> st.SearchStrategy[list[str]]:
    """Some of the options, in any order, each with a drawn value; some flags."""
    one = st.one_of(
        *(st.tuples(st.just(name), value).map(list) for name, value in pairs.items()),
        *(st.just([flag]) for flag in flags),
    )
    return st.lists(one, max_size=5).map(lambda chosen: [arg for option in chosen for arg in option])


def invoke(world: World, args: list[str]) -> tuple[int, str]:
    """Run `dtrain ARGS` in-process as the entry point does: (exit status, stdout + stderr)."""
    with runner.isolation() as (out, err, _):
        cwd = os.getcwd()
        os.chdir(world.cwd)  # pull's default directory (./JOB_ID) goes here
        try:
            run(args)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            os.chdir(cwd)
        return code, out.getvalue().decode(errors="replace") + err.getvalue().decode(errors="replace")


def check(world: World, args: list[str], *, allowed: tuple[int, ...] = (0, 1, 2)) -> None:
    before = world.snapshot()
    code, output = invoke(world, args)
    assert code in allowed, (args, code, output)
    assert "Traceback" not in output, (args, output)
    if code != 0:
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) <= 1, (args, output)
    assert world.snapshot() == before, ("the storage directory changed", args)


SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


@SETTINGS
@given(data=st.data())
def test_job_commands(world, data):
    command = data.draw(st.sampled_from(["list", "status", "logs", "cancel", "pull", "report", "resume"]))
    storage = data.draw(world.storages())
    args = [command] if command == "list" else [command, data.draw(world.ids())]
    flags = ["--json", "--follow", "--graphics", "--detach"]
    args += data.draw(options({"--out": world.out_paths(), "--html": world.out_paths(), "--address": hostile}, flags))
    # --local, always: no cluster is looked for (a hostile --address then is refused with it)
    check(world, [*args, "--storage", storage, "--local"])


SUBMIT = {
    name: st.one_of(hostile, st.sampled_from(NUMBERS))
    for name in (
        "--workers", "--epochs", "--lr", "--hidden", "--activation", "--sync-every", "--sync-growth", "--combine",
        "--block-momentum", "--cpus-per-worker", "--kernel", "--seed", "--until-accuracy", "--batch-size", "--shard",
        "--split", "--algorithm", "--mode", "--max-staleness", "--reduce", "--straggler-delay", "--clients", "--clients-per-round",
        "--local-epochs", "--rounds", "--eval-every", "--mu", "--bogus",
    )
}


@SETTINGS
@given(data=st.data())
def test_submit_is_refused_before_anything_starts(world, data):
    args = data.draw(options({**SUBMIT, "--out": world.out_paths(), "--data-dir": world.paths()}, ["--json", "--detach"]))
    missing = str(world.root / "no data here" / data.draw(hostile))
    # The last --data-dir wins: one that does not exist, so no job ever starts.
    check(world, ["submit", *args, "--storage", str(world.storage), "--local", "--data-dir", missing], allowed=(2,))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(data=st.data())
def test_predict_and_show(world, data):
    if data.draw(st.booleans()):
        model = data.draw(st.one_of(st.just(str(world.model)), world.paths()))
        files = data.draw(st.lists(world.paths(), max_size=3))
        args = ["predict", model, *files, *data.draw(options({}, ["--json", "--graphics"]))]
    else:
        index = st.one_of(st.sampled_from(["0", "0..3", "1,4,7", "9999", "0..200", "3..1"]), hostile)
        dataset = st.one_of(st.sampled_from(["test", "train"]), hostile)
        args = ["show", *data.draw(options({"--index": index, "--dataset": dataset, "--data-dir": world.paths()}, ["--json"]))]
    check(world, args)


@pytest.mark.parametrize("args", [[], ["--help"], ["--version"], ["nosuchcommand"], ["submit", "--help"], ["status"]])
def test_bare_help_version_and_usage_errors(world, args):
    check(world, args)
