"""The end-of-job report for humans: accuracy, per-class table, digits drawn in the terminal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dtrain.cli.render import digit_rows, draws_colour, side_by_side
from dtrain.cli.sixel import pictures, sixels_wanted
from dtrain.cluster.job_report import JobReport
from dtrain.cli.describe import clients_line, job_kind
from dtrain.spec import FedAvg


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


def headline(report: JobReport) -> str:
    """The report's first line: accuracy, loss, epochs, workers, time (the terminal's and the HTML page's)."""
    test, epochs, timing, spec = report.test, report.epochs_run, report.timing, report.spec
    if isinstance(spec.algorithm, FedAvg):
        name = "FedProx" if report.algorithm == "fedprox" else "federated averaging"
        done = f"{report.rounds_run} rounds of {name} ({clients_line(spec.algorithm)} each)"
    else:
        done = f"{epochs} epoch{'s' if epochs != 1 else ''}"
    kind = job_kind(spec)
    return (
        f"Test accuracy {test['accuracy'] * 100:.2f}%  (loss {test['loss']:.4f})  "
        f"after {done} on {spec.workers} workers{f' ({kind})' if kind else ''}, "
        f"{timing['total_s']:.1f} s total ({timing['train_s']:.1f} s training)"
    )


def combine_rule(report: JobReport) -> str:
    """The server's update rule as it ran: e.g. 'BMUF, block momentum 0.875 -> 0.5', 'FedAvg', 'staleness-scaled'."""
    momenta, algorithm = report.block_momentum, report.algorithm
    if algorithm == "async":
        return "staleness-scaled updates (1 / (1 + staleness))"
    mu = getattr(report.spec.algorithm, "mu", None)
    name = {"fedavg": "FedAvg", "fedprox": f"FedProx (mu {mu})"}.get(algorithm, "weighted averaging")
    if not any(momenta):
        return name
    first, last = momenta[0], momenta[-1]
    span = f"{first:g}" if first == last else f"{first:g} -> {last:g}"
    return f"{name} with server momentum {span}" if report.federated else f"BMUF, block momentum {span}"


def period(report: JobReport, scored: int) -> str:
    """'epoch N', or in a federated job 'round R', for the job's scored period `scored` (1-based)."""
    return f"{report.spec.algorithm.unit} {report.spec.period_end(scored)}"


def target_line(report: JobReport) -> str | None:
    """Whether an --until-accuracy target was reached, for a job that had one."""
    target = report.until_accuracy
    if not target:
        return None
    return f"Target {target['target'] * 100:.2f}%: " + (
        f"reached at {period(report, target['epoch'])}, {target['train_time_s']:.2f} s into training" if target["reached"] else "not reached"
    )


def worst_cells(confusion: list[list[int]], worst: int = 3) -> set[tuple[int, int]]:
    """The `worst` largest mistakes of a confusion matrix, as (true, predicted) cells that are not zero."""
    m = np.asarray(confusion)
    off = m.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:worst]
    return {divmod(int(i), m.shape[1]) for i in flat if off.flat[i] > 0}


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
