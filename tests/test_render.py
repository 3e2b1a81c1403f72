"""Digits drawn in the terminal: grey half blocks on a colour terminal (worked out by hand on
tiny images), the ASCII ramp everywhere else."""

from __future__ import annotations

import io

import numpy as np
from rich.console import Console
from rich.text import Text
from typer.testing import CliRunner

from dtrain.cli.main import app
from dtrain.cli.render import HALF_BLOCK, ascii_digit, draws_colour, halfblock_digit, side_by_side

runner = CliRunner()


def spans(row: Text) -> list[tuple[int, int, str]]:
    return [(s.start, s.end, str(s.style)) for s in row.spans]


def test_two_by_two_image_is_one_row_of_two_half_blocks():
    # Column 0: black above mid grey; column 1: white above dark grey.
    rows = halfblock_digit(np.array([[0, 255], [128, 64]], dtype=np.uint8), (2, 2), crop=0)
    assert [row.plain for row in rows] == ["▀▀"]
    assert spans(rows[0]) == [(0, 1, "#000000 on #808080"), (1, 2, "#ffffff on #404040")]


def test_an_odd_last_row_gets_black_below_and_equal_cells_share_one_span():
    image = np.array([[0, 0, 255, 255], [9, 9, 9, 9], [1, 2, 3, 4]], dtype=np.uint8)
    rows = halfblock_digit(image, (3, 4), crop=0)
    assert [row.plain for row in rows] == [HALF_BLOCK * 4, HALF_BLOCK * 4]
    assert spans(rows[0]) == [(0, 2, "#000000 on #090909"), (2, 4, "#ffffff on #090909")]
    assert spans(rows[1]) == [(k, k + 1, f"#0{k + 1}0{k + 1}0{k + 1} on #000000") for k in range(4)]


def test_a_terminal_gets_the_foreground_and_background_greys_as_escape_codes():
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=20)
    console.print(Text("\n").join(halfblock_digit(np.array([[11, 222], [33, 144]], dtype=np.uint8), (2, 2), crop=0)))
    assert console.file.getvalue() == (
        "\x1b[38;2;11;11;11;48;2;33;33;33m▀\x1b[0m\x1b[38;2;222;222;222;48;2;144;144;144m▀\x1b[0m\n"
    )


def test_a_digit_keeps_every_pixel_in_the_ascii_footprint(mnist):
    seven = mnist.x_test[0].reshape(28, 28)
    rows = halfblock_digit(seven)
    assert len(rows) == len(ascii_digit(seven)) == 12 and all(row.cell_len == 24 for row in rows)
    cropped = seven[2:-2, 2:-2]
    for r, row in enumerate(rows):
        cells = [style for s in row.spans for style in [s.style] * (s.end - s.start)]
        for c, style in enumerate(cells):
            assert style.color.triplet == (cropped[2 * r, c],) * 3
            assert style.bgcolor.triplet == (cropped[2 * r + 1, c],) * 3


def test_colour_only_on_a_terminal_that_shows_it():
    assert not draws_colour(Console(file=io.StringIO()))  # not a terminal
    assert draws_colour(Console(file=io.StringIO(), force_terminal=True, color_system="256"))
    assert not draws_colour(Console(file=io.StringIO(), force_terminal=True, color_system=None))
    assert not draws_colour(Console(file=io.StringIO(), force_terminal=True, color_system="256", no_color=True))


def test_side_by_side_keeps_styles_and_lines_up_captions():
    block = halfblock_digit(np.array([[0, 255], [255, 0]], dtype=np.uint8), (2, 2), crop=0)
    laid = side_by_side([block, ["ab"]], [["#0"], ["#1", "long caption"]], max_width=80)
    assert laid.plain.split("\n") == [
        "▀▀            ab",
        "#0            #1",
        "              long caption",
    ]
    assert spans(laid)[:2] == [(0, 1, "#000000 on #ffffff"), (1, 2, "#ffffff on #000000")]
    narrow = side_by_side([["a"], ["b"], ["c"]], [["1"], ["2"], ["3"]], max_width=3)
    assert narrow.plain.split("\n") == ["a", "1", "b", "2", "c", "3"]  # one per row when two do not fit


def test_off_a_terminal_digits_stay_ascii(mnist):
    result = runner.invoke(app, ["show", "--index", "0"], catch_exceptions=False)
    assert result.exit_code == 0
    assert HALF_BLOCK not in result.stdout and "\x1b[" not in result.stdout
    drawn = [line.rstrip() for line in ascii_digit(mnist.x_test[0])]
    assert result.stdout.splitlines()[: len(drawn)] == drawn and "label 7" in result.stdout


def test_on_a_colour_terminal_show_draws_half_blocks(monkeypatch):
    from test_sixel import run_in_terminal

    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("COLORTERM", raising=False)
    output = run_in_terminal(["show", "--index", "0"], answer=None)
    assert HALF_BLOCK.encode() in output and b"\x1b[38;5;" in output  # 256 colours: rich picks the nearest greys
    assert b"label 7" in output and b"@" not in output
