"""Weight files and inference: dtrain.model.weights and dtrain.model.inference.

Covers the .npz format (round trip, plain-NumPy readability, atomic save), every
refusal of read_weights (each a one-line WeightsError naming the file), that
pickled payloads are never unpickled, load_model/predict on every accepted image
layout, and a hypothesis fuzz of corrupted files.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dtrain import __version__
from dtrain.errors import UserError
from dtrain.model import Model, WeightsError, load_model, read_weights, save_weights
from dtrain.model import mlp

SIZES = (784, 64, 10)
DEEP_SIZES = (784, 32, 16, 10)
USER_META = {
    "activation": "relu",
    "input_scale": 1 / 255,
    "image_shape": [28, 28],
    "dataset": "mnist",
    "test_accuracy": 0.9,
}
_DROP = object()


# ------------------------------------------------------------------ helpers


def make_theta(sizes, seed=0, biases=True):
    """He-initialised theta; with biases=True the (zero) biases are made random too."""
    rng = np.random.default_rng(seed)
    theta = mlp.he_init(sizes, rng)
    if biases:
        for _, b in mlp.unflatten(theta, sizes):
            b[...] = rng.normal(0.0, 0.1, size=b.shape)
    return theta


def full_meta(sizes=SIZES, **changes):
    """A valid on-disk metadata dict; a value of _DROP removes that key."""
    meta = {
        "format": "dtrain-mlp",
        "format_version": 1,
        "layer_sizes": list(sizes),
        "dtrain_version": __version__,
        **USER_META,
    }
    for key, value in changes.items():
        if value is _DROP:
            meta.pop(key, None)
        else:
            meta[key] = value
    return meta


def layer_arrays(sizes=SIZES, seed=0):
    """{'W1': ..., 'b1': ..., ...} as float32 copies."""
    arrays = {}
    for l, (W, b) in enumerate(mlp.unflatten(make_theta(sizes, seed), sizes), start=1):
        arrays[f"W{l}"] = W.copy()
        arrays[f"b{l}"] = b.copy()
    return arrays


def write_npz(path: Path, meta, arrays) -> Path:
    """A hand-built .npz: meta is a dict (stored as JSON), an ndarray (stored as is), or None (left out)."""
    entries = {}
    if isinstance(meta, dict):
        entries["metadata"] = np.array(json.dumps(meta))
    elif meta is not None:
        entries["metadata"] = meta
    entries.update(arrays)
    with open(path, "wb") as f:
        np.savez(f, **entries)
    return path


def assert_refused(path, *phrases) -> str:
    """read_weights(path) raises a one-line WeightsError naming the file and containing every phrase."""
    with pytest.raises(WeightsError) as info:
        read_weights(path)
    assert isinstance(info.value, UserError)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    for phrase in phrases:
        assert phrase in msg, f"{phrase!r} not in {msg!r}"
    return msg


def central_directory(data: bytes) -> int:
    """Offset of the first central-directory header of a zip."""
    offset = data.find(b"PK\x01\x02")
    assert offset > 0
    return offset


# --------------------------------------------------------------- round trip


@pytest.mark.parametrize("sizes", [SIZES, DEEP_SIZES], ids=["784-64-10", "784-32-16-10"])
def test_round_trip_is_bitwise_and_keeps_metadata(tmp_path, sizes):
    theta = mlp.he_init(sizes, np.random.default_rng(42))
    path = tmp_path / "model.npz"
    save_weights(path, theta, sizes, dict(USER_META))

    theta2, meta = read_weights(path)
    assert theta2.dtype == np.float32
    assert theta2.shape == theta.shape
    assert theta2.tobytes() == theta.tobytes()

    assert meta["format"] == "dtrain-mlp"
    assert meta["format_version"] == 1
    assert meta["layer_sizes"] == list(sizes)
    assert meta["dtrain_version"] == __version__
    for key, value in USER_META.items():
        assert meta[key] == value, key
    assert meta["input_scale"] == 1 / 255  # exactly, through JSON


@pytest.mark.parametrize("sizes", [SIZES, DEEP_SIZES], ids=["784-64-10", "784-32-16-10"])
def test_file_is_a_plain_zip_of_npy_members_readable_without_pickle(tmp_path, sizes):
    theta = mlp.he_init(sizes, np.random.default_rng(1))
    path = tmp_path / "model.npz"
    save_weights(path, theta, sizes, dict(USER_META))

    n_layers = len(sizes) - 1
    expected = ["metadata.npy"] + [f"{p}{l}.npy" for l in range(1, n_layers + 1) for p in ("W", "b")]
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
    assert sorted(names) == sorted(expected)
    assert len(names) == len(set(names))

    params = mlp.unflatten(theta, sizes)
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted(n[: -len(".npy")] for n in expected)
        raw = archive["metadata"]
        assert raw.shape == () and raw.dtype.kind == "U"
        assert json.loads(str(raw))["layer_sizes"] == list(sizes)
        for l, (W, b) in enumerate(params, start=1):
            Wf, bf = archive[f"W{l}"], archive[f"b{l}"]
            assert Wf.dtype == np.float32 and bf.dtype == np.float32
            assert Wf.shape == (sizes[l - 1], sizes[l]) and bf.shape == (sizes[l],)
            np.testing.assert_array_equal(Wf, W)
            np.testing.assert_array_equal(bf, b)


def test_save_casts_float64_theta_to_float32(tmp_path):
    sizes = (784, 8, 10)
    theta64 = make_theta(sizes).astype(np.float64)
    save_weights(tmp_path / "m.npz", theta64, sizes, dict(USER_META))
    theta, _ = read_weights(tmp_path / "m.npz")
    assert theta.dtype == np.float32
    np.testing.assert_array_equal(theta, theta64.astype(np.float32))


# ------------------------------------------------------------------ atomic save


def test_save_leaves_no_temp_files_and_creates_parents(tmp_path):
    path = tmp_path / "run" / "sub" / "model.npz"
    save_weights(path, make_theta(SIZES), SIZES, dict(USER_META))
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_save_over_existing_file_replaces_it(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old junk that is not a weights file")
    theta1 = make_theta(SIZES, seed=1)
    save_weights(path, theta1, SIZES, dict(USER_META))
    np.testing.assert_array_equal(read_weights(path)[0], theta1)

    theta2 = make_theta(DEEP_SIZES, seed=2)
    save_weights(path, theta2, DEEP_SIZES, {**USER_META, "activation": "sigmoid"})
    got, meta = read_weights(path)
    assert got.tobytes() == theta2.tobytes()
    assert meta["layer_sizes"] == list(DEEP_SIZES) and meta["activation"] == "sigmoid"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_failed_save_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    theta = make_theta(SIZES)
    save_weights(path, theta, SIZES, dict(USER_META))
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save_weights(path, make_theta(SIZES, seed=9), SIZES, dict(USER_META))
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_save_rejects_theta_of_wrong_length_without_leaving_files(tmp_path):
    with pytest.raises(ValueError):
        save_weights(tmp_path / "model.npz", np.zeros(10, np.float32), SIZES, dict(USER_META))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_saved_file_has_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "model.npz"
        save_weights(path, make_theta(SIZES), SIZES, dict(USER_META))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


# ------------------------------------------------------------------ refusals


def test_refuses_missing_file(tmp_path):
    assert_refused(tmp_path / "nope.npz", "no such file")


def test_refuses_directory(tmp_path):
    d = tmp_path / "model.npz"
    d.mkdir()
    assert_refused(d, "is a directory")


@pytest.mark.parametrize(
    "content",
    [
        b"hello, this is a text file\nwith two lines\n",
        b"",
        bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8)),
        b"PK\x03\x04" + b"\x00" * 40,  # a zip's magic, then nothing sensible
        pickle.dumps({"W1": [1, 2, 3]}),
    ],
    ids=["text", "empty", "random-bytes", "zip-magic-only", "pickle"],
)
def test_refuses_files_that_are_not_npz(tmp_path, content):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    assert_refused(path, "not a dtrain weights file")


def test_refuses_single_npy(tmp_path):
    path = tmp_path / "model.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((784, 64), np.float32))
    assert_refused(path, "single .npy")


class _Payload:
    """Unpickling this creates a marker file: proof that something was unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_payload_really_runs_when_unpickled(tmp_path):
    # Control: the payload used below is live, so its absence later means "never unpickled".
    marker = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(_Payload(str(marker)))).close()
    assert marker.exists()


