"""The HTML report's pieces: tables, and matplotlib figures as inline PNG images.

Each function returns HTML text; every piece of text in it is escaped (`esc`),
and every image is a ``data:image/png;base64`` URI. matplotlib is imported only
when a figure is drawn, with the Agg backend (html.render_html sets it).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from dtrain.spec import JobSpec

from dtrain.reports.words import worst_cells

#: Figures' resolution: their pixel size is their size in inches times this.
DPI = 100
#: How many pixels a digit's pixel becomes on the page (by CSS, not in the PNG).
DIGIT_ZOOM = 3

TEST_COLOUR = "#1f6fb4"
TRAIN_COLOUR = "#e07b10"
RIGHT_COLOUR = "#2e9a3e"
WRONG_COLOUR = "#d1342f"
OTHER_COLOUR = "#a9b2bd"


def esc(value: Any) -> str:
    """`value` as text safe inside HTML elements and quoted attributes."""
    return html.escape(str(value), quote=True)


def html_table(caption: str, header: Iterable[str], rows: Iterable[Iterable[str]], raw_cells: bool = False) -> str:
    """A table; cells are escaped unless `raw_cells` (then each is a whole <td> already)."""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(cell if raw_cells else f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def percent(value: Any) -> str:
    return "" if value is None else f"{value * 100:.2f}%"


def number(value: Any, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def img(fig, alt: str, css_class: str = "") -> str:
    """The figure as an <img> with a PNG data URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    width, height = (int(round(v)) for v in fig.get_size_inches() * DPI)
    return data_img(buffer.getvalue(), alt, width, height, css_class)


def data_img(png: bytes, alt: str, width: int, height: int, css_class: str = "") -> str:
    cls = f' class="{esc(css_class)}"' if css_class else ""
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f'<img{cls} src="{uri}" width="{width}" height="{height}" alt="{esc(alt)}">'


def curves(history: list[dict[str, Any]]) -> str:
    if not history:
        return '<p class="muted">No per-epoch metrics were recorded for this job.</p>'
    from matplotlib.ticker import MaxNLocator

    word = "round" if "round" in history[0] else "epoch"  # a federated job is scored by rounds
    epochs = [h.get("round", h["epoch"]) for h in history]
    images = []
    for key, title, scale, unit in (("accuracy", f"Accuracy by {word}", 100, "%"), ("loss", f"Loss by {word}", 1, "")):
        fig = figure(5.3, 3.2)
        ax = fig.add_subplot()
        for split, colour, dash in (("test", TEST_COLOUR, "-"), ("train", TRAIN_COLOUR, "--")):
            values = [h.get(f"{split}_{key}") for h in history]
            if any(v is None for v in values):
                continue
            ys = [v * scale for v in values]
            ax.plot(epochs, ys, dash, color=colour, marker="o", markersize=4, linewidth=1.8,
                    label=f"{split} ({ys[-1]:.2f}{unit} at the end)" if unit else f"{split} ({ys[-1]:.4f} at the end)")
        ax.set_title(title)
        ax.set_xlabel(word)
        ax.set_ylabel("accuracy (%)" if unit else "cross-entropy loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="lower right" if unit else "upper right")
        alt = (f"{title}, test and training, over {len(epochs)} scoring{'s' if len(epochs) != 1 else ''}: "
               + ("test accuracy " + " ".join(f"{h['test_accuracy'] * 100:.2f}%" for h in history) if unit
                  else "test loss " + " ".join(f"{h['test_loss']:.4f}" for h in history)))
        images.append(img(fig, alt))
    accuracy = [h["test_accuracy"] for h in history]
    best = int(np.argmax(accuracy))
    trend = (
        f"Test accuracy {accuracy[0] * 100:.2f}% after {word} {epochs[0]}, {accuracy[-1] * 100:.2f}% after {word} {epochs[-1]} "
        f"(best {accuracy[best] * 100:.2f}% at {word} {epochs[best]}); test loss {history[0]['test_loss']:.4f} -> {history[-1]['test_loss']:.4f}."
    )
    rows = [
        [str(e), percent(h.get("test_accuracy")), number(h.get("test_loss")),
         percent(h.get("train_accuracy")), number(h.get("train_loss")),
         "" if h.get("samples_per_s") is None else f"{h['samples_per_s']:,.0f}",
         "" if h.get("wall_time_s") is None else f"{h['wall_time_s']:.1f}"]
        for e, h in zip(epochs, history)
    ]
    table = html_table(f"By {word}", [word, "test acc", "test loss", "train acc", "train loss", "samples/s", "wall s"], rows)
    opened = " open" if len(rows) <= 12 else ""  # a long run's table is there, folded
    return (
        f'<p>{esc(trend)}</p><div class="plots">{"".join(images)}</div>'
        f"<details{opened}><summary>Figures of each {word} scored ({len(rows)})</summary>{table}</details>"
    )


def confusion_heatmap(confusion: Sequence[Sequence[int]]) -> str:
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    m = np.asarray(confusion)
    n = m.shape[0]
    fig = figure(6.0, 5.2)
    ax = fig.add_subplot()
    ax.grid(False)
    ax.set_facecolor("white")
    image = ax.imshow(np.ma.masked_equal(m, 0), cmap="Blues", norm=LogNorm(vmin=1, vmax=max(int(m.max()), 2)))
    dark = m.max() ** 0.6 if m.max() > 0 else 1
    for r in range(n):
        for c in range(m.shape[1]):
            if m[r, c]:
                ax.text(c, r, str(int(m[r, c])), ha="center", va="center", fontsize=7,
                        color="white" if m[r, c] > dark else "#1d232b")
    for r, c in worst_cells(m):
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor=WRONG_COLOUR, linewidth=2))
    ax.set_xticks(range(m.shape[1]))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix (test set)")
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(image, ax=ax, label="test digits (log scale; blank = none)", shrink=0.85)
    total = int(m.sum())
    wrong = total - int(np.trace(m))
    alt = (f"Confusion matrix heatmap of the test set: rows are the true classes, columns the predicted ones; "
           f"{wrong} of {total} digits off the diagonal")
    return f'<div class="plots">{img(fig, alt)}</div>'


