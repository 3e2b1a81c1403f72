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

import io
import json
import lzma
import math
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from dtrain import __version__
from dtrain.files import write_atomic
from dtrain.errors import UserError
from dtrain.model.mlp import ACTIVATIONS

FORMAT = "dtrain-mlp"
FORMAT_VERSION = 1
MAX_LAYER = 1 << 20  # far above any sensible MLP; refuses absurd sizes before reading arrays
# Trained weights are small (of order 1: a run whose weights grew anywhere near 1e6 would have
# diverged first). Far larger finite values come from damage (a flipped exponent bit, a wrong dtype
# in a .npy header) and overflow float32 in a forward pass, giving NaN probabilities: 3e38 times any
# pixel or activation is inf. 1e6 leaves a wide margin above real models while keeping the sums of
# a few layers (width * |w| * |a|) far from float32's 3.4e38.
MAX_WEIGHT = 1e6
# input_scale maps 0-255 pixels to the inputs the model was trained on: dtrain writes 1/255, and 1
# (raw pixels) is plausible. A huge scale overflows float32 like a huge weight (3.5e38 is inf as
# float32, and 0 * inf is NaN even for a black image), so it is bounded the same way.
MAX_INPUT_SCALE = 1e6
NPY_MAX_HEADER = 10000  # np.load's default max_header_size: longer .npy headers are refused unparsed


class WeightsError(UserError):
    """A weights file that is not a dtrain model, or not a sound one."""


def save_weights(path: str | Path, theta: np.ndarray, sizes: tuple[int, ...], metadata: dict[str, Any]) -> None:
    """Write theta as W1, b1, ... plus metadata, atomically and durably (see write_atomic)."""
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
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(Path(path), buffer.getvalue())  # synced, then renamed: whole or not at all


# What reading a damaged archive can raise, besides WeightsError. zipfile: BadZipFile, EOFError,
# OSError, KeyError, NotImplementedError / RuntimeError (unsupported or "encrypted" entries), zlib.error
# and LZMAError from its decompressors (bzip2 raises OSError). numpy's .npy header parser: ValueError,
# TypeError (an unhashable dict key), tokenize.TokenError (unbalanced brackets), OverflowError and
# MemoryError (absurd shapes); SystemError from str() of a '<U' code point beyond U+10FFFF.
_READ_ERRORS = (
    ValueError,
    OSError,
    zipfile.BadZipFile,
    EOFError,
    KeyError,
    NotImplementedError,
    RuntimeError,
    TypeError,
    OverflowError,
    MemoryError,
    SystemError,
    tokenize.TokenError,
    zlib.error,
    lzma.LZMAError,
)


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
    if isinstance(e, tokenize.TokenError) and e.args and isinstance(e.args[0], str):
        return e.args[0]  # str() would be the repr of (message, position)
    return (str(e).splitlines() or [type(e).__name__])[0]


def _member(archive: np.lib.npyio.NpzFile, name: str) -> zipfile.ZipInfo:
    """The zip entry holding array `name`, as NpzFile picks it: `name` itself, else `name`.npy."""
    names = archive.zip.namelist()
    return archive.zip.getinfo(name if name in names else f"{name}.npy")