@pytest.mark.parametrize("where", ["metadata", "W1"])
@pytest.mark.parametrize("kind", ["dict-array", "payload"])
def test_refuses_pickled_object_arrays_without_unpickling(tmp_path, where, kind):
    marker = tmp_path / "UNPICKLED"
    if kind == "payload":
        obj = np.empty(1, dtype=object)
        obj[0] = _Payload(str(marker))
    else:
        obj = np.array([{"a": 1}], dtype=object)
    path = tmp_path / "model.npz"
    arrays = layer_arrays()
    if where == "metadata":
        write_npz(path, obj, arrays)
    else:
        arrays["W1"] = obj
        write_npz(path, full_meta(), arrays)
    # The file does hold a pickled object array (otherwise this test proves nothing).
    with zipfile.ZipFile(path) as zf:
        assert b"'descr': '|O'" in zf.read(f"{where}.npy")[:128]

    msg = assert_refused(path, "unreadable array")
    assert "pickle" in msg.lower() or "object" in msg.lower(), msg
    assert not marker.exists(), "read_weights unpickled the payload"
    with pytest.raises(WeightsError):
        load_model(path)
    assert not marker.exists(), "load_model unpickled the payload"


def test_refuses_missing_metadata(tmp_path):
    path = write_npz(tmp_path / "model.npz", None, layer_arrays())
    assert_refused(path, "no 'metadata' entry")


