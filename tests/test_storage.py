"""The files of a job's directory: modes, durability, appends, and reading past damage."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from dtrain.cluster import checkpoint
from dtrain.files import append_jsonl, read_jsonl, write_atomic, write_json
from dtrain.model.weights import read_weights, save_weights

SIZES = (784, 8, 10)


def a_model(path) -> None:
    theta = np.random.default_rng(0).normal(size=784 * 8 + 8 + 8 * 10 + 10).astype(np.float32) * 0.01
    save_weights(path, theta, SIZES, {"activation": "relu"})


def writers(tmp_path):
    """Every way dtrain writes a file, each as (name, write into `path`)."""
    return [
        ("write_atomic", lambda path: write_atomic(path, b"data")),
        ("write_json", lambda path: write_json(path, {"a": 1})),
        ("append_jsonl", lambda path: append_jsonl(path, {"epoch": 1})),
        ("save_weights", a_model),
    ]


@pytest.fixture
def umask_spy(monkeypatch):
    """Fails the test if anything changes the process umask: in a threaded actor, another
    thread's file created meanwhile would get the wrong mode (world-writable under umask 0)."""
    calls = []
    real = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real(mask))
    return calls


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_get_the_umask_mode_without_the_umask_ever_changing(tmp_path, umask_spy, mask):
    previous = os.umask(mask)
    umask_spy.clear()
    try:
        for name, write in writers(tmp_path):
            path = tmp_path / f"{name}-{mask:o}"
            write(path)
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, name
            write(path)  # again, over the file it made
            assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, name
        assert umask_spy == [], "a write changed the process umask"
    finally:
        os.umask(previous)


def test_weights_are_synced_to_disk_before_they_replace_the_old_file(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real(fd))
    path = tmp_path / "model.npz"
    a_model(path)
    assert any(os.path.basename(p).startswith(".model.npz.") for p in synced), synced  # the file, before its rename
    assert str(tmp_path) in synced  # and the directory, after it
    assert read_weights(path)[1]["layer_sizes"] == list(SIZES)
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary file left


def test_append_jsonl_appends_in_place(tmp_path, monkeypatch):
    """One epoch's line is written onto the end of the file, not the whole file again
    (which made a job's metrics cost quadratic in its epochs); each line is synced."""
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"epoch": 1})
    inode = path.stat().st_ino
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    written = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: written.append(bytes(data)) or real_write(fd, data))
    for epoch in range(2, 6):
        append_jsonl(path, {"epoch": epoch})
    assert path.stat().st_ino == inode
    assert written == [b'{"epoch": %d}\n' % e for e in range(2, 6)]
    assert len(synced) == 4
    assert [r["epoch"] for r in read_jsonl(path)] == [1, 2, 3, 4, 5]


def test_a_torn_last_line_is_not_read_and_the_next_append_replaces_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"epoch": 1})
    with open(path, "ab") as f:
        f.write(b'{"epoch": 2, "test_acc')  # a crash in the middle of an append
    assert read_jsonl(path) == [{"epoch": 1}]
    append_jsonl(path, {"epoch": 2})
    assert read_jsonl(path) == [{"epoch": 1}, {"epoch": 2}]
    assert path.read_bytes() == b'{"epoch": 1}\n{"epoch": 2}\n'
    path.write_bytes(b'{"epo')  # torn first line
    assert read_jsonl(path) == []
    append_jsonl(path, {"epoch": 1})
    assert path.read_bytes() == b'{"epoch": 1}\n'


def _checkpoints(tmp_path):
    arrays = {name: np.full(4, k, dtype=np.float32) for k, name in enumerate(checkpoint.ARRAYS)}
    for epochs in (1, 2, 3):
        checkpoint.save(tmp_path, epochs, {k: v + epochs for k, v in arrays.items()}, {"merges": epochs})
    return tmp_path / "epoch-00003.npz"


DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "garbage": lambda data: b"\x00" * len(data),
    "one bit flipped in the zip directory": lambda data: data[:-30] + bytes([data[-30] ^ 0xFF]) + data[-29:],
}


def test_a_damaged_complete_line_is_named_and_the_cli_says_so_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from dtrain.cli.main import app
    from dtrain.cluster.jobstore import JobStore, local_owner
    from dtrain.errors import UserError
    from dtrain.files import DamagedFile
    from dtrain.spec import JobSpec

    store = JobStore(tmp_path / "storage")
    job = store.create(JobSpec(workers=1, epochs=3), local_owner())
    path = store.job_dir(job.id) / "metrics.jsonl"
    for epoch in (1, 2, 3):
        append_jsonl(path, {"epoch": epoch})
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b'{"epoch": 2, "te\n' + lines[2])  # an edit, or a bad disk: not the torn last line

    with pytest.raises(DamagedFile, match=r"metrics.jsonl: line 2 is not a JSON record"):
        read_jsonl(path)
    with pytest.raises(UserError, match=r"line 2 is not a JSON record"):
        store.metrics(job.id)
    result = CliRunner().invoke(app, ["logs", job.id, "--local", "--storage", str(tmp_path / "storage")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [f"error: {path}: line 2 is not a JSON record (the file is damaged or was edited)"]
    assert store.load(job.id).id == job.id and path.read_bytes().count(b"\n") == 3  # nothing was lost or rewritten


@pytest.mark.parametrize("damage", DAMAGE)
def test_checkpoint_load_falls_back_past_a_damaged_file_to_the_one_before(tmp_path, damage):
    newest = _checkpoints(tmp_path)
    newest.write_bytes(DAMAGE[damage](newest.read_bytes()))
    arrays, info = checkpoint.load(tmp_path, at_most=3)
    assert info["epochs_done"] == 2 and info["merges"] == 2
    assert arrays["global_theta"].tolist() == [2.0] * 4


def test_checkpoint_load_falls_back_past_one_missing_an_array_or_with_bad_info(tmp_path):
    newest = _checkpoints(tmp_path)
    np.savez(newest, info=np.array(json.dumps({"epochs_done": 3})), global_theta=np.zeros(4, np.float32))
    assert checkpoint.load(tmp_path, at_most=3)[1]["epochs_done"] == 2
    (tmp_path / "epoch-00002.npz").write_bytes(b"PK\x03\x04 not really")
    assert checkpoint.load(tmp_path, at_most=3)[1]["epochs_done"] == 1
    assert checkpoint.load(tmp_path, at_most=0) is None
