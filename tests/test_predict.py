"""`dtrain predict` on real MNIST digits: as .npy arrays, an IDX file and pictures."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dtrain.cli.main import app
from dtrain.data.images import load_images, mnist_like
from dtrain.model import load_model
from dtrain.model.kernels import sgd
from dtrain.model.mlp import he_init, layer_sizes
from dtrain.model.sgd_setup import SGDSetup
from dtrain.model.sparse import SparseRows
from dtrain.model.weights import save_weights

runner = CliRunner()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, mnist):
    """A model trained for one epoch on MNIST in this process (~97% test accuracy)."""
    sizes = layer_sizes(784, (64,), 10)
    theta = he_init(sizes, np.random.default_rng(0))
    sgd("numba", theta, SGDSetup(sizes, "relu", SparseRows.from_dense(mnist.x_train), mnist.y_train, 0.01), np.arange(60000))
    path = tmp_path_factory.mktemp("model") / "model.npz"
    save_weights(path, theta, sizes, {"activation": "relu", "input_scale": 1 / 255, "image_shape": [28, 28]})
    return path


def predict(*args: str):
    return runner.invoke(app, ["predict", *args], catch_exceptions=False)


def test_npy_and_idx_digits_get_the_models_own_answer(model_file, mnist, tmp_path):
    model = load_model(model_file)
    digits = mnist.x_test[:20]
    expected = model.predict(digits)
    np.save(tmp_path / "one.npy", digits[0].reshape(28, 28))
    np.save(tmp_path / "batch.npy", digits)
    with gzip.open(tmp_path / "digits-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, 20, 28, 28) + digits.tobytes())

    result = predict(str(model_file), str(tmp_path / "one.npy"), str(tmp_path / "batch.npy"), str(tmp_path / "digits-idx3-ubyte.gz"), "--json")
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)["predictions"]
    assert [p["label"] for p in predictions] == [expected[0], *expected, *expected]
    first = predictions[0]
    assert [t["label"] for t in first["top3"]][0] == first["label"] and len(first["top3"]) == 3
    assert first["top3"][0]["p"] >= first["top3"][1]["p"] >= first["top3"][2]["p"]

    human = predict(str(model_file), str(tmp_path / "one.npy"))
    assert human.exit_code == 0
    assert human.stdout.startswith(f"{tmp_path / 'one.npy'}: {expected[0]}  p = ")
    assert any(ch in human.stdout for ch in "%@#")  # the digit is drawn


def test_pictures_dark_on_light_and_any_size_are_read_like_mnist(model_file, mnist, tmp_path):
    """Clear test digits, drawn 5x larger in black on white, are classified as the model classifies the originals."""
    model = load_model(model_file)
    p = model.predict_proba(mnist.x_test[:200])
    clear = [i for i in np.flatnonzero(p.max(axis=1) > 0.999)[:10]]
    paths = []
    for i in clear:
        picture = np.kron(255 - mnist.x_test[i].reshape(28, 28), np.ones((5, 5), dtype=np.uint8))
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(picture).save(path)
        paths.append(str(path))
    result = predict(str(model_file), *paths, "--json")
    assert result.exit_code == 0, result.output
    labels = [r["label"] for r in json.loads(result.stdout)["predictions"]]
    assert labels == [int(model.predict(mnist.x_test[i])) for i in clear]
    assert load_images(paths[0]).shape == (1, 28, 28)


def test_mnist_like_centres_and_scales_the_digit():
    square = np.full((100, 60), 255, dtype=np.uint8)
    square[10:90, 40:50] = 0  # a dark bar off to the right on white paper
    digit = mnist_like(square)
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    rows, cols = np.flatnonzero(digit.max(axis=1) > 40), np.flatnonzero(digit.max(axis=0) > 40)
    assert rows[-1] - rows[0] + 1 == 20  # the longer side is 20 pixels
    assert abs((rows[0] + rows[-1]) / 2 - 13.5) <= 1 and abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1  # centred


@pytest.mark.parametrize(
    ("content", "name", "expected"),
    [
        (b"hello", "notimage.png", "not an image (PNG, JPEG, ...), an IDX file or a .npy array"),
        (None, "missing.png", "no such file"),
        ("blank", "blank.png", "no digit found: the picture is blank"),
        ("small", "small.npy", "images of 10x10 pixels do not fit this model: it takes 784 (28x28)"),
        ("floats", "floats.npy", "float pixels must be finite and in [0, 1]"),
    ],
)
def test_bad_inputs_get_one_line_naming_the_file(model_file, tmp_path, content, name, expected):
    path = tmp_path / name
    if content == "blank":
        Image.fromarray(np.full((40, 40), 255, dtype=np.uint8)).save(path)
    elif content == "small":
        np.save(path, np.zeros((3, 10, 10), dtype=np.uint8))
    elif content == "floats":
        np.save(path, np.full((28, 28), 3.0))
    elif content is not None:
        path.write_bytes(content)
    result = predict(str(model_file), str(path))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}") and expected in lines[0], lines


def test_the_plain_numpy_example_agrees_with_dtrain_predict(model_file, mnist, tmp_path):
    """examples/infer_numpy.py, run as a user would (a new Python, no dtrain import), gives dtrain predict's labels."""
    digits = tmp_path / "digits.npy"
    np.save(digits, mnist.x_test[:50])
    script = Path(__file__).parent.parent / "examples" / "infer_numpy.py"
    proc = subprocess.run([sys.executable, "-I", str(script), str(model_file), str(digits)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    labels = [int(line) for line in proc.stdout.split()]
    result = predict(str(model_file), str(digits), "--json")
    assert labels == [p["label"] for p in json.loads(result.stdout)["predictions"]]
    assert len(labels) == 50


def test_show_draws_dataset_digits_with_their_labels(mnist):
    result = runner.invoke(app, ["show", "--index", "0..2"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "test #0" in result.stdout and "label 7" in result.stdout and "label 2" in result.stdout
    assert any(ch in result.stdout for ch in "%@#")
    shown = json.loads(runner.invoke(app, ["show", "--index", "5,8", "--dataset", "train", "--json"]).stdout)
    assert [(d["index"], d["label"]) for d in shown] == [(5, int(mnist.y_train[5])), (8, int(mnist.y_train[8]))]
    assert shown[0]["pixels"] == mnist.x_train[5].reshape(-1).tolist()
    for args, message in [
        (["--index", "9999..10001"], "error: --index: 9999..10001 is not a range within 0..9999"),
        (["--index", "abc"], "error: --index: expected N, N..M or a comma-separated list of them, got 'abc'"),
        (["--dataset", "dev"], "error: --dataset: expected test or train, got 'dev'"),
    ]:
        bad = runner.invoke(app, ["show", *args])
        assert bad.exit_code == 2 and bad.stderr.strip() == message


def test_report_sparkline_and_confusion_table():
    from dtrain.cli.report import confusion_table, sparkline

    assert sparkline([0.90, 0.95, 0.97, 0.98]) == "▁▅▇█"
    m = [[5, 0, 3], [1, 7, 0], [0, 2, 9]]
    table = confusion_table(m, worst=1)
    assert [c.header for c in table.columns] == ["true", "0", "1", "2"]
    row0 = [c._cells[0] for c in table.columns[1:]]
    assert row0 == ["[bold green]5[/]", "[dim]0[/]", "[bold red]3[/]"]  # the diagonal, a zero, the worst mistake


def test_predict_graphics_off_a_terminal_draws_text_and_says_why(model_file, mnist, tmp_path):
    np.save(tmp_path / "seven.npy", mnist.x_test[0].reshape(28, 28))
    result = predict(str(model_file), str(tmp_path / "seven.npy"), "--graphics")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == "--graphics: stdout is not a terminal; digits are drawn as text"
    assert "-> 7" in result.stdout and "\x1bPq" not in result.stdout and any(ch in result.stdout for ch in "%@#")


def test_predict_graphics_on_a_terminal_that_draws_sixels(model_file, mnist, tmp_path):
    from test_sixel import run_in_terminal

    np.save(tmp_path / "digits.npy", mnist.x_test[:2])
    output = run_in_terminal(["predict", str(model_file), str(tmp_path / "digits.npy"), "--graphics"], answer=b"\x1b[?62;4;22c")
    assert output.count(b"\x1bPq") == 2 and b"digits.npy[0]  -> 7" in output and b"digits.npy[1]  -> 2" in output