@pytest.mark.parametrize(
    "meta",
    [np.array(b'{"format": "dtrain-mlp"}'), np.array(["{}", "{}"]), np.array(3.0)],
    ids=["bytes", "1-d", "float"],
)
def test_refuses_metadata_that_is_not_a_string(tmp_path, meta):
    path = write_npz(tmp_path / "model.npz", meta, layer_arrays())
    assert_refused(path, "'metadata' must be a JSON string")


@pytest.mark.parametrize("text", ["not json at all", '{"format": "dtrain-mlp",', ""])
def test_refuses_metadata_not_json(tmp_path, text):
    path = write_npz(tmp_path / "model.npz", np.array(text), layer_arrays())
    assert_refused(path, "'metadata' is not valid JSON")


@pytest.mark.parametrize("meta_json", ['["format", "dtrain-mlp"]', '"dtrain-mlp"', "null", "42"])
def test_refuses_metadata_that_is_not_an_object(tmp_path, meta_json):
    path = write_npz(tmp_path / "model.npz", np.array(meta_json), layer_arrays())
    assert_refused(path, "'format' must be 'dtrain-mlp'")


@pytest.mark.parametrize("fmt", ["keras-h5", "", None, _DROP], ids=["other", "empty", "null", "missing"])
def test_refuses_wrong_format(tmp_path, fmt):
    path = write_npz(tmp_path / "model.npz", full_meta(format=fmt), layer_arrays())
    assert_refused(path, "'format' must be 'dtrain-mlp'")


@pytest.mark.parametrize("version", [2, 0, "1", None, _DROP], ids=["2", "0", "str", "null", "missing"])
def test_refuses_unknown_format_version(tmp_path, version):
    path = write_npz(tmp_path / "model.npz", full_meta(format_version=version), layer_arrays())
    shown = "None" if version is _DROP else repr(version)
    assert_refused(path, "unknown format_version", f"format_version {shown}", "reads version 1")


@pytest.mark.parametrize(
    "sizes",
    ["784-64-10", {"0": 784}, 784, None, _DROP, [784], [], [784, -64, 10], [784, 0, 10],
     [784, 64.0, 10], [784, "64", 10], [784, True, 10]],
    ids=["str", "dict", "int", "null", "missing", "one", "empty", "negative", "zero",
         "float", "str-item", "bool"],
)
def test_refuses_bad_layer_sizes(tmp_path, sizes):
    path = write_npz(tmp_path / "model.npz", full_meta(layer_sizes=sizes), layer_arrays())
    assert_refused(path, "'layer_sizes' must be a list of at least two integers from 1 to")


@pytest.mark.parametrize("activation", ["tanh", "RELU", None, 1, _DROP])
def test_refuses_unknown_activation(tmp_path, activation):
    path = write_npz(tmp_path / "model.npz", full_meta(activation=activation), layer_arrays())
    assert_refused(path, "'activation' must be one of", "relu", "sigmoid")


