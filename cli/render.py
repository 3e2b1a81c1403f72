"""Drawing digits in a terminal: an ASCII ramp, as the original program did, or grey
Unicode half blocks on a terminal with colour."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rich.cells import cell_len
from rich.color import Color
from rich.console import Console
from rich.style import Style
from rich.text import Text

# Dark to bright, as in the original's ASCII renderings.
RAMP = " .:-=+*#%@"

#: The upper half block: its foreground colour paints a cell's top half, its background the bottom.
HALF_BLOCK = "▀"


def _frame(pixels: np.ndarray, shape: tuple[int, int], crop: int) -> np.ndarray:
    """The image (h, w) without `crop` pixels of (MNIST's empty) border on every side, with
    a black row added at the bottom if needed to make the rows pair up."""
    image = np.asarray(pixels).reshape(shape)
    if crop and min(shape) > 4 * crop:
        image = image[crop:-crop, crop:-crop]
    if image.shape[0] % 2:
        image = np.vstack([image, np.zeros((1, image.shape[1]), image.dtype)])
    return image


def ascii_digit(pixels: np.ndarray, shape: tuple[int, int] = (28, 28), crop: int = 2) -> list[str]:
    """Rows of text for one image (uint8 0-255). A terminal cell is about twice as tall
    as it is wide, so each character stands for one pixel across and two pixels down.
    `crop` pixels of (MNIST's empty) border are left out on every side."""
    image = _frame(np.asarray(pixels, dtype=np.float32), shape, crop)
    pairs = (image[0::2] + image[1::2]) / 2
    levels = np.minimum((pairs / 256 * len(RAMP)).astype(int), len(RAMP) - 1)
    return ["".join(RAMP[v] for v in row) for row in levels]


def halfblock_digit(pixels: np.ndarray, shape: tuple[int, int] = (28, 28), crop: int = 2) -> list[Text]:
    """Rows of grey half blocks for one image (uint8 0-255): each cell is a '▀' whose
    foreground is the upper pixel's grey and whose background is the lower one's, so a
    digit keeps all its pixels and its 256 greys in the footprint of `ascii_digit`
    (rich converts the greys to the nearest the terminal has)."""
    image = _frame(np.clip(np.asarray(pixels), 0, 255).astype(np.uint8), shape, crop)
    rows = []
    for top, bottom in zip(image[0::2], image[1::2]):
        row = Text(no_wrap=True, end="")
        cells = list(zip(top.tolist(), bottom.tolist()))
        start = 0
        for end in range(1, len(cells) + 1):  # one span per run of equal cells: fewer escape codes
            if end == len(cells) or cells[end] != cells[start]:
                t, b = cells[start]
                row.append(HALF_BLOCK * (end - start), Style(color=Color.from_rgb(t, t, t), bgcolor=Color.from_rgb(b, b, b)))
                start = end
        rows.append(row)
    return rows


def draws_colour(console: Console) -> bool:
    """Whether `console` is a terminal that shows colour (so half blocks read as a picture)."""
    return console.is_terminal and console.color_system is not None and not console.no_color


def digit_rows(pixels: np.ndarray, shape: tuple[int, int], colour: bool) -> list[str] | list[Text]:
    """Half blocks in colour, else the ASCII ramp."""
    return halfblock_digit(pixels, shape) if colour else ascii_digit(pixels, shape)


def side_by_side(
    blocks: Sequence[Sequence[str | Text]], captions: Sequence[list[str]], max_width: int = 80, gap: int = 2
) -> Text:
    """Lay rendered digits (plain or styled rows) out in rows that fit `max_width`, each
    with caption lines under it; print the result with a rich console."""
    width = max([cell_len(line) if isinstance(line, str) else line.cell_len for block in blocks for line in block]
                + [cell_len(c) for cap in captions for c in cap])
    per_row = max(1, (max_width + gap) // (width + gap))
    lines = []
    for first in range(0, len(blocks), per_row):
        group = list(zip(blocks[first : first + per_row], captions[first : first + per_row]))
        height = max(len(block) + len(cap) for block, cap in group)
        for r in range(height):
            line = Text(no_wrap=True, end="")
            for k, (block, cap) in enumerate(group):
                rows = [*block, *cap]
                cell = rows[r] if r < len(rows) else ""
                cell = Text(cell) if isinstance(cell, str) else cell.copy()
                if k < len(group) - 1:
                    cell.pad_right(width - cell.cell_len + gap)
                line.append_text(cell)
            line.rstrip()
            lines.append(line)
    return Text("\n").join(lines)
