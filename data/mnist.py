"""The dataset: four IDX files in a directory, loaded into uint8 arrays and checked.

With no directory given, dtrain loads the MNIST copy that ships with it (next to
this file) and verifies it against its SHA256SUMS. Any other directory of the
four files (gzipped or not), such as Fashion-MNIST, works the same way; when it
holds a SHA256SUMS file, that is checked too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dtrain.data.idx import (
    IMAGES_MAGIC,
    LABELS_MAGIC,
    IdxError,
    display_path,
    parse_idx,
    read_bytes,
    sha256_hex,
)

SHIPPED_DIR = Path(__file__).resolve().parent
N_CLASSES = 10
FILES = {
    "x_train": ("train-images-idx3-ubyte", IMAGES_MAGIC),
    "y_train": ("train-labels-idx1-ubyte", LABELS_MAGIC),
    "x_test": ("t10k-images-idx3-ubyte", IMAGES_MAGIC),
    "y_test": ("t10k-labels-idx1-ubyte", LABELS_MAGIC),
}


@dataclass(frozen=True)
class Dataset:
    """Images flattened to rows of uint8 pixels, labels as uint8 class numbers."""

    name: str
    x_train: np.ndarray  # (n_train, rows * cols) uint8
    y_train: np.ndarray  # (n_train,) uint8
    x_test: np.ndarray  # (n_test, rows * cols) uint8
    y_test: np.ndarray  # (n_test,) uint8
    image_shape: tuple[int, int]

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]


def find_file(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise IdxError(f"{display_path(directory)}: missing {stem}.gz (or {stem})")


def read_checksums(directory: Path) -> dict[str, str]:
    sums = directory / "SHA256SUMS"
    if not sums.is_file():
        return {}
    try:
        text = sums.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise IdxError(f"{display_path(sums)}: unreadable checksum list: {e}") from None
    table = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            table[parts[1].lstrip("*")] = parts[0].lower()
    return table


def load_dataset(data_dir: str | Path | None = None) -> Dataset:
    """Load and check train and test images and labels from `data_dir` (default: shipped MNIST)."""
    directory = Path(data_dir).expanduser().resolve() if data_dir is not None else SHIPPED_DIR
    if not directory.is_dir():
        raise IdxError(f"{display_path(directory)}: no such directory (expected the four IDX files of a dataset)")
    checksums = read_checksums(directory)
    arrays, paths = {}, {}
    for key, (stem, magic) in FILES.items():
        path = find_file(directory, stem)
        content = read_bytes(path)
        expected = checksums.get(stem)
        if expected and sha256_hex(content) != expected:
            raise IdxError(
                f"{display_path(path)}: checksum mismatch: decompressed sha256 is {sha256_hex(content)}, "
                f"SHA256SUMS says {expected}"
            )
        arrays[key] = parse_idx(content, path, magic)
        paths[key] = path

    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3:
            raise IdxError(f"{display_path(paths[f'x_{split}'])}: bad dimensions: expected 3 (count, rows, cols), got {x.ndim}")
        if y.ndim != 1:
            raise IdxError(f"{display_path(paths[f'y_{split}'])}: bad dimensions: expected 1 (count), got {y.ndim}")
        if len(x) != len(y):
            raise IdxError(
                f"{display_path(paths[f'y_{split}'])}: {len(y)} labels, but "
                f"{display_path(paths[f'x_{split}'])} has {len(x)} images"
            )
        if len(x) == 0:
            raise IdxError(f"{display_path(paths[f'x_{split}'])}: holds no images")
        if y.max() >= N_CLASSES:
            bad = int(np.argmax(y >= N_CLASSES))
            raise IdxError(
                f"{display_path(paths[f'y_{split}'])}: label {y[bad]} at index {bad} is out of range 0..{N_CLASSES - 1}"
            )
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise IdxError(
            f"{display_path(paths['x_test'])}: images are {'x'.join(map(str, arrays['x_test'].shape[1:]))}, "
            f"but the training images are {'x'.join(map(str, arrays['x_train'].shape[1:]))}"
        )
    rows, cols = arrays["x_train"].shape[1:]
    name = "mnist" if directory == SHIPPED_DIR else directory.name
    return Dataset(
        name=name,
        x_train=arrays["x_train"].reshape(len(arrays["x_train"]), rows * cols),
        y_train=arrays["y_train"],
        x_test=arrays["x_test"].reshape(len(arrays["x_test"]), rows * cols),
        y_test=arrays["y_test"],
        image_shape=(rows, cols),
    )
