"""Reading digits to classify from files: PNG/JPEG pictures, IDX image files, or .npy arrays.

Pictures are made to look like MNIST, as the model saw it in training: grayscale;
inverted when the digit is dark on a light background; the digit cropped, scaled
so its longer side is 20 pixels, and placed in a 28x28 black frame with its
centre of mass in the middle (LeCun et al.'s recipe for MNIST).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dtrain.data.idx import IdxError, display_path, parse_idx, read_bytes
from dtrain.errors import UserError

SIDE = 28  # MNIST's frame
DIGIT_BOX = 20  # the digit's longer side inside the frame
INK = 40  # pixels above this (0-255, after inversion) are the digit

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class ImageError(UserError):
    """A file that holds no digits dtrain can classify; the message names the file."""


def load_images(path: str | Path) -> np.ndarray:
    """The digits in one file as uint8 images of shape (n, 28, 28) (or as the file's own frame for IDX/.npy).

    .npy: one image (h, w) or (h*w,), or a batch (n, h, w) or (n, h*w), of 0-255
    integers or floats in [0, 1] (read with allow_pickle=False); IDX: an images
    file (magic 2051), gzipped or not; anything else is opened as a picture.
    """
    path = Path(path)
    where = display_path(path)
    if not path.is_file():
        raise ImageError(f"{where}: no such file")
    name = path.name.lower()
    if name.endswith(".npy"):
        return _from_npy(path, where)
    if "idx3" in name or name.endswith((".idx", ".idx.gz")):
        try:
            return parse_idx(read_bytes(path), path, 2051)
        except IdxError as e:
            raise ImageError(str(e)) from None
    return _from_picture(path, where)[None]


def _from_npy(path: Path, where: str) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ImageError(f"{where}: not a .npy array of images: {str(e).splitlines()[0]}") from None
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "uif" or x.size == 0:
        raise ImageError(f"{where}: expected an array of pixels (integers 0-255 or floats 0-1), got {getattr(x, 'dtype', type(x))}")
    if x.dtype.kind == "f":
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise ImageError(f"{where}: float pixels must be finite and in [0, 1]")
        x = np.round(x * 255)
    elif x.min() < 0 or x.max() > 255:
        raise ImageError(f"{where}: integer pixels must be in 0-255")
    x = x.astype(np.uint8)
    if x.ndim == 1:
        x = x[None]
    if x.ndim == 2 and x.shape[0] == x.shape[1] and x.shape[0] > 1:
        x = x[None]  # one square image
    if x.ndim not in (2, 3):
        raise ImageError(f"{where}: expected one image or a batch of them, got an array of shape {x.shape}")
    return x


def _from_picture(path: Path, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            picture.load()
            gray = np.asarray(picture.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        kind = "not an image (PNG, JPEG, ...), an IDX file or a .npy array"
        raise ImageError(f"{where}: {kind}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return mnist_like(gray, where)


def mnist_like(gray: np.ndarray, where: str = "image") -> np.ndarray:
    """A (28, 28) uint8 MNIST-style digit from any grayscale picture (h, w) of one digit."""
    from PIL import Image

    if gray.mean() > 127:  # dark ink on light paper: MNIST is light on black
        gray = 255 - gray
    ink = gray > INK
    if not ink.any():
        raise ImageError(f"{where}: no digit found: the picture is blank")
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    digit = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = DIGIT_BOX / max(digit.shape)
    size = (max(1, round(digit.shape[1] * scale)), max(1, round(digit.shape[0] * scale)))
    digit = np.asarray(Image.fromarray(digit).resize(size, Image.Resampling.LANCZOS), dtype=np.float64)
    # Place it with its centre of mass in the middle of the frame, as MNIST's digits are
    # (within the frame: a lopsided digit is kept whole rather than centred exactly).
    ys, xs = np.indices(digit.shape)
    mass = digit.sum()
    top = round(SIDE / 2 - 0.5 - (ys * digit).sum() / mass)
    left = round(SIDE / 2 - 0.5 - (xs * digit).sum() / mass)
    top = min(max(top, 0), SIDE - digit.shape[0])
    left = min(max(left, 0), SIDE - digit.shape[1])
    frame = np.zeros((SIDE, SIDE), dtype=np.float64)
    frame[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return np.clip(frame, 0, 255).astype(np.uint8)