def _npy_header(archive: np.lib.npyio.NpzFile, name: str, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the .npy header of entry `name`, checked against the entry's size,
    so that a small file declaring an enormous array is refused before anything is allocated."""
    try:
        info = _member(archive, name)
        with archive.zip.open(info) as f:
            magic = f.read(len(np.lib.format.MAGIC_PREFIX) + 2)
            if magic[:-2] != np.lib.format.MAGIC_PREFIX:
                raise WeightsError(f"{where}: entry {info.filename!r} is not a .npy array")
            version = (magic[-2], magic[-1])
            # np.save writes 1.0, or 2.0 for a header over 64 KiB; 3.0 (UTF-8 header) only for
            # structured dtypes with non-Latin-1 field names, never for the arrays of a weights file.
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=NPY_MAX_HEADER)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=NPY_MAX_HEADER)
            else:
                raise WeightsError(
                    f"{where}: unreadable array {name!r}: unsupported .npy format version {version[0]}.{version[1]}"
                )
            data_start = f.tell()
    except WeightsError:
        raise
    except (TypeError, tokenize.TokenError) as e:  # from ast.literal_eval / tokenize of the header text
        raise WeightsError(f"{where}: unreadable array {name!r}: bad .npy header: {_first_line(e)}") from None
    except _READ_ERRORS as e:
        raise WeightsError(f"{where}: unreadable array {name!r}: {_first_line(e)}") from None
    if dtype.hasobject:
        raise WeightsError(
            f"{where}: unreadable array {name!r}: it holds pickled Python objects (dtype object), never loaded"
        )
    if any(n < 0 for n in shape):
        raise WeightsError(f"{where}: unreadable array {name!r}: bad shape {shape} in its .npy header")
    declared = dtype.itemsize * math.prod(shape)  # Python ints: exact for any shape
    available = info.file_size - data_start
    if declared > available:
        raise WeightsError(
            f"{where}: unreadable array {name!r}: its .npy header declares shape {shape} of {dtype} "
            f"({declared} bytes), but the entry holds only {max(available, 0)} bytes of data"
        )
    return shape, dtype


def _read_npy(archive: np.lib.npyio.NpzFile, name: str, where: str) -> np.ndarray:
    """The array in entry `name`, whose header _npy_header has already checked."""
    try:
        with archive.zip.open(_member(archive, name)) as f:
            arr = np.lib.format.read_array(f, allow_pickle=False, max_header_size=NPY_MAX_HEADER)
    except _READ_ERRORS as e:
        raise WeightsError(f"{where}: unreadable array {name!r}: {_first_line(e)}") from None
    if not isinstance(arr, np.ndarray):  # read_array returns arrays only; never trust it blindly
        raise WeightsError(f"{where}: unreadable array {name!r}: not a .npy array")
    return arr


def _check(archive: np.lib.npyio.NpzFile, where: str) -> tuple[np.ndarray, dict[str, Any]]:
    """(flat float32 theta, metadata) from an open archive, every part checked first."""
    meta = _read_metadata(archive, where)
    sizes = _check_metadata(meta, where)
    _check_array_names(archive, sizes, where)
    pieces = []
    for l, (n_prev, n) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        pieces.append(_read_layer_array(archive, f"W{l}", (n_prev, n), sizes, where))
        pieces.append(_read_layer_array(archive, f"b{l}", (n,), sizes, where))
    return np.concatenate(pieces), meta


def _read_metadata(archive: np.lib.npyio.NpzFile, where: str) -> dict[str, Any]:
    """The 'metadata' entry's JSON object, of this format and version."""
    if "metadata" not in archive.files:
        raise WeightsError(f"{where}: no 'metadata' entry: not a dtrain weights file")
    shape, dtype = _npy_header(archive, "metadata", where)
    if dtype.kind != "U" or shape != ():
        raise WeightsError(f"{where}: 'metadata' must be a JSON string")
    raw = _read_npy(archive, "metadata", where)
    try:
        text = str(raw)
    except (SystemError, ValueError):  # a UCS-4 code beyond U+10FFFF: numpy cannot make a str of it
        raise WeightsError(f"{where}: 'metadata' is not valid text: it holds a character code beyond U+10FFFF") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise WeightsError(f"{where}: 'metadata' is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise WeightsError(f"{where}: metadata 'format' must be {FORMAT!r}")
    version = meta.get("format_version")
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise WeightsError(
            f"{where}: unknown format_version {meta.get('format_version')!r}: this dtrain reads version {FORMAT_VERSION}"
        )
    return meta


def _check_metadata(meta: dict[str, Any], where: str) -> list[int]:
    """The model's layer sizes, once metadata's layer_sizes, activation and input_scale are sound."""
    sizes = meta.get("layer_sizes")
    if (
        not isinstance(sizes, list)
        or len(sizes) < 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n <= MAX_LAYER for n in sizes)
    ):
        raise WeightsError(
            f"{where}: metadata 'layer_sizes' must be a list of at least two integers from 1 to {MAX_LAYER}"
        )
    activation = meta.get("activation")
    if not isinstance(activation, str) or activation not in ACTIVATIONS:  # a list or dict is unhashable
        raise WeightsError(f"{where}: metadata 'activation' must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    scale = meta.get("input_scale", 1 / 255)
    # an int is a number too (bool is not); the comparison is exact for ints of any size and False for NaN
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not 0 < scale <= MAX_INPUT_SCALE:
        raise WeightsError(f"{where}: metadata 'input_scale' must be a positive number, at most {MAX_INPUT_SCALE:,.0f}")
    return sizes


def _check_array_names(archive: np.lib.npyio.NpzFile, sizes: list[int], where: str) -> None:
    """The archive holds metadata and W1, b1, ... for every layer of `sizes`, and nothing else."""
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


def _read_layer_array(
    archive: np.lib.npyio.NpzFile, name: str, shape: tuple[int, ...], sizes: list[int], where: str
) -> np.ndarray:
    """Array `name` as flat float32, once it has `shape` and a floating dtype (both read from its
    header, before the array) and holds finite values of trained weights' magnitude."""
    declared, dtype = _npy_header(archive, name, where)
    if declared != shape:
        raise WeightsError(f"{where}: array {name!r} has shape {declared}, layer_sizes {sizes} need {shape}")
    if dtype.kind != "f":
        raise WeightsError(f"{where}: array {name!r} has dtype {dtype}, expected floating point")
    arr = _read_npy(archive, name, where)
    with np.errstate(over="ignore"):
        values = arr.astype(np.float32).ravel()
    if not np.all(np.isfinite(values)):
        raise WeightsError(f"{where}: array {name!r} holds NaN or infinite values (as float32)")
    peak = float(np.abs(values).max(initial=0.0))
    if peak > MAX_WEIGHT:
        raise WeightsError(
            f"{where}: array {name!r} holds a value of magnitude {peak:.3g}, above {MAX_WEIGHT:,.0f}: "
            f"not trained weights (a damaged file?)"
        )
    return values
