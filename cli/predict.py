"""`dtrain predict`: classify digits in pictures, IDX files or .npy arrays with a trained model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dtrain.cli.app import Json, app, note, out, user_errors
from dtrain.errors import UserError

if TYPE_CHECKING:  # NumPy and the drawing load when a command uses them: `dtrain list` starts faster
    import numpy as np

    from dtrain.model.inference import Model

#: Digits drawn in the terminal at most (every one is listed).
MAX_DRAWN = 12


@app.command()
def predict(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="A model.npz, e.g. from `dtrain pull JOB`.", show_default=False)],
    files: Annotated[
        list[Path],
        typer.Argument(metavar="FILE...", help="PNG/JPEG pictures of one digit, IDX image files, or .npy arrays.", show_default=False),
    ],
    graphics: Annotated[
        bool, typer.Option("--graphics", help="Draw sixel images where the terminal supports them.")
    ] = False,
    as_json: Json = False,
) -> None:
    """The digit in each picture (or each image of an IDX/.npy file), its top-3 probabilities, and a drawing.

    A picture is made MNIST-like first: grayscale, inverted if dark on light,
    the digit cropped, scaled to 20 px and centred in 28x28.
    """
    from dtrain.data.images import load_images
    from dtrain.model.inference import load_model

    with user_errors():
        model = load_model(model_path)
        found = fit_to_model(model, [(path, load_images(path)) for path in files])
        results = [r for path, images in found for r in classify(model, path, images)]
    if as_json:
        print(json.dumps({"model": str(model_path), "predictions": [{k: v for k, v in r.items() if k != "image"} for r in results]}))
        return
    per_file = {str(path): len(images) for path, images in found}
    print_results(results, per_file)
    draw_results(results[:MAX_DRAWN], per_file, graphics)
    if len(results) > MAX_DRAWN:
        out.print(f"({len(results) - MAX_DRAWN} more not drawn)", highlight=False)


def fit_to_model(model: Model, found: list[tuple[Path, np.ndarray]]) -> list[tuple[Path, np.ndarray]]:
    """Each file's images, flat ones (n, pixels) reshaped to the model's frame (n, *image_shape)
    to be drawn as pictures; UserError naming the file whose pixels are not the model's inputs."""
    import numpy as np

    shape = tuple(model.metadata.get("image_shape") or (28, 28))
    for path, images in found:
        if int(np.prod(images.shape[1:])) != model.n_inputs:
            raise UserError(
                f"{path}: images of {'x'.join(map(str, images.shape[1:]))} pixels do not fit this model: "
                f"it takes {model.n_inputs} ({'x'.join(map(str, shape))})"
            )
    return [(path, images.reshape(len(images), *shape) if images.ndim == 2 else images) for path, images in found]


def classify(model: Model, path: Path, images: np.ndarray) -> list[dict[str, Any]]:
    """One result per image of `images` (n, h, w) from file `path`: its index in the file, the
    most probable label and its probability, the top 3 (label, p), and the image itself."""
    import numpy as np

    probabilities = np.atleast_2d(model.predict_proba(images.reshape(len(images), -1)))
    results = []
    for index, (image, p) in enumerate(zip(images, probabilities)):
        top = np.argsort(-p, kind="stable")[:3]
        results.append(
            {
                "file": str(path),
                "index": index,
                "label": int(top[0]),
                "probability": round(float(p[top[0]]), 6),
                "top3": [{"label": int(k), "p": round(float(p[k]), 6)} for k in top],
                "image": image,
            }
        )
    return results


def print_results(results: list[dict[str, Any]], per_file: dict[str, int]) -> None:
    """A line per result: its file (and index, in a file of several), label and top 3."""
    for r in results:
        name = r["file"] if per_file[r["file"]] == 1 else f"{r['file']}[{r['index']}]"
        others = ", ".join(f"{t['label']}: {t['p'] * 100:.1f}%" for t in r["top3"][1:])
        out.print(f"{name}: {r['label']}  p = {r['probability'] * 100:.1f}%  (then {others})", markup=False, highlight=False, soft_wrap=True)


def draw_results(drawn: list[dict[str, Any]], per_file: dict[str, int], graphics: bool) -> None:
    """The images of `drawn` side by side, captioned with file name (and index, in a file of
    several) and label: as sixels where asked for and the terminal draws them, else as text."""
    from dtrain.cli.render import digit_rows, draws_colour, side_by_side
    from dtrain.cli.sixel import draw

    captions = [
        [Path(r["file"]).name + (f"[{r['index']}]" if per_file[r["file"]] > 1 else ""), f"-> {r['label']}"] for r in drawn
    ]
    images = [r["image"] for r in drawn]
    sixels = draw(images, captions, graphics, note)
    if sixels:
        sys.stdout.write(sixels)
        sys.stdout.flush()
    else:
        colour = draws_colour(out)
        out.print(side_by_side([digit_rows(image, image.shape, colour) for image in images], captions, max_width=out.width))
