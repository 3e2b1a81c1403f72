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
from dtrain.model.mlp import ACTIVATIONS, n_params

FORMAT = "dtrain-mlp"
FORMAT_VERSION = 1


class WeightsError(UserError):
    """A weights file that is not a dtrain model, or not a sound one."""


def save_weights(path: str | Path, theta: np.ndarray, sizes: tuple[int, ...], metadata: dict[str, Any]) -> None:
    """Write theta as W1, b1, ... plus metadata, atomically (write to a temp file, then rename)."""
    from dtrain.model.mlp import unflatten

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "layer_sizes": [int(n) for n in sizes],
        "dtrain_version": __version__,
        **metadata,
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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_weights(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read and check a weights file; returns (flat theta, metadata). Raises WeightsError."""
    path = Path(path)
    where = str(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise WeightsError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise WeightsError(f"{where}: is a directory, expected a .npz weights file") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise WeightsError(f"{where}: not a dtrain weights file (.npz of arrays): {_first_line(e)}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise WeightsError(f"{where}: a single .npy array, expected a .npz weights file")
    with archive:
        try:
            return _check(archive, where)
        except WeightsError:
            raise
        except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
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
    if meta.get("format_version") != FORMAT_VERSION:
        raise WeightsError(
            f"{where}: unknown format_version {meta.get('format_version')!r}: this dtrain reads version {FORMAT_VERSION}"
        )
    sizes = meta.get("layer_sizes")
    if (
        not isinstance(sizes, list)
        or len(sizes) < 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes)
    ):
        raise WeightsError(f"{where}: metadata 'layer_sizes' must be a list of at least two positive integers")
    if meta.get("activation") not in ACTIVATIONS:
        raise WeightsError(f"{where}: metadata 'activation' must be one of {sorted(ACTIVATIONS)}, got {meta.get('activation')!r}")
    scale = meta.get("input_scale", 1 / 255)
    if not isinstance(scale, (int, float)) or not np.isfinite(scale) or scale <= 0:
        raise WeightsError(f"{where}: metadata 'input_scale' must be a positive number")
    expected = {"metadata"}
    theta = np.empty(n_params(sizes), dtype=np.float32)
    offset = 0
    for l, (n_prev, n) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        for name, shape in ((f"W{l}", (n_prev, n)), (f"b{l}", (n,))):
            expected.add(name)
            if name not in archive.files:
                raise WeightsError(f"{where}: missing array {name!r} (layer_sizes {sizes} need W1..W{len(sizes) - 1}, b1..b{len(sizes) - 1})")
            arr = archive[name]
            if arr.shape != shape:
                raise WeightsError(f"{where}: array {name!r} has shape {arr.shape}, layer_sizes {sizes} need {shape}")
            if arr.dtype.kind != "f":
                raise WeightsError(f"{where}: array {name!r} has dtype {arr.dtype}, expected floating point")
            if not np.all(np.isfinite(arr)):
                raise WeightsError(f"{where}: array {name!r} holds NaN or infinite values")
            theta[offset : offset + arr.size] = arr.ravel()
            offset += arr.size
    extra = sorted(set(archive.files) - expected)
    if extra:
        raise WeightsError(f"{where}: unexpected arrays {extra}")
    return theta, meta
