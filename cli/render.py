"""Drawing digits in a terminal, as the original program did, with an ASCII ramp."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Dark to bright, as in the original's ASCII renderings.
RAMP = " .:-=+*#%@"


def ascii_digit(pixels: np.ndarray, shape: tuple[int, int] = (28, 28), crop: int = 2) -> list[str]:
    """Rows of text for one image (uint8 0-255). A terminal cell is about twice as tall
    as it is wide, so each character stands for one pixel across and two pixels down.
    `crop` pixels of (MNIST's empty) border are left out on every side."""
    image = np.asarray(pixels, dtype=np.float32).reshape(shape)
    if crop and min(shape) > 4 * crop:
        image = image[crop:-crop, crop:-crop]
    if image.shape[0] % 2:
        image = np.vstack([image, np.zeros((1, image.shape[1]), np.float32)])
    pairs = (image[0::2] + image[1::2]) / 2
    levels = np.minimum((pairs / 256 * len(RAMP)).astype(int), len(RAMP) - 1)
    return ["".join(RAMP[v] for v in row) for row in levels]


def side_by_side(blocks: Sequence[list[str]], captions: Sequence[list[str]], max_width: int = 80, gap: int = 2) -> str:
    """Lay rendered digits out in rows that fit `max_width`, each with caption lines under it."""
    width = max([len(line) for block in blocks for line in block] + [len(c) for cap in captions for c in cap])
    per_row = max(1, (max_width + gap) // (width + gap))
    out = []
    for first in range(0, len(blocks), per_row):
        group = list(zip(blocks[first : first + per_row], captions[first : first + per_row]))
        height = max(len(block) + len(cap) for block, cap in group)
        for r in range(height):
            cells = [(block + cap)[r] if r < len(block) + len(cap) else "" for block, cap in group]
            out.append((" " * gap).join(cell.ljust(width) for cell in cells).rstrip())
    return "\n".join(out)
