"""The end-of-job report for humans: accuracy, per-class table, digits drawn in the terminal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dtrain.cli.render import digit_rows, draws_colour, side_by_side
from dtrain.cli.sixel import pictures, sixels_wanted
from dtrain.reports.job_report import JobReport
from dtrain.reports.words import headline, period, target_line, worst_cells
from dtrain.errors import UserError


SPARKS = "▁▂▃▄▅▆▇█"


def thin(values: list[float], at_most: int) -> list[float]:
    """At most `at_most` of `values`, evenly spaced, first and last kept (a long run's sparkline fits a line)."""
    if len(values) <= at_most:
        return values
    return [values[i] for i in np.linspace(0, len(values) - 1, at_most).round().astype(int)]


def sparkline(values: list[float]) -> str:
    """One character per value, scaled between the smallest and the largest."""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(SPARKS[min(len(SPARKS) - 1, int((v - lo) / span * len(SPARKS)))] for v in values)












def confusion_table(confusion: list[list[int]], worst: int = 3) -> Table:
    """The confusion matrix (rows: true class, columns: predicted), the diagonal in green
    and the `worst` largest mistakes in red."""
    m = np.asarray(confusion)
    mistakes = worst_cells(confusion, worst)
    table = Table(title="Confusion matrix (test set; rows true, columns predicted)", title_justify="left")
    table.add_column("true", justify="right")
    for k in range(m.shape[1]):
        table.add_column(str(k), justify="right")
    for r in range(m.shape[0]):
        cells = []
        for c in range(m.shape[1]):
            style = "bold green" if r == c else "bold red" if (r, c) in mistakes else "dim" if m[r, c] == 0 else ""
            cells.append(f"[{style}]{m[r, c]}[/]" if style else str(m[r, c]))
        table.add_row(str(r), *cells)
    return table


def workers_table(workers: list[dict[str, Any]]) -> Table:
    table = Table(title="Workers", title_justify="left")
    for column in ("rank", "shard", "samples", "samples/s", "restarted"):
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    # The figures first, so that a narrow terminal cuts the sparkline, not them.
    table.add_column("train loss", no_wrap=True, overflow="ellipsis")
    for w in workers:
        losses = [e["train_loss"] for e in w.get("by_epoch") or [] if e.get("train_loss") is not None]
        shown = thin(losses, 12)
        trend = f"{losses[0]:.3f} -> {losses[-1]:.3f} {sparkline(shown)}" if len(losses) > 1 else (
            f"{losses[0]:.3f}" if losses else ""
        )
        table.add_row(
            str(w["rank"]), str(w["shard"]), str(w["samples"]), f"{w['samples_per_s'] / 1000:.0f}k",
            "yes" if w.get("restarted") else "", trend,
        )
    return table


def print_report(
    console: Console,
    report: JobReport | dict[str, Any],
    where: str,
    history: list[dict[str, Any]] | None = None,
    graphics: bool = False,
    note: Callable[[str], None] | None = None,
) -> None:
    """The report on `console`. Digits are drawn as sixel images with `graphics` where the
    terminal draws them (else `note` says why), in grey half blocks on a terminal with
    colour, and with the ASCII ramp otherwise."""
    report = JobReport.of(report)
    test = report.test
    line = headline(report)
    accuracy = line.split("  ")[0]
    console.print(f"[bold]{accuracy}[/bold]{escape(line.removeprefix(accuracy))}", soft_wrap=True)
    target = target_line(report)
    if target:
        console.print(target)
    if history and len(history) > 1:
        accuracy = [h["test_accuracy"] for h in history]
        loss = [h["test_loss"] for h in history]
        unit = "round" if report.federated else "epoch"
        console.print(
            f"Test accuracy by {unit:<6} {sparkline(thin(accuracy, 40))}  {accuracy[0] * 100:.2f}% -> {accuracy[-1] * 100:.2f}% "
            f"(best {max(accuracy) * 100:.2f}% at {period(report, accuracy.index(max(accuracy)) + 1)})\n"
            f"Test loss by {unit:<10} {sparkline(thin(loss, 40))}  {loss[0]:.4f} -> {loss[-1]:.4f}",
            markup=False, highlight=False, soft_wrap=True,
        )
    table = Table(title="Per class (test set)", title_justify="left")
    for column in ("class", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="right")
    support = np.asarray(test["confusion"]).sum(axis=1)
    for k in range(len(support)):
        table.add_row(
            str(k), f"{test['precision'][k]:.3f}", f"{test['recall'][k]:.3f}", f"{test['f1'][k]:.3f}", str(support[k])
        )
    console.print(table)
    console.print(confusion_table(test["confusion"]))
    if report.workers:
        console.print(workers_table(report.workers))
    shape = tuple(report.dataset["image_shape"])
    sections = [(title, items) for title, items in (
        ("Examples", report.examples), ("Most confident misclassifications", report.misclassified[:3])
    ) if items]
    sixels = bool(sections) and sixels_wanted(graphics, note or (lambda message: None))
    colour = draws_colour(console)
    for title, items in sections:
        console.print(f"[bold]{title}[/bold]")
        images = [np.asarray(item.pixels, dtype=np.uint8).reshape(shape) for item in items]
        captions = [
            [f"test #{item.index}", f"true {item.label} -> {item.predicted}", f"p = {item.confidence * 100:.1f}%"]
            for item in items
        ]
        if sixels:
            console.file.write(pictures(images, captions))
            console.file.flush()
        else:
            console.print(side_by_side([digit_rows(image, shape, colour) for image in images], captions, max_width=console.width))
    console.print(where, markup=False, highlight=False, soft_wrap=True)


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
    from dtrain.files import write_atomic

    check_html_path(path, option)
    try:
        write_atomic(path, page.encode("utf-8"))
    except OSError as e:
        raise UserError(f"{option}: {path}: {(e.strerror or str(e)).lower()}") from None
    return path
