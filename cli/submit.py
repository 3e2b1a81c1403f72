"""`dtrain submit` and `dtrain resume`: validate the options into a JobSpec, run or submit the job, follow it (cli/follow.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError

from dtrain.cli.app import (
    Address,
    CopyTo,
    Detach,
    JobId,
    Json,
    Local,
    Storage,
    app,
    check_out_dir,
    user_errors,
)
from dtrain.errors import UserError
from dtrain.spec import JobSpec


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def build_spec(options: dict[str, Any]) -> JobSpec:
    """Validate the options into a JobSpec; a bad one raises UserError naming the option."""
    try:
        return JobSpec(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as e:
        first = e.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if first["loc"]:
            field = str(first["loc"][0])
        else:  # a rule across fields names its field first: "rounds: ..."
            field, _, message = message.partition(": ")
        message = re.sub(r"`(\w+)`", lambda m: option_name(m.group(1)), message)
        if "got " not in message and options.get(field) is not None:
            message += f" (got {options.get(field)!r})"
        raise UserError(f"{option_name(field)}: {message}") from None


# Long: one parameter per option of the job spec (Typer reads the options from the signature);
# the body is a dozen lines.
@app.command()
def submit(
    workers: Annotated[int, typer.Option(help="Worker actors, each owning one shard of the training set.")] = 8,
    epochs: Annotated[int, typer.Option(help="Passes over the training set.")] = 32,
    lr: Annotated[float, typer.Option(help="Per-sample SGD learning rate.")] = 0.01,
    hidden: Annotated[str, typer.Option(help="Hidden layer sizes, e.g. 64 or 256,128.")] = "64",
    activation: Annotated[str, typer.Option(help="Hidden activation: relu or sigmoid.")] = "relu",
    sync_every: Annotated[
        Optional[int],
        typer.Option(help="Samples each worker trains between weight syncs in epoch 1.", show_default="with bmuf, the larger of 2000/workers and shard/(4 x workers), shard = samples per worker; else 2000/workers"),
    ] = None,
    sync_growth: Annotated[
        Optional[float],
        typer.Option(help="Factor the sync block grows by each epoch, up to a whole shard.", show_default="2"),
    ] = None,
    combine: Annotated[str, typer.Option(help="Combine rule: bmuf (block momentum) or average.")] = "bmuf",
    block_momentum: Annotated[
        Optional[float],
        typer.Option(
            help="BMUF block momentum (with --clients: FedAvg's server momentum).",
            show_default="1 - 1/workers, at most 0.5 on whole-shard rounds; 0 with --clients",
        ),
    ] = None,
    cpus_per_worker: Annotated[
        Optional[float],
        typer.Option(
            help="CPUs each worker reserves; refused at once if the cluster cannot hold them.",
            show_default="1 where the cluster has enough CPUs, else an equal share",
        ),
    ] = None,
    kernel: Annotated[str, typer.Option(help="SGD kernel: auto, numba or numpy.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same weights.")] = 0,
    until_accuracy: Annotated[
        Optional[float], typer.Option(help="Stop once test accuracy reaches this fraction, e.g. 0.97.")
    ] = None,
    data_dir: Annotated[
        Optional[Path],
        typer.Option(
            help="Directory of the four IDX files (on the head node, for a cluster).",
            show_default="the MNIST shipped with dtrain",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Samples per SGD step: 1 is per-sample SGD; 0 one step on all of a client's data (FedSGD).")
    ] = 1,
    shard: Annotated[str, typer.Option(help="Data split over workers/clients: iid or label-skew (1-2 classes each).")] = "iid",
    mode: Annotated[str, typer.Option(help="sync (rounds with a barrier) or async (each worker on its own).")] = "sync",
    max_staleness: Annotated[
        Optional[int], typer.Option(help="async: drop updates older than this many server versions.", show_default="2 x workers")
    ] = None,
    reduce: Annotated[
        str,
        typer.Option(
            help="How a round's results reach the server: flat (one call), tree (a reducer per node sums its "
            "workers' first), auto (tree for 32+ workers spanning 2+ nodes)."
        ),
    ] = "auto",
    straggler_delay: Annotated[
        float, typer.Option(help="Seconds worker 0 waits before each block: a deliberately slow worker.")
    ] = 0.0,
    clients: Annotated[
        Optional[int], typer.Option(help="Federated averaging: split the data over this many clients, hosted by the workers.")
    ] = None,
    clients_per_round: Annotated[
        Optional[int], typer.Option(help="Federated: clients sampled each round.", show_default="all")
    ] = None,
    local_epochs: Annotated[int, typer.Option(help="Federated: passes each sampled client makes over its data per round.")] = 1,
    rounds: Annotated[Optional[int], typer.Option(help="Federated: rounds to run (instead of --epochs).")] = None,
    eval_every: Annotated[int, typer.Option(help="Federated: rounds between scorings of the global model.")] = 1,
    mu: Annotated[
        Optional[float],
        typer.Option(help="FedProx: each client's proximal term mu/2 * ||w - w_global||^2 (with --clients).", show_default="none: FedAvg"),
    ] = None,
    out_dir: CopyTo = None,
    detach: Detach = False,
    address: Address = None,
    local: Local = False,
    storage: Storage = None,
    as_json: Json = False,
) -> None:
    """Train the MLP on the data, spread over Ray workers, and report how it did.

    Follows the job with a progress display until it ends (Ctrl-C on a cluster
    detaches and leaves the job running). Exit code 0: the job succeeded;
    1: it failed or was cancelled; 2: a bad option, file or address.
    """
    from dtrain.cli.follow import drive, refuse_local_detach
    from dtrain.cli.stdout import reserve_stdout
    from dtrain.cluster.client import open_jobs

    with user_errors():
        spec = build_spec(
            dict(
                workers=workers, epochs=epochs, lr=lr, hidden=hidden, activation=activation, sync_every=sync_every,
                sync_growth=sync_growth, combine=combine, block_momentum=block_momentum,
                cpus_per_worker=cpus_per_worker, kernel=kernel, seed=seed, until_accuracy=until_accuracy,
                data_dir=str(data_dir.absolute()) if data_dir else None, batch_size=batch_size, shard=shard,
                mode=mode, max_staleness=max_staleness, reduce=reduce, straggler_delay=straggler_delay, clients=clients,
                clients_per_round=clients_per_round, local_epochs=local_epochs, rounds=rounds, eval_every=eval_every,
                mu=mu,
            )
        )
        if out_dir:
            check_out_dir(out_dir)  # made when the artifacts are copied into it
        reserve_stdout()  # before Ray connects: its driver prints raylet messages to descriptor 1
        jobs = open_jobs(address, local, storage)
        refuse_local_detach(detach, jobs)
        dataset = None
        if jobs.mode == "local":  # the job runs here: check it all before Ray starts
            from dtrain.cluster import placement
            from dtrain.cluster.runner import check_fits
            from dtrain.data.mnist import load_dataset

            dataset = load_dataset(spec.data_dir)
            check_fits(spec, dataset)
            placement.worker_cpus(spec.workers, spec.cpus_per_worker, [placement.local_cpus()])

    if jobs.mode == "cluster":
        start_on_cluster = lambda: jobs.submit(spec)  # noqa: E731
    else:
        start_on_cluster = None
    drive(
        jobs,
        spec,
        start_on_cluster=start_on_cluster,
        run_here=lambda created, on_event: jobs.run(spec, on_created=created, on_event=on_event, dataset=dataset),
        out_dir=out_dir,
        detach=detach,
        as_json=as_json,
    )


@app.command()
def resume(
    job_id: JobId,
    out_dir: CopyTo = None,
    detach: Detach = False,
    address: Address = None,
    local: Local = False,
    storage: Storage = None,
    as_json: Json = False,
) -> None:
    """Continue a FAILED or CANCELLED job from its last checkpoint (e.g. after the cluster was restarted).

    The epochs it had finished are kept; training goes on from the last one,
    and ends with the same weights the job would have had without the break.
    """
    from dtrain.cli.follow import drive, refuse_local_detach
    from dtrain.cli.stdout import reserve_stdout
    from dtrain.cluster.client import open_jobs

    with user_errors():
        if out_dir:
            check_out_dir(out_dir)  # made when the artifacts are copied into it
        reserve_stdout()  # before Ray connects: its driver prints raylet messages to descriptor 1
        jobs = open_jobs(address, local, storage)
        refuse_local_detach(detach, jobs)
        spec = jobs.job(job_id).spec
    drive(
        jobs,
        spec,
        start_on_cluster=(lambda: jobs.resume(job_id)) if jobs.mode == "cluster" else None,
        run_here=lambda created, on_event: jobs.resume(job_id, on_created=created, on_event=on_event),
        out_dir=out_dir,
        detach=detach,
        as_json=as_json,
    )
