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

from collections.abc import Sequence
from typing import Any

import numpy as np

from dtrain.reports.html_parts import (
    DIGIT_ZOOM, confusion_heatmap, curves, data_img, digit_png, esc, probability_chart, html_table, top3, workers_section,
)
from dtrain.reports.words import clients_line, combine_rule, headline, job_kind, target_line, worst_cells
from dtrain.reports.job_report import Example, JobReport
from dtrain.errors import UserError
from dtrain.spec import FedAvg, JobSpec

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




def render_html(report: JobReport | dict[str, Any], history: Sequence[dict[str, Any]] | None = None) -> str:
    """The whole page for a succeeded job's report (report.json, typed or as read) and its per-epoch metrics."""
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
        return _page(JobReport.of(report), list(history or []))


def _page(report: JobReport, history: list[dict[str, Any]]) -> str:
    test, spec, job_id = report.test, report.spec, report.job_id
    shape = tuple(report.dataset.get("image_shape") or (28, 28))
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
        curves(history),
        '<h2 id="classes">Per class and confusion matrix</h2>',
        confusion_heatmap(test["confusion"]),
        '<div class="tables">',
        _per_class_table(test),
        _confusion_table(test["confusion"]),
        "</div>",
        '<h2 id="workers">Workers</h2>',
        workers_section(report.workers, spec),
        '<h2 id="misclassified">Most confident misclassifications</h2>',
        _gallery(report.misclassified, shape, "No test digit was misclassified."),
        '<h2 id="examples">Examples</h2>',
        _gallery(report.examples, shape, "No examples in this report."),
        f'<footer>Made by dtrain {esc(report.dtrain_version)} from job {esc(job_id)}\'s report.json'
        f'{" and metrics.jsonl" if history else ""}. Spec: {esc(_spec_line(spec))}.</footer>',
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


# --- text -----------------------------------------------------------------------------------


def _spec_line(spec: JobSpec) -> str:
    data = spec.model_dump(mode="json")
    settings = {"algorithm": spec.algorithm.name, **data.pop("algorithm")}
    del settings["name"]
    return ", ".join(f"{key} {value}" for key, value in {**data, **settings}.items() if value is not None)


def _summary(report: JobReport) -> str:
    test, spec, dataset = report.test, report.spec, report.dataset
    accuracy = f"{test['accuracy'] * 100:.2f}%"
    rest = headline(report).removeprefix(f"Test accuracy {accuracy}")
    facts: list[tuple[str, str]] = []
    if report.layer_sizes:
        facts.append(("model", "-".join(map(str, report.layer_sizes)) + f" MLP, {spec.activation}"))
    if dataset:
        facts.append(("dataset", f"{dataset.get('name', '')}: {dataset.get('train', '?')} training, {dataset.get('test', '?')} test images"
                      + (f" from {spec.data_dir}" if spec.data_dir else "")))
    facts.append(("training", f"lr {spec.lr}, seed {spec.seed}, {combine_rule(report)}"
                  + (f", kernel {report.kernel}" if report.kernel else "")))
    clients = clients_line(spec.algorithm) + " a round" if isinstance(spec.algorithm, FedAvg) else ""
    setting = ", ".join(part for part in (job_kind(spec), clients) if part)
    if setting:
        facts.append(("setting", setting))
    if report.rounds_per_epoch and report.algorithm == "sync":
        facts.append(("merges", f"{sum(report.rounds_per_epoch)} rounds ({', '.join(map(str, report.rounds_per_epoch))} by epoch)"))
    recoveries = report.recoveries
    facts.append(("worker restarts", str(report.worker_restarts)))
    facts.append(("recoveries", str(len(recoveries)) + (" (went back to the last checkpoint)" if recoveries else "")))
    target = target_line(report)
    if target:
        facts.append(("target", target.removeprefix("Target ")))
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    return (
        f'<div class="card"><p class="summary"><strong>Test accuracy {esc(accuracy)}</strong>{esc(rest)}</p>'
        f'<dl class="facts">{rows}</dl></div>'
    )




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
    return html_table("Per class (test set; lowest F1 in red)", ["class", "precision", "recall", "F1", "support"], rows, raw_cells=True)


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
    return html_table(
        "Confusion matrix (rows true, columns predicted; worst mistakes in red)",
        ["true", *map(str, range(m.shape[1]))], rows, raw_cells=True,
    )






# --- figures --------------------------------------------------------------------------------






















def _gallery(items: list[Example], shape: tuple[int, int], empty: str) -> str:
    if not items:
        return f'<p class="muted">{esc(empty)}</p>'
    cards = []
    for item in items:
        right = item.label == item.predicted
        digit = data_img(
            digit_png(item.pixels, shape),
            f"test digit #{item.index}, a {item.label}, read as {item.predicted}",
            shape[1] * DIGIT_ZOOM, shape[0] * DIGIT_ZOOM, "digit",
        )
        chart = probability_chart(item) if item.probabilities else ""
        ranked = "" if not item.probabilities else "<br>top 3: " + esc(
            ", ".join(f"{k}: {v * 100:.1f}%" for k, v in top3(item.probabilities))
        )
        verdict = "ok" if right else "wrong"
        cards.append(
            f'<figure class="card"><div class="pictures">{digit}{chart}</div>'
            f"<figcaption>test #{esc(item.index)}: true {esc(item.label)} "
            f'<span class="{verdict}">&rarr; {esc(item.predicted)}</span>, '
            f"p = {item.confidence * 100:.1f}%{ranked}</figcaption></figure>"
        )
    return f'<div class="gallery">{"".join(cards)}</div>'


# --- the file ---------------------------------------------------------------------------------