@pytest.mark.parametrize("scale", [0, -1 / 255, "1/255", None, float("nan"), float("inf")])
def test_refuses_bad_input_scale(tmp_path, scale):
    path = write_npz(tmp_path / "model.npz", full_meta(input_scale=scale), layer_arrays())
    assert_refused(path, "'input_scale' must be a positive number")


def test_refuses_huge_integer_input_scale(tmp_path):
    path = write_npz(tmp_path / "model.npz", full_meta(input_scale=10**400), layer_arrays())
    assert_refused(path, "'input_scale'")


def test_refuses_absurd_layer_sizes_without_allocating(tmp_path):
    path = write_npz(tmp_path / "model.npz", full_meta(layer_sizes=[10**7, 10**7, 10]), layer_arrays())
    assert_refused(path)


@pytest.mark.parametrize("missing", ["b2", "W2", "W1", "b1"])
def test_refuses_missing_array(tmp_path, missing):
    arrays = layer_arrays()
    del arrays[missing]
    path = write_npz(tmp_path / "model.npz", full_meta(), arrays)
    assert_refused(path, f"missing array {missing!r}")


def test_refuses_missing_layer_for_deeper_layer_sizes(tmp_path):
    # The arrays of a 784-64-10 model, with metadata claiming 784-64-10-10.
    path = write_npz(tmp_path / "model.npz", full_meta(layer_sizes=[784, 64, 10, 10]), layer_arrays())
    assert_refused(path, "missing array 'W3'")


@pytest.mark.parametrize(
    "name, shape, expected",
    [("W1", (783, 64), (784, 64)), ("W1", (64, 784), (784, 64)), ("W1", (784 * 64,), (784, 64)),
     ("b1", (65,), (64,)), ("b2", (1, 10), (10,)), ("W2", (64, 10, 1), (64, 10))],
)
def test_refuses_misshaped_array(tmp_path, name, shape, expected):
    arrays = layer_arrays()
    arrays[name] = np.zeros(shape, np.float32)
    path = write_npz(tmp_path / "model.npz", full_meta(), arrays)
    assert_refused(path, f"array {name!r}", str(shape), str(expected))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.complex64])
def test_refuses_non_float_dtype(tmp_path, dtype):
    arrays = layer_arrays()
    arrays["W2"] = arrays["W2"].astype(dtype)
    path = write_npz(tmp_path / "model.npz", full_meta(), arrays)
    assert_refused(path, "array 'W2'", f"dtype {np.dtype(dtype)}", "floating point")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ["W1", "b2"])
def test_refuses_nan_and_inf(tmp_path, bad, name):
    arrays = layer_arrays()
    arrays[name].flat[3] = bad
    path = write_npz(tmp_path / "model.npz", full_meta(), arrays)
    assert_refused(path, f"array {name!r}", "NaN or infinite")


def test_accepts_other_float_dtypes_as_float32(tmp_path):
    arrays = layer_arrays()
    arrays["W1"] = arrays["W1"].astype(np.float64)
    arrays["b2"] = arrays["b2"].astype(np.float16)
    expected = np.concatenate([a.astype(np.float32).ravel() for a in arrays.values()])
    path = write_npz(tmp_path / "model.npz", full_meta(), arrays)
    theta, _ = read_weights(path)
    assert theta.dtype == np.float32
    np.testing.assert_array_equal(theta, expected)


def test_float64_values_beyond_float32_range_do_not_become_inf(tmp_path):
    arrays = layer_arrays()
    arrays["W1"] = arrays["W1"].astype(np.float64)
    arrays["W1"][0, 0] = 1e300
    path = write_npz(tmp_path / "model.npz", full_meta(), arrays)
    with np.errstate(over="ignore"):
        try:
            theta, _ = read_weights(path)
        except WeightsError as e:
            assert "\n" not in str(e) and str(path) in str(e) and "'W1'" in str(e)
            return
    assert np.all(np.isfinite(theta)), "read_weights returned a theta holding inf"


@pytest.mark.parametrize("extra", ["W3", "b3", "notes", "metadata_old"])
def test_refuses_unexpected_extra_array(tmp_path, extra):
    arrays = layer_arrays()
    arrays[extra] = np.zeros(3, np.float32)
    path = write_npz(tmp_path / "model.npz", full_meta(), arrays)
    assert_refused(path, "unexpected arrays", repr(extra))


