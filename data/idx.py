"""Reading IDX files (LeCun's MNIST format), gzipped or not, checking every field.

An IDX file is a 4-byte magic number (0, 0, element type, number of dimensions),
one big-endian uint32 per dimension, then the elements. dtrain reads unsigned
bytes only: images (magic 2051 = 0x00000803, 3 dimensions) and labels (magic
2049 = 0x00000801, 1 dimension). Every problem raises ``IdxError``, whose message
names the file and what was wrong.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path

import numpy as np

from dtrain.errors import UserError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
MAX_ELEMENTS = np.iinfo(np.intp).max  # numpy's limit on the elements of an array, or of one of its items


class IdxError(UserError):
    """A dataset file is missing, unreadable or not what an IDX file must be."""


def display_path(path: Path) -> str:
    """The path as a user would type it: relative to the working directory when under it."""
    try:
        relative = os.path.relpath(path)
    except (ValueError, OSError):  # another drive on Windows; a deleted working directory
        return str(path)
    return str(path) if relative.startswith("..") else relative


def read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is gzipped (by its .gz name or magic bytes)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IdxError(f"{display_path(path)}: no such file") from None
    except OSError as e:
        raise IdxError(f"{display_path(path)}: cannot read: {e.strerror}") from None
    is_gzip = raw[:2] == b"\x1f\x8b"
    if path.suffix == ".gz" and not is_gzip:
        raise IdxError(f"{display_path(path)}: not a gzip file (the name ends in .gz)")
    if not is_gzip:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise IdxError(f"{display_path(path)}: corrupt gzip data: {e}") from None


def parse_idx(content: bytes, path: Path, magic: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file with the expected magic number; shape from its header."""
    where = display_path(path)
    if len(content) < 4:
        raise IdxError(f"{where}: truncated: {len(content)} bytes, too short for an IDX header")
    found = int.from_bytes(content[:4], "big")
    if found != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise IdxError(f"{where}: bad magic number {found}: expected {magic} (IDX {kind} of unsigned bytes)")
    ndim = content[3]
    header = 4 + 4 * ndim
    if len(content) < header:
        raise IdxError(f"{where}: truncated: expected a {header}-byte header, got {len(content)} bytes")
    dims = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if magic == IMAGES_MAGIC and any(d == 0 for d in dims[1:]):
        raise IdxError(f"{where}: bad dimensions {'x'.join(map(str, dims))}: image sides must be positive")
    expected = header + math.prod(dims)  # Python ints: no overflow for absurd headers
    if len(content) != expected:
        problem = "truncated" if len(content) < expected else "trailing data"
        raise IdxError(f"{where}: {problem}: expected {expected} bytes, got {len(content)}")
    # The length matches, so the dims claim no more bytes than the file has, except when the
    # image count is 0: an empty file may still claim images too large for any array (even an
    # empty (0, rows, cols) array needs rows * cols to fit in a signed machine word). Refuse that
    # here, before numpy's reshape does with a bare ValueError. (Labels have no other dims.)
    if magic == IMAGES_MAGIC and math.prod(dims[1:]) > MAX_ELEMENTS:
        raise IdxError(
            f"{where}: bad dimensions {'x'.join(map(str, dims))}: images of "
            f"{math.prod(dims[1:])} pixels each are too large for any array"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(dims)


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
