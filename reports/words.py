"""Words for what a job is and how it went, shared by the jobs table, the terminal report and the HTML report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dtrain.spec import FedAvg, JobSpec

if TYPE_CHECKING:  # only for annotations: `dtrain jobs` and `status` start without NumPy
    from dtrain.reports.job_report import JobReport


def job_kind(spec: JobSpec, short: bool = False) -> str:
    """What sets the job apart from a plain synchronous IID one: 'async, label-skew shards'; or,
    `short`, for a table's column, its algorithm and data split: 'sync', 'fedsgd+skew'."""
    name, skewed = spec.algorithm.name, spec.split != "iid"
    if short:
        kind = "fedsgd" if name == "fedavg" and spec.batch_size == 0 else name
        return kind + ("+skew" if skewed else "")
    parts = ["async"] if name == "async" else []
    if skewed:
        parts.append(f"{spec.split} shards")
    if spec.batch_size != 1:
        parts.append("full batches" if spec.batch_size == 0 else f"batches of {spec.batch_size}")
    if spec.straggler_delay:
        parts.append(f"worker 0 delayed {spec.straggler_delay:g} s a block")
    return ", ".join(parts)


def clients_line(fed: FedAvg) -> str:
    """'10 of 100 clients': sampled each round, of all."""
    return f"{fed.clients_per_round or fed.clients} of {fed.clients} clients"

def headline(report: JobReport) -> str:
    """The report's first line: accuracy, loss, epochs, workers, time (the terminal's and the HTML page's)."""
    test, epochs, timing, spec = report.test, report.epochs_run, report.timing, report.spec
    if isinstance(spec.algorithm, FedAvg):
        name = {"fedprox": "FedProx", "fedadam": "FedAdam", "fedyogi": "FedYogi", "scaffold": "SCAFFOLD"}.get(
            report.algorithm, "federated averaging"
        )
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
    settings = report.spec.algorithm
    if algorithm in ("fedadam", "fedyogi"):
        name = "FedAdam" if algorithm == "fedadam" else "FedYogi"
        return f"{name}: server lr {settings.server_lr:g}, beta1 {settings.beta1:g}, beta2 {settings.beta2:g}, tau {settings.tau:g}"
    if algorithm == "scaffold":
        return f"SCAFFOLD: control variates, server lr {settings.server_lr:g}"
    mu = getattr(settings, "mu", None)
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
    mistakes = sorted((-int(n), r, c) for r, row in enumerate(confusion) for c, n in enumerate(row) if r != c and n > 0)
    return {(r, c) for _, r, c in mistakes[:worst]}