def test_hand_built_valid_file_is_accepted(tmp_path):
    # The helpers above build a valid file; every refusal test changes exactly one thing.
    arrays = layer_arrays()
    path = write_npz(tmp_path / "model.npz", full_meta(), arrays)
    theta, meta = read_weights(path)
    np.testing.assert_array_equal(theta, np.concatenate([a.ravel() for a in arrays.values()]))
    assert meta == full_meta()


def test_load_model_propagates_weights_error(tmp_path):
    path = tmp_path / "model.npz"
    path.write_text("nope")
    with pytest.raises(WeightsError, match="not a dtrain weights file"):
        load_model(path)


# ---------------------------------------------------------- load_model, predict

N_BATCH = 7


@pytest.fixture(scope="module", params=["relu", "sigmoid"])
def saved_model(request, tmp_path_factory):
    """(Model, params, activation) for a 784-32-16-10 model with random weights and biases."""
    sizes = DEEP_SIZES
    theta = make_theta(sizes, seed=5)
    path = tmp_path_factory.mktemp("model") / "model.npz"
    save_weights(path, theta, sizes, {**USER_META, "activation": request.param})
    return load_model(path), mlp.unflatten(theta.copy(), sizes), request.param


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(11)
    return rng.integers(0, 256, size=(N_BATCH, 28, 28), dtype=np.uint8)


def expected_proba(params, activation, images_u8):
    x = images_u8.reshape(-1, 784).astype(np.float64) / 255
    return mlp.predict_proba(params, x.astype(np.float32), activation)


def test_load_model_returns_model_with_metadata(saved_model):
    model, _, activation = saved_model
    assert isinstance(model, Model)
    assert model.layer_sizes == DEEP_SIZES
    assert model.n_inputs == 784
    assert model.activation == activation
    assert model.metadata["dataset"] == "mnist"


def test_predict_one_28x28_image(saved_model, images):
    model, params, activation = saved_model
    img = images[0]
    p = model.predict_proba(img)
    assert p.shape == (10,)
    np.testing.assert_allclose(p, expected_proba(params, activation, img)[0], atol=1e-6)
    assert abs(float(p.sum()) - 1) < 1e-5
    label = model.predict(img)
    assert type(label) is int
    assert label == int(np.argmax(expected_proba(params, activation, img)[0]))


def test_predict_one_flat_image(saved_model, images):
    model, params, activation = saved_model
    img = images[1].reshape(784)
    p = model.predict_proba(img)
    assert p.shape == (10,)
    np.testing.assert_allclose(p, expected_proba(params, activation, img)[0], atol=1e-6)
    label = model.predict(img)
    assert type(label) is int and label == int(p.argmax())
    assert label == model.predict(images[1])


@pytest.mark.parametrize("layout", ["nx28x28", "nx784"])
def test_predict_batch(saved_model, images, layout):
    model, params, activation = saved_model
    batch = images if layout == "nx28x28" else images.reshape(N_BATCH, 784)
    p = model.predict_proba(batch)
    assert p.shape == (N_BATCH, 10)
    expected = expected_proba(params, activation, images)
    np.testing.assert_allclose(p, expected, atol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)
    labels = model.predict(batch)
    assert labels.shape == (N_BATCH,)
    np.testing.assert_array_equal(labels, expected.argmax(axis=1))
    # per-image and batch predictions agree
    assert [model.predict(img) for img in images] == labels.tolist()


def test_predictions_are_not_trivial(saved_model, images):
    # Guard: with random weights and biases the probabilities differ between images.
    model, _, _ = saved_model
    p = model.predict_proba(images)
    assert np.ptp(p, axis=0).max() > 1e-3


def test_float_input_in_unit_range_equals_uint8_over_255(saved_model, images):
    model, _, _ = saved_model
    as_float = images.astype(np.float32) / np.float32(255)
    np.testing.assert_allclose(model.predict_proba(as_float), model.predict_proba(images), atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(as_float.astype(np.float64)), model.predict_proba(images), atol=1e-6)
    np.testing.assert_array_equal(model.predict(as_float), model.predict(images))
    np.testing.assert_allclose(model.predict_proba(as_float[0]), model.predict_proba(images[0]), atol=1e-6)


