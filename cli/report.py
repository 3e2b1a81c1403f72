"""The end-of-job report for humans: accuracy, per-class table, digits drawn in the terminal."""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from dtrain.cli.render import ascii_digit, side_by_side


def print_report(console: Console, report: dict[str, Any], where: str) -> None:
    test = report["test"]
    spec = report["spec"]
    timing = report["timing"]
    console.print(
        f"[bold]Test accuracy {test['accuracy'] * 100:.2f}%[/bold]  (loss {test['loss']:.4f})  "
        f"after {report['epochs_run']} epoch{'s' if report['epochs_run'] != 1 else ''} on {spec['workers']} workers, "
        f"{timing['total_s']:.1f} s total ({timing['train_s']:.1f} s training)",
        soft_wrap=True,
    )
    target = report.get("until_accuracy")
    if target:
        console.print(
            f"Target {target['target'] * 100:.2f}%: "
            + (f"reached at epoch {target['epoch']}, {target['train_time_s']:.2f} s into training"
               if target["reached"] else "not reached")
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
    shape = tuple(report["dataset"]["image_shape"])
    for title, items in (("Examples", report["examples"]), ("Most confident misclassifications", report["misclassified"][:3])):
        if not items:
            continue
        console.print(f"[bold]{title}[/bold]")
        blocks = [ascii_digit(np.asarray(item["pixels"], dtype=np.uint8), shape) for item in items]
        captions = [
            [f"test #{item['index']}", f"true {item['label']} -> {item['predicted']}", f"p = {item['confidence'] * 100:.1f}%"]
            for item in items
        ]
        console.print(side_by_side(blocks, captions, max_width=console.width), markup=False, highlight=False)
    console.print(where, markup=False, highlight=False, soft_wrap=True)
