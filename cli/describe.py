"""Words for what a job is, shared by the jobs table, the terminal report and the HTML report."""

from __future__ import annotations

from dtrain.spec import FedAvg, JobSpec


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
