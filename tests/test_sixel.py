"""The sixel encoder: its bytes for a tiny image worked out by hand, and a decode of its output."""

from __future__ import annotations

import re

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dtrain.cli.sixel import encode, terminal_supports_sixel


def test_a_two_by_two_checkerboard_by_hand():
    # Band 0 holds rows 0-1. Gray 0 is at (0,0) and (1,1): column 0 has bit 0 -> chr(63+1) '@',
    # column 1 bit 1 -> chr(63+2) 'A'. Gray 1 (white) is the opposite: 'A', '@'.
    expected = '\x1bPq"1;1;2;2#0;2;0;0;0#1;2;100;100;100#0@A$#1A@-\x1b\\'
    assert encode(np.array([[0, 255], [255, 0]], dtype=np.uint8), levels=2) == expected


def test_runs_of_four_or_more_are_counted():
    image = np.zeros((1, 9), dtype=np.uint8)
    assert encode(image, levels=2) == '\x1bPq"1;1;9;1#0;2;0;0;0#1;2;100;100;100#0!9@-\x1b\\'


def decode(sixel: str, levels: int) -> np.ndarray:
    """A small, independent sixel decoder: back to gray levels (h, w)."""
    body = sixel.removeprefix("\x1bPq").removesuffix("\x1b\\")
    width, height = map(int, re.match(r'"1;1;(\d+);(\d+)', body).groups())
    body = re.sub(r'^"1;1;\d+;\d+', "", body)
    body = re.sub(r"#\d+;2;\d+;\d+;\d+", "", body)  # the palette
    out = np.full((height, width), -1, dtype=np.int64)
    for b, band in enumerate(body.rstrip("-").split("-")):
        for colour in band.split("$"):
            k, data = re.match(r"#(\d+)(.*)", colour).groups()
            x = 0
            for count, char in re.findall(r"(?:!(\d+))?([?-~])", data):
                for _ in range(int(count or 1)):
                    bits = ord(char) - 63
                    for row in range(6):
                        if bits >> row & 1:
                            out[b * 6 + row, x] = int(k)
                    x += 1
    return out


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 20), st.integers(1, 20))), st.integers(1, 3))
def test_decoding_the_output_gives_back_the_image(image, scale):
    levels = 16
    decoded = decode(encode(image, scale=scale, levels=levels), levels)
    quantized = (image.astype(np.int64) * (levels - 1) + 127) // 255
    assert np.array_equal(decoded, np.kron(quantized, np.ones((scale, scale), dtype=np.int64)))


def test_no_sixel_when_not_a_terminal():
    assert terminal_supports_sixel() is False  # pytest captures stdout: not a TTY


def run_in_terminal(args: list[str], answer: bytes | None, timeout: float = 60) -> bytes:
    """`dtrain ARGS` on a pseudo-terminal that answers the device-attributes query with `answer`."""
    import os
    import pty
    import select
    import sys
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: dtrain on the terminal
        os.execv(sys.executable, [sys.executable, "-c", "from dtrain.cli.entry import main; main()", *args])
    output, deadline, answered = b"", time.monotonic() + timeout, False
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.5)[0]:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        if answer and not answered and b"\x1b[c" in output:
            os.write(fd, answer)
            answered = True
    os.waitpid(pid, 0)
    return output


def test_show_graphics_draws_sixels_when_the_terminal_says_it_can():
    output = run_in_terminal(["show", "--index", "0", "--graphics"], answer=b"\x1b[?62;4;22c")
    assert b"\x1bPq" in output and output.count(b"\x1b\\") >= 1
    assert b"label 7" in output


def test_show_graphics_falls_back_to_text_when_the_terminal_cannot():
    output = run_in_terminal(["show", "--index", "0", "--graphics"], answer=b"\x1b[?62;22c")  # no 4: no sixel
    assert b"\x1bPq" not in output
    assert b"does not say it draws sixel images" in output and b"label 7" in output
