"""The HTML report: one self-contained page to open in a browser or send.

`render_html(report, history)` turns a job's `report.json` and its per-epoch metrics
into a page holding what the terminal report shows (accuracy, per-epoch figures,
per-class and per-worker tables, the confusion matrix, example and misclassified
digits) plus PNG plots drawn with matplotlib: accuracy and loss by epoch, the
confusion matrix as a heatmap, samples/s by worker, and each shown digit's ten
probabilities. Everything is inline: the CSS in a <style>, every image a
``data:image/png;base64`` URI. The page has no script and names no external URL;
its Content-Security-Policy forbids loading anything else. Every piece of text is
HTML-escaped.

matplotlib is imported here only when a page is rendered (the CLI imports this
module only for ``--html``), with the Agg backend: figures are drawn off-screen,
never on a display.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dtrain.cli.report import combine_rule, job_kind, headline, target_line, worst_cells
from dtrain.errors import UserError

#: Figures' resolution: their pixel size is their size in inches times this.
DPI = 100
#: How many pixels a digit's pixel becomes on the page (by CSS, not in the PNG).
DIGIT_ZOOM = 3

TEST_COLOUR = "#1f6fb4"
TRAIN_COLOUR = "#e07b10"
RIGHT_COLOUR = "#2e9a3e"
WRONG_COLOUR = "#d1342f"
OTHER_COLOUR = "#a9b2bd"

CSS = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1d232b; background: #f6f7f9; margin: 0; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #dde2e8; }
p { margin: 6px 0; }
.summary { font-size: 18px; }
.summary strong { font-size: 22px; }
.muted { color: #5f6b78; }
.card { background: #fff; border: 1px solid #dde2e8; border-radius: 8px; padding: 12px 14px; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 18px; margin: 12px 0 0; }
.facts dt { color: #5f6b78; }
.facts dd { margin: 0; }
.plots { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
.plots img { max-width: 100%; height: auto; }
table { border-collapse: collapse; background: #fff; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 0 0 6px; }
th, td { padding: 3px 10px; border: 1px solid #dde2e8; text-align: right; }
th { background: #eef1f4; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td.right { background: #d8f0dc !important; color: #145a22; font-weight: 600; }
td.worst { background: #fad4d2 !important; color: #8e1713; font-weight: 600; }
td.zero { color: #b3bac3; }
td.low { color: #8e1713; font-weight: 600; }
.tables { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.gallery { display: flex; flex-wrap: wrap; gap: 14px; }
.gallery figure { margin: 0; width: 300px; }
.gallery .pictures { display: flex; gap: 8px; align-items: center; }
img.digit { image-rendering: pixelated; image-rendering: crisp-edges; border-radius: 4px; flex: none; }
img.probs { flex: none; }
figcaption { margin-top: 6px; font-size: 14px; }
figcaption .wrong { color: #8e1713; font-weight: 600; }
figcaption .ok { color: #145a22; font-weight: 600; }
details { margin-top: 14px; }
summary { cursor: pointer; font-weight: 600; margin-bottom: 6px; }
footer { margin-top: 40px; color: #5f6b78; font-size: 13px; }
"""


def esc(value: Any) -> str:
    """`value` as text safe inside HTML elements and quoted attributes."""
    return html.escape(str(value), quote=True)


def render_html(report: dict[str, Any], history: Sequence[dict[str, Any]] | None = None) -> str:
    """The whole page for a succeeded job's report (as in report.json) and its per-epoch metrics."""
    try:
        import matplotlib
    except ImportError:
        raise UserError("--html: drawing the plots needs matplotlib: pip install 'matplotlib>=3.7'") from None

    matplotlib.use("Agg")  # no display, ever; the figures below are drawn on Agg canvases directly too
    style = {
        "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "axes.spines.top": False,
        "axes.spines.right": False, "axes.grid": True, "grid.color": "#e3e7ec", "grid.linewidth": 0.8,
        "legend.frameon": False,
    }
    with matplotlib.rc_context(style):
        return _page(report, list(history or []))


