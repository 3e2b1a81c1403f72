"""Sixel graphics: grayscale digits drawn as images in terminals that support them.

A sixel image is a DCS string: ``ESC P q``, raster attributes, colour registers
``#n;2;r;g;b`` (percentages), then bands of six pixel rows. In a band each colour
is a run of characters ``chr(63 + bits)``, bit 0 the band's top row, with ``!n``
repeating a character n times, ``$`` returning to the band's start for the next
colour and ``-`` moving to the next band; ``ESC \\`` ends it.
"""

from __future__ import annotations

import os
import select
import sys

import numpy as np

#: Gray levels in the palette: enough for MNIST's strokes, few enough to stay small.
LEVELS = 16


def encode(image: np.ndarray, scale: int = 1, levels: int = LEVELS) -> str:
    """The sixel string of a grayscale uint8 image (h, w), each pixel drawn `scale` x `scale`."""
    gray = np.asarray(image, dtype=np.uint8)
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {gray.shape}")
    gray = np.kron(gray, np.ones((scale, scale), dtype=np.uint8)) if scale > 1 else gray
    h, w = gray.shape
    level = (gray.astype(np.int32) * (levels - 1) + 127) // 255  # nearest of `levels` grays
    parts = ['\x1bPq', f'"1;1;{w};{h}']
    for k in range(levels):
        pct = round(k * 100 / (levels - 1))
        parts.append(f"#{k};2;{pct};{pct};{pct}")
    for top in range(0, h, 6):
        band = level[top : top + 6]
        colours = []
        for k in np.unique(band):
            bits = np.zeros(w, dtype=np.int32)
            for row in range(band.shape[0]):
                bits |= (band[row] == k).astype(np.int32) << row
            colours.append(f"#{k}" + _runs("".join(chr(63 + b) for b in bits)))
        parts.append("$".join(colours) + "-")
    parts.append("\x1b\\")
    return "".join(parts)


def _runs(line: str) -> str:
    """Run-length code a band's characters: four or more of one become ``!n`` plus it."""
    out, i = [], 0
    while i < len(line):
        j = i
        while j < len(line) and line[j] == line[i]:
            j += 1
        n = j - i
        out.append(f"!{n}{line[i]}" if n >= 4 else line[i] * n)
        i = j
    return "".join(out)


def terminal_supports_sixel(timeout_s: float = 0.5) -> bool:
    """Ask the terminal (Primary Device Attributes, ESC [ c) whether it draws sixels (attribute 4).

    False when stdout or stdin is not a terminal, or it does not answer in time.
    """
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        return False
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    answer = b""
    try:
        tty.setcbreak(fd)
        os.write(sys.stdout.fileno(), b"\x1b[c")
        while select.select([fd], [], [], timeout_s)[0]:
            answer += os.read(fd, 64)
            if answer.endswith(b"c"):
                break
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)
    if not answer.startswith(b"\x1b[?") or not answer.endswith(b"c"):
        return False
    return "4" in answer[3:-1].decode(errors="replace").split(";")


def sixels_wanted(graphics: bool, note) -> bool:
    """Whether to draw sixel images: asked for (--graphics), stdout a terminal, and the terminal
    says it draws them. Asks the terminal at most once; `note(text)` says why not when asked."""
    if not graphics:
        return False
    if not sys.stdout.isatty():
        note("--graphics: stdout is not a terminal; digits are drawn as text")
        return False
    if not terminal_supports_sixel():
        note("--graphics: this terminal does not say it draws sixel images; digits are drawn as text")
        return False
    return True


def pictures(images: list[np.ndarray], captions: list[list[str]], scale: int = 4) -> str:
    """Each image as a sixel image with its caption on the line under it."""
    return "".join(encode(image, scale=scale) + "\n" + "  ".join(caption) + "\n" for image, caption in zip(images, captions))


def draw(images: list[np.ndarray], captions: list[list[str]], graphics: bool, note) -> str | None:
    """Sixel images (each with its caption) when asked and the terminal draws them, else None
    (the caller draws text); `note(text)` says why when --graphics cannot be honoured."""
    return pictures(images, captions) if sixels_wanted(graphics, note) else None