@pytest.mark.parametrize(
    "shape", [(27, 27), (5, 100), (783,), (785,), (2, 27, 27), (3, 783), (), (2, 2, 28, 28)]
)
def test_wrong_shapes_raise_user_error(saved_model, shape):
    model, _, _ = saved_model
    x = np.zeros(shape, np.uint8)
    for fn in (model.predict, model.predict_proba):
        with pytest.raises(UserError, match="784 pixels") as info:
            fn(x)
        assert "\n" not in str(info.value)
        assert str(shape) in str(info.value)


@pytest.mark.parametrize(
    "x",
    [np.full((28, 28), "a"), np.full((3, 784), "7"), np.zeros(784, dtype=bool), np.empty((28, 28), dtype=object)],
    ids=["str-28x28", "str-batch", "bool", "object-none"],
)
def test_non_numeric_dtype_raises_user_error(saved_model, x):
    model, _, _ = saved_model
    for fn in (model.predict, model.predict_proba):
        with pytest.raises(UserError, match="dtype") as info:
            fn(x)
        assert "\n" not in str(info.value)


def test_int64_pixels_are_scaled_or_refused(saved_model, images):
    model, _, _ = saved_model
    try:
        with np.errstate(over="ignore"):
            p = model.predict_proba(images.astype(np.int64))
    except UserError:
        return
    np.testing.assert_allclose(p, model.predict_proba(images), atol=1e-6)


# ------------------------------------------------------------ corrupted files

FUZZ_SIZES = (12, 5, 3)


def _valid_file_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.npz"
        save_weights(path, make_theta(FUZZ_SIZES, seed=7), FUZZ_SIZES, dict(USER_META))
        return path.read_bytes()


VALID = _valid_file_bytes()


def _flip(changes) -> bytes:
    data = bytearray(VALID)
    for index, mask in changes:
        data[index] ^= mask
    return bytes(data)


_index = st.integers(0, len(VALID) - 1)
_flips = st.lists(st.tuples(_index, st.integers(1, 255)), min_size=1, max_size=8)
corrupted_files = st.one_of(
    _index.map(lambda n: VALID[:n]),  # truncated
    _flips.map(_flip),  # random bytes flipped
    st.binary(min_size=1, max_size=256).map(lambda tail: VALID + tail),  # bytes appended
    st.tuples(_flips, _index).map(lambda t: _flip(t[0])[: t[1]]),  # flipped and truncated
    st.binary(max_size=2048),  # random bytes
    st.binary(max_size=512).map(lambda b: b"PK\x03\x04" + b),  # random after a zip magic
    st.binary(max_size=512).map(lambda b: b"\x93NUMPY" + b),  # random after a .npy magic
)


def test_fuzz_base_file_is_valid():
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.npz"
        path.write_bytes(VALID)
        theta, _ = read_weights(path)
        np.testing.assert_array_equal(theta, make_theta(FUZZ_SIZES, seed=7))


@settings(max_examples=150, deadline=None, database=None)
@given(data=corrupted_files)
def test_corrupted_files_give_weights_or_weights_error(data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.npz"
        path.write_bytes(data)
        try:
            theta, meta = read_weights(path)
        except WeightsError as e:
            msg = str(e)
            assert "\n" not in msg and str(path) in msg, msg
        else:
            assert isinstance(meta, dict)
            assert theta.dtype == np.float32
            assert theta.shape == (mlp.n_params(meta["layer_sizes"]),)
            assert np.all(np.isfinite(theta))


def _set_byte(offset_from_cd: int, value: int | None = None, or_mask: int = 0) -> bytes:
    data = bytearray(VALID)
    i = central_directory(VALID) + offset_from_cd
    data[i] = value if value is not None else data[i] | or_mask
    return bytes(data)


@pytest.mark.parametrize(
    "data",
    [
        _set_byte(6, value=0xFF),  # "version needed to extract" -> NotImplementedError in np.load (line 76)
        _set_byte(10, value=99),  # compression method 99 -> NotImplementedError on reading (line 85)
        _set_byte(8, or_mask=0x01),  # "encrypted" flag -> RuntimeError on reading (line 85)
    ],
    ids=["zip-version", "compression-method", "encrypted-flag"],
)
def test_corrupt_zip_headers_raise_weights_error(tmp_path, data):
    path = tmp_path / "model.npz"
    path.write_bytes(data)
    assert_refused(path)