def _page(report: dict[str, Any], history: list[dict[str, Any]]) -> str:
    test = report["test"]
    spec = report.get("spec", {})
    job_id = report.get("job_id", "")
    shape = tuple(report.get("dataset", {}).get("image_shape") or (28, 28))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Self-contained by construction, and by the browser's rule: nothing may be fetched.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>dtrain report: job {esc(job_id)}</title>",
        f"<style>{CSS}</style>",
        "</head><body><main>",
        f"<h1>dtrain report: job {esc(job_id)}</h1>",
        _summary(report),
        '<h2 id="training">Training</h2>',
        _curves(history),
        '<h2 id="classes">Per class and confusion matrix</h2>',
        _confusion(test["confusion"]),
        '<div class="tables">',
        _per_class_table(test),
        _confusion_table(test["confusion"]),
        "</div>",
        '<h2 id="workers">Workers</h2>',
        _workers(report.get("workers") or [], report.get("spec", {})),
        '<h2 id="misclassified">Most confident misclassifications</h2>',
        _gallery(report.get("misclassified") or [], shape, "No test digit was misclassified."),
        '<h2 id="examples">Examples</h2>',
        _gallery(report.get("examples") or [], shape, "No examples in this report."),
        f'<footer>Made by dtrain {esc(report.get("dtrain_version", ""))} from job {esc(job_id)}\'s report.json'
        f'{" and metrics.jsonl" if history else ""}. Spec: {esc(_spec_line(spec))}.</footer>',
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


# --- text -----------------------------------------------------------------------------------


def _spec_line(spec: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in spec.items() if value is not None)


def _summary(report: dict[str, Any]) -> str:
    test, spec, dataset = report["test"], report.get("spec", {}), report.get("dataset", {})
    accuracy = f"{test['accuracy'] * 100:.2f}%"
    rest = headline(report).removeprefix(f"Test accuracy {accuracy}")
    facts: list[tuple[str, str]] = []
    if report.get("layer_sizes"):
        facts.append(("model", "-".join(map(str, report["layer_sizes"])) + f" MLP, {spec.get('activation', '')}"))
    if dataset:
        facts.append(("dataset", f"{dataset.get('name', '')}: {dataset.get('train', '?')} training, {dataset.get('test', '?')} test images"
                      + (f" from {spec['data_dir']}" if spec.get("data_dir") else "")))
    if spec:
        facts.append(("training", f"lr {spec.get('lr')}, seed {spec.get('seed')}, {combine_rule(report)}"
                      + (f", kernel {report['kernel']}" if report.get("kernel") else "")))
        kind = job_kind(spec)
        if kind or spec.get("clients"):
            clients = f"{spec.get('clients_per_round') or spec['clients']} of {spec['clients']} clients a round" if spec.get("clients") else ""
            facts.append(("setting", ", ".join(part for part in (kind, clients) if part)))
    if report.get("rounds_per_epoch") and not spec.get("clients") and spec.get("mode") != "async":
        facts.append(("merges", f"{sum(report['rounds_per_epoch'])} rounds ({', '.join(map(str, report['rounds_per_epoch']))} by epoch)"))
    recoveries = report.get("recoveries") or []
    facts.append(("worker restarts", str(report.get("worker_restarts", 0))))
    facts.append(("recoveries", str(len(recoveries)) + (" (went back to the last checkpoint)" if recoveries else "")))
    target = target_line(report)
    if target:
        facts.append(("target", target.removeprefix("Target ")))
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    return (
        f'<div class="card"><p class="summary"><strong>Test accuracy {esc(accuracy)}</strong>{esc(rest)}</p>'
        f'<dl class="facts">{rows}</dl></div>'
    )


