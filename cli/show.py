"""`dtrain show`: digits of the dataset drawn in the terminal, with their labels."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dtrain.cli.app import Json, app, note, out, user_errors
from dtrain.errors import UserError

#: Digits drawn at most in one call.
MAX_SHOWN = 100


def parse_indices(spec: str, n: int) -> list[int]:
    """'0..9' (inclusive), '7' or '1,4,7' into indices below n; UserError naming --index otherwise."""
    picked: list[int] = []
    for part in spec.split(","):
        lo, sep, hi = part.strip().partition("..")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise UserError(f"--index: expected N, N..M or a comma-separated list of them, got {spec!r}")
        first, last = int(lo), int(hi) if sep else int(lo)
        if first > last or last >= n:
            raise UserError(f"--index: {part.strip()} is not a range within 0..{n - 1}")
        picked.extend(range(first, last + 1))
    if len(picked) > MAX_SHOWN:
        raise UserError(f"--index: {len(picked)} digits; at most {MAX_SHOWN} at a time")
    return picked


@app.command()
def show(
    index: Annotated[str, typer.Option(help="Which digits: N, N..M (inclusive) or a comma-separated list.")] = "0..9",
    split: Annotated[str, typer.Option("--dataset", help="test or train.")] = "test",
    data_dir: Annotated[
        Optional[Path], typer.Option(help="Directory of the four IDX files.", show_default="the MNIST shipped with dtrain")
    ] = None,
    graphics: Annotated[
        bool, typer.Option("--graphics", help="Draw sixel images where the terminal supports them.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Draw digits of the dataset in the terminal, with their labels."""
    from dtrain.cli.render import digit_rows, draws_colour, side_by_side
    from dtrain.cli.sixel import draw
    from dtrain.data.mnist import load_dataset

    with user_errors():
        if split not in ("test", "train"):
            raise UserError(f"--dataset: expected test or train, got {split!r}")
        dataset = load_dataset(data_dir)
        x, y = (dataset.x_test, dataset.y_test) if split == "test" else (dataset.x_train, dataset.y_train)
        picked = parse_indices(index, len(y))
    if as_json:
        print(json.dumps([{"index": i, "label": int(y[i]), "pixels": x[i].reshape(-1).tolist()} for i in picked]))
        return
    captions = [[f"{split} #{i}", f"label {y[i]}"] for i in picked]
    images = [x[i].reshape(dataset.image_shape) for i in picked]
    pictures = draw(images, captions, graphics, note)
    if pictures:
        sys.stdout.write(pictures)
        return
    colour = draws_colour(out)
    blocks = [digit_rows(image, dataset.image_shape, colour) for image in images]
    out.print(side_by_side(blocks, captions, max_width=out.width))
