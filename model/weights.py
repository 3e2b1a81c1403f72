"""Weight files: a plain ``.npz`` of arrays plus one JSON metadata entry.

Layout (format version 1), all arrays float32 unless said otherwise:

    metadata   0-d unicode array holding a JSON object:
               {"format": "dtrain-mlp", "format_version": 1, "layer_sizes": [784, 64, 10],
                "activation": "relu", "input_scale": 1/255, "image_shape": [28, 28],
                "dataset": "mnist", "test_accuracy": 0.981, "dtrain_version": "0.1.0"}
    W1, b1     first layer: (784, 64) and (64,);   z1 = x @ W1 + b1, a1 = f(z1)
    W2, b2     next layer:  (64, 10) and (10,);    output = softmax(a1 @ W2 + b2)
    ...        one W/b pair per layer

Files are read with ``allow_pickle=False``: nothing in them can run code.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from dtrain import __version__
from dtrain.errors import UserError
from dtrain.model.mlp import ACTIVATIONS

FORMAT = "dtrain-mlp"
FORMAT_VERSION = 1
MAX_LAYER = 1 << 20  # far above any sensible MLP; refuses absurd sizes before reading arrays


class WeightsError(UserError):
    """A weights file that is not a dtrain model, or not a sound one."""


def save_weights(path: str | Path, theta: np.ndarray, sizes: tuple[int, ...], metadata: dict[str, Any]) -> None:
    """Write theta as W1, b1, ... plus metadata, atomically (write to a temp file, then rename)."""
    from dtrain.model.mlp import unflatten

    meta = {
        "dtrain_version": __version__,
        **metadata,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "layer_sizes": [int(n) for n in sizes],
    }
    arrays: dict[str, np.ndarray] = {"metadata": np.array(json.dumps(meta, sort_keys=True))}
    for l, (W, b) in enumerate(unflatten(theta.astype(np.float32, copy=False), sizes), start=1):
        arrays[f"W{l}"] = W
        arrays[f"b{l}"] = b
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only; a model is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# zipfile raises NotImplementedError / RuntimeError for unsupported or "encrypted" headers.
_READ_ERRORS = (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError, NotImplementedError, RuntimeError)


def read_weights(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read and check a weights file; returns (flat theta, metadata). Raises WeightsError."""
    path = Path(path)
    where = str(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise WeightsError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise WeightsError(f"{where}: is a directory, expected a .npz weights file") from None
    except OSError as e:
        raise WeightsError(f"{where}: cannot read: {e.strerror}") from None
    if magic != b"PK\x03\x04":
        kind = "a single .npy array" if magic == b"\x93NUM" else "not a zip archive"
        raise WeightsError(f"{where}: not a dtrain weights file (.npz of arrays): {kind}")
    try:
        archive = np.load(path, allow_pickle=False)  # a zip, so an NpzFile
    except _READ_ERRORS as e:
        raise WeightsError(f"{where}: not a dtrain weights file (.npz of arrays): {_first_line(e)}") from None
    with archive:
        try:
            return _check(archive, where)
        except WeightsError:
            raise
        except _READ_ERRORS as e:
            # allow_pickle=False refuses object arrays with a ValueError
            raise WeightsError(f"{where}: unreadable array: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def _check(archive: np.lib.npyio.NpzFile, where: str) -> tuple[np.ndarray, dict[str, Any]]:
    if "metadata" not in archive.files:
        raise WeightsError(f"{where}: no 'metadata' entry: not a dtrain weights file")
    raw = archive["metadata"]
    if raw.dtype.kind != "U" or raw.shape != ():
        raise WeightsError(f"{where}: 'metadata' must be a JSON string")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as e:
        raise WeightsError(f"{where}: 'metadata' is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise WeightsError(f"{where}: metadata 'format' must be {FORMAT!r}")
    version = meta.get("format_version")
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise WeightsError(
            f"{where}: unknown format_version {meta.get('format_version')!r}: this dtrain reads version {FORMAT_VERSION}"
        )
    sizes = meta.get("layer_sizes")
    if (
        not isinstance(sizes, list)
        or len(sizes) < 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n <= MAX_LAYER for n in sizes)
    ):
        raise WeightsError(
            f"{where}: metadata 'layer_sizes' must be a list of at least two integers from 1 to {MAX_LAYER}"
        )
    if meta.get("activation") not in ACTIVATIONS:
        raise WeightsError(f"{where}: metadata 'activation' must be one of {sorted(ACTIVATIONS)}, got {meta.get('activation')!r}")
    scale = meta.get("input_scale", 1 / 255)
    if not isinstance(scale, float) or not np.isfinite(scale) or scale <= 0:
        raise WeightsError(f"{where}: metadata 'input_scale' must be a positive number")
    layers = len(sizes) - 1
    expected = {"metadata"} | {f"{kind}{l}" for l in range(1, layers + 1) for kind in "Wb"}
    missing = sorted(expected - set(archive.files), key=lambda name: (int(name[1:]), name[0]))
    if missing:
        raise WeightsError(
            f"{where}: missing array {missing[0]!r} (layer_sizes {sizes} need W1..W{layers}, b1..b{layers})"
        )
    extra = sorted(set(archive.files) - expected)
    if extra:
        raise WeightsError(f"{where}: unexpected arrays {extra}")
    pieces = []
    for l, (n_prev, n) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        for name, shape in ((f"W{l}", (n_prev, n)), (f"b{l}", (n,))):
            arr = archive[name]
            if arr.shape != shape:
                raise WeightsError(f"{where}: array {name!r} has shape {arr.shape}, layer_sizes {sizes} need {shape}")
            if arr.dtype.kind != "f":
                raise WeightsError(f"{where}: array {name!r} has dtype {arr.dtype}, expected floating point")
            with np.errstate(over="ignore"):
                values = arr.astype(np.float32).ravel()
            if not np.all(np.isfinite(values)):
                raise WeightsError(f"{where}: array {name!r} holds NaN or infinite values (as float32)")
            pieces.append(values)
    return np.concatenate(pieces), meta