def _table(caption: str, header: Iterable[str], rows: Iterable[Iterable[str]], raw_cells: bool = False) -> str:
    """A table; cells are escaped unless `raw_cells` (then each is a whole <td> already)."""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(cell if raw_cells else f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _per_class_table(test: dict[str, Any]) -> str:
    support = np.asarray(test["confusion"]).sum(axis=1)
    f1 = list(test["f1"])
    lowest = int(np.argmin(f1)) if f1 else -1
    rows = []
    for k in range(len(support)):
        cls = ' class="low"' if k == lowest else ""
        rows.append([
            f"<td>{k}</td>",
            f"<td>{test['precision'][k]:.3f}</td>",
            f"<td>{test['recall'][k]:.3f}</td>",
            f"<td{cls}>{f1[k]:.3f}</td>",
            f"<td>{int(support[k])}</td>",
        ])
    return _table("Per class (test set; lowest F1 in red)", ["class", "precision", "recall", "F1", "support"], rows, raw_cells=True)


def _confusion_table(confusion: Sequence[Sequence[int]]) -> str:
    m = np.asarray(confusion)
    worst = worst_cells(m)
    rows = []
    for r in range(m.shape[0]):
        cells = [f'<th scope="row">{r}</th>']
        for c in range(m.shape[1]):
            cls = "right" if r == c else "worst" if (r, c) in worst else "zero" if m[r, c] == 0 else ""
            cells.append(f'<td class="{cls}">{int(m[r, c])}</td>' if cls else f"<td>{int(m[r, c])}</td>")
        rows.append(cells)
    return _table(
        "Confusion matrix (rows true, columns predicted; worst mistakes in red)",
        ["true", *map(str, range(m.shape[1]))], rows, raw_cells=True,
    )


def _percent(value: Any) -> str:
    return "" if value is None else f"{value * 100:.2f}%"


def _number(value: Any, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


# --- figures --------------------------------------------------------------------------------


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _img(fig, alt: str, css_class: str = "") -> str:
    """The figure as an <img> with a PNG data URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    width, height = (int(round(v)) for v in fig.get_size_inches() * DPI)
    return _data_img(buffer.getvalue(), alt, width, height, css_class)


def _data_img(png: bytes, alt: str, width: int, height: int, css_class: str = "") -> str:
    cls = f' class="{esc(css_class)}"' if css_class else ""
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return f'<img{cls} src="{uri}" width="{width}" height="{height}" alt="{esc(alt)}">'


def _curves(history: list[dict[str, Any]]) -> str:
    if not history:
        return '<p class="muted">No per-epoch metrics were recorded for this job.</p>'
    from matplotlib.ticker import MaxNLocator

    word = "round" if "round" in history[0] else "epoch"  # a federated job is scored by rounds
    epochs = [h.get("round", h["epoch"]) for h in history]
    images = []
    for key, title, scale, unit in (("accuracy", f"Accuracy by {word}", 100, "%"), ("loss", f"Loss by {word}", 1, "")):
        fig = _figure(5.3, 3.2)
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
        images.append(_img(fig, alt))
    accuracy = [h["test_accuracy"] for h in history]
    best = int(np.argmax(accuracy))
    trend = (
        f"Test accuracy {accuracy[0] * 100:.2f}% after {word} {epochs[0]}, {accuracy[-1] * 100:.2f}% after {word} {epochs[-1]} "
        f"(best {accuracy[best] * 100:.2f}% at {word} {epochs[best]}); test loss {history[0]['test_loss']:.4f} -> {history[-1]['test_loss']:.4f}."
    )
    rows = [
        [str(e), _percent(h.get("test_accuracy")), _number(h.get("test_loss")),
         _percent(h.get("train_accuracy")), _number(h.get("train_loss")),
         "" if h.get("samples_per_s") is None else f"{h['samples_per_s']:,.0f}",
         "" if h.get("wall_time_s") is None else f"{h['wall_time_s']:.1f}"]
        for e, h in zip(epochs, history)
    ]
    table = _table(f"By {word}", [word, "test acc", "test loss", "train acc", "train loss", "samples/s", "wall s"], rows)
    opened = " open" if len(rows) <= 12 else ""  # a long run's table is there, folded
    return (
        f'<p>{esc(trend)}</p><div class="plots">{"".join(images)}</div>'
        f"<details{opened}><summary>Figures of each {word} scored ({len(rows)})</summary>{table}</details>"
    )


def _confusion(confusion: Sequence[Sequence[int]]) -> str:
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    m = np.asarray(confusion)
    n = m.shape[0]
    fig = _figure(6.0, 5.2)
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
    return f'<div class="plots">{_img(fig, alt)}</div>'


def _workers(workers: list[dict[str, Any]], spec: dict[str, Any]) -> str:
    if not workers:
        return '<p class="muted">This report has no per-worker figures.</p>'
    rows = [
        [str(w.get("rank", "")), str(w.get("shard", "")), f"{w.get('samples', 0):,}",
         f"{w.get('samples_per_s', 0):,.0f}", "" if w.get("busy_s") is None else f"{w['busy_s']:.2f}",
         "yes" if w.get("restarted") else ""]
        for w in workers
    ]
    table = _table("Per worker", ["rank", "shard", "samples", "samples/s", "busy s", "restarted"], rows)
    plot = ""
    if len(workers) > 1:
        fig = _figure(max(3.2, 0.45 * len(workers) + 1.6), 2.6)
        ax = fig.add_subplot()
        ranks = [w.get("rank", i) for i, w in enumerate(workers)]
        speeds = [w.get("samples_per_s", 0) / 1000 for w in workers]
        ax.bar([str(r) for r in ranks], speeds, color=[WRONG_COLOUR if w.get("restarted") else TEST_COLOUR for w in workers])
        ax.set_xlabel("worker rank")
        ax.set_ylabel("thousand samples/s")
        ax.set_title("Training speed by worker" + (" (red: restarted)" if any(w.get("restarted") for w in workers) else ""))
        ax.grid(axis="x", visible=False)
        alt = "Samples per second by worker: " + ", ".join(f"worker {r} {s:.0f}k" for r, s in zip(ranks, speeds))
        plot = _img(fig, alt) + _loss_by_worker(workers, spec)
    return f'<div class="tables">{table}{plot}</div>'


def _loss_by_worker(workers: list[dict[str, Any]], spec: dict[str, Any]) -> str:
    """Each worker's training loss by epoch on its own shard (where they differ: skewed shards, a straggler).

    A federated job's workers count scorings, drawn at their rounds; an async job's count
    their own passes over their shards, which run ahead of or behind the job's epochs."""
    rounds = spec.get("rounds")
    x_of = (lambda p: min(p * spec.get("eval_every", 1), rounds)) if rounds else (lambda p: p)  # noqa: E731
    xlabel = "round" if rounds else "pass over its own shard" if spec.get("mode") == "async" else "epoch"
    curves = [(w.get("rank", i), w.get("by_epoch") or []) for i, w in enumerate(workers)]
    curves = [(rank, [(x_of(e["epoch"]), e["train_loss"]) for e in by if e.get("train_loss") is not None]) for rank, by in curves]
    if not any(len(points) > 1 for _, points in curves):
        return ""
    fig = _figure(5.3, 3.2)
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
    alt = f"Training loss by {'round' if rounds else 'epoch'} of each worker: " + "; ".join(
        f"worker {rank} " + " ".join(f"{loss:.4f}" for _, loss in points) for rank, points in curves
    )
    return _img(fig, alt)


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


def _probability_chart(item: dict[str, Any]) -> str:
    p = list(item["probabilities"])
    label, predicted = item["label"], item["predicted"]
    fig = _figure(1.9, 1.25)
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
    alt = f"Probabilities of test digit #{item['index']}: " + ", ".join(f"{k} {v * 100:.1f}%" for k, v in top3(p))
    return _img(fig, alt, "probs")


def _gallery(items: list[dict[str, Any]], shape: tuple[int, int], empty: str) -> str:
    if not items:
        return f'<p class="muted">{esc(empty)}</p>'
    cards = []
    for item in items:
        right = item["label"] == item["predicted"]
        digit = _data_img(
            digit_png(item["pixels"], shape),
            f"test digit #{item['index']}, a {item['label']}, read as {item['predicted']}",
            shape[1] * DIGIT_ZOOM, shape[0] * DIGIT_ZOOM, "digit",
        )
        chart = _probability_chart(item) if item.get("probabilities") else ""
        ranked = "" if not item.get("probabilities") else "<br>top 3: " + esc(
            ", ".join(f"{k}: {v * 100:.1f}%" for k, v in top3(item["probabilities"]))
        )
        verdict = "ok" if right else "wrong"
        cards.append(
            f'<figure class="card"><div class="pictures">{digit}{chart}</div>'
            f"<figcaption>test #{esc(item['index'])}: true {esc(item['label'])} "
            f'<span class="{verdict}">&rarr; {esc(item["predicted"])}</span>, '
            f"p = {item['confidence'] * 100:.1f}%{ranked}</figcaption></figure>"
        )
    return f'<div class="gallery">{"".join(cards)}</div>'


# --- the file ---------------------------------------------------------------------------------


def check_html_path(path: Path, option: str = "--html") -> Path:
    """Refuse, before any work, a destination that cannot be written: UserError naming it."""
    where = f"{option}: {path}"
    if path.is_dir():
        raise UserError(f"{where}: is a directory; give a file name such as report.html")
    parent = path.parent
    if not parent.exists():
        raise UserError(f"{where}: directory does not exist")
    if not parent.is_dir():
        raise UserError(f"{where}: {parent} is not a directory")
    return path


def write_html(path: Path, page: str, option: str = "--html") -> Path:
    """Write the page atomically (a temporary file in the same directory, then a rename)."""
    from dtrain.cluster.storage import write_atomic

    check_html_path(path, option)
    try:
        write_atomic(path, page.encode("utf-8"))
    except OSError as e:
        raise UserError(f"{option}: {path}: {(e.strerror or str(e)).lower()}") from None
    return path