def workers_section(workers: list[dict[str, Any]], spec: JobSpec) -> str:
    if not workers:
        return '<p class="muted">This report has no per-worker figures.</p>'
    rows = [
        [str(w.get("rank", "")), str(w.get("shard", "")), f"{w.get('samples', 0):,}",
         f"{w.get('samples_per_s', 0):,.0f}", "" if w.get("busy_s") is None else f"{w['busy_s']:.2f}",
         "yes" if w.get("restarted") else ""]
        for w in workers
    ]
    table = html_table("Per worker", ["rank", "shard", "samples", "samples/s", "busy s", "restarted"], rows)
    plot = ""
    if len(workers) > 1:
        fig = figure(max(3.2, 0.45 * len(workers) + 1.6), 2.6)
        ax = fig.add_subplot()
        ranks = [w.get("rank", i) for i, w in enumerate(workers)]
        speeds = [w.get("samples_per_s", 0) / 1000 for w in workers]
        ax.bar([str(r) for r in ranks], speeds, color=[WRONG_COLOUR if w.get("restarted") else TEST_COLOUR for w in workers])
        ax.set_xlabel("worker rank")
        ax.set_ylabel("thousand samples/s")
        ax.set_title("Training speed by worker" + (" (red: restarted)" if any(w.get("restarted") for w in workers) else ""))
        ax.grid(axis="x", visible=False)
        alt = "Samples per second by worker: " + ", ".join(f"worker {r} {s:.0f}k" for r, s in zip(ranks, speeds))
        plot = img(fig, alt) + loss_by_worker(workers, spec)
    return f'<div class="tables">{table}{plot}</div>'


def loss_by_worker(workers: list[dict[str, Any]], spec: JobSpec) -> str:
    """Each worker's training loss by epoch on its own shard (where they differ: skewed shards, a straggler).

    A federated job's workers count scorings, drawn at their rounds; an async job's count
    their own passes over their shards, which run ahead of or behind the job's epochs."""
    x_of = spec.period_end
    xlabel = "round" if spec.federated else "pass over its own shard" if spec.algorithm.name == "async" else "epoch"
    curves = [(w.get("rank", i), w.get("by_epoch") or []) for i, w in enumerate(workers)]
    curves = [(rank, [(x_of(e["epoch"]), e["train_loss"]) for e in by if e.get("train_loss") is not None]) for rank, by in curves]
    if not any(len(points) > 1 for _, points in curves):
        return ""
    fig = figure(5.3, 3.2)
    ax = fig.add_subplot()
    for rank, points in curves:
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, linewidth=1.2, label=f"worker {rank}")
    ax.set_title("Training loss by worker, on its own data")
    ax.set_xlabel(xlabel)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("cross-entropy loss")
    if len(curves) <= 10:
        ax.legend(fontsize=7, loc="upper right")
    alt = f"Training loss by {spec.algorithm.unit} of each worker: " + "; ".join(
        f"worker {rank} " + " ".join(f"{loss:.4f}" for _, loss in points) for rank, points in curves
    )
    return img(fig, alt)


def digit_png(pixels: Sequence[int], shape: tuple[int, int]) -> bytes:
    """A digit as a grayscale PNG, one pixel per pixel, light ink on dark as in MNIST."""
    from PIL import Image

    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8).reshape(shape), mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def top3(probabilities: Sequence[float]) -> list[tuple[int, float]]:
    p = np.asarray(probabilities, dtype=float)
    return [(int(k), float(p[k])) for k in np.argsort(-p, kind="stable")[:3]]


def probability_chart(item: Any) -> str:
    """The ten probabilities of an Example (job_report.py) as a bar chart."""
    p = list(item.probabilities)
    label, predicted = item.label, item.predicted
    fig = figure(1.9, 1.25)
    ax = fig.add_subplot()
    colours = [RIGHT_COLOUR if k == label else WRONG_COLOUR if k == predicted else OTHER_COLOUR for k in range(len(p))]
    ax.bar(range(len(p)), p, color=colours, width=0.75)
    ax.set_ylim(0, 1)
    ax.set_yticks([0, 0.5, 1])
    ax.set_xticks(range(len(p)))
    ax.tick_params(labelsize=7, length=2)
    for k, tick in enumerate(ax.get_xticklabels()):  # the true class in green, a wrong answer in red
        if k in (label, predicted):
            tick.set_color(colours[k])
            tick.set_fontweight("bold")
    ax.grid(axis="x", visible=False)
    alt = f"Probabilities of test digit #{item.index}: " + ", ".join(f"{k} {v * 100:.1f}%" for k, v in top3(p))
    return img(fig, alt, "probs")
