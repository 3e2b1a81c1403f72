"""`dtrain submit` and `dtrain resume`: validate the options into a JobSpec, run or submit the job, follow it (cli/follow.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, get_args, get_origin

import typer
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from dtrain.cli.app import (
    Address,
    CopyTo,
    Detach,
    JobId,
    Json,
    Local,
    Storage,
    app,
    user_errors,
)
from dtrain.spec import SETTINGS, JobSpec, spec_error

#: `submit`'s parameters that say where and how to run, not what: not part of the spec.
CLIENT_OPTIONS = ("out_dir", "detach", "address", "local", "storage", "as_json")


def spec_field(name: str) -> FieldInfo:
    """The JobSpec field, or algorithm setting, called `name`."""
    for model in (JobSpec, *SETTINGS.values()):
        if name in model.model_fields:
            return model.model_fields[name]
    raise KeyError(name)


def from_spec(name: str, *flags: str) -> Any:
    """The `submit` option of spec setting `name`: help text, default and choices come
    from spec.py. The option itself defaults to None, "not given": the spec fills it in."""
    field = spec_field(name)
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    default = field.get_default(call_default_factory=False)
    shown = extra.get("default_text", False if field.is_required() or default is None else default)
    if isinstance(shown, tuple):
        shown = ",".join(map(str, shown))
    elif not isinstance(shown, (str, bool)):
        shown = f"{shown:g}" if isinstance(shown, float) else str(shown)
    choices = get_args(field.annotation) if get_origin(field.annotation) is Literal else ()
    metavar = "[" + "|".join(choices) + "]" if choices else None
    return typer.Option(*flags, help=field.description, show_default=shown, metavar=metavar)


def build_spec(options: dict[str, Any]) -> JobSpec:
    """Validate the options (the flat form: spec.py) into a JobSpec; a bad one raises
    UserError naming the option. Options left out (None) take the spec's defaults."""
    given = {k: v for k, v in options.items() if v is not None}
    try:
        return JobSpec(**given)
    except ValidationError as e:
        raise spec_error(e, given) from None


ALGORITHM_HELP = (
    "Training algorithm: sync (rounds, block momentum), async (no barrier), fedavg (federated "
    "averaging over --clients), fedprox (fedavg with a proximal term --mu), fedadam and "
    "fedyogi (fedavg whose server steps with Adam or Yogi, --server-lr), scaffold (fedavg whose "
    "clients correct their drift with control variates)."
)


# Long: one parameter per option (Typer reads the options from the signature); each
# option's help and default come from spec.py. The body is a dozen lines.
@app.command()
def submit(
    workers: Annotated[Optional[int], from_spec("workers")] = None,
    algorithm: Annotated[
        Optional[str],
        typer.Option(help=ALGORITHM_HELP, show_default="sync; fedavg with --clients, fedprox with --mu",
                     metavar="[" + "|".join(SETTINGS) + "]"),
    ] = None,
    epochs: Annotated[Optional[int], from_spec("epochs")] = None,
    lr: Annotated[Optional[float], from_spec("lr")] = None,
    hidden: Annotated[Optional[str], from_spec("hidden")] = None,
    activation: Annotated[Optional[str], from_spec("activation")] = None,
    sync_every: Annotated[Optional[int], from_spec("sync_every")] = None,
    sync_growth: Annotated[Optional[float], from_spec("sync_growth")] = None,
    combine: Annotated[Optional[str], from_spec("combine")] = None,
    block_momentum: Annotated[Optional[float], from_spec("block_momentum")] = None,
    late_rounds: Annotated[Optional[int], from_spec("late_rounds")] = None,
    late_momentum: Annotated[Optional[float], from_spec("late_momentum")] = None,
    cpus_per_worker: Annotated[Optional[float], from_spec("cpus_per_worker")] = None,
    kernel: Annotated[Optional[str], from_spec("kernel")] = None,
    seed: Annotated[Optional[int], from_spec("seed")] = None,
    until_accuracy: Annotated[Optional[float], from_spec("until_accuracy")] = None,
    data_dir: Annotated[Optional[Path], from_spec("data_dir")] = None,
    batch_size: Annotated[Optional[int], from_spec("batch_size")] = None,
    split: Annotated[Optional[str], from_spec("split", "--split", "--shard")] = None,
    max_staleness: Annotated[Optional[int], from_spec("max_staleness")] = None,
    reduce: Annotated[Optional[str], from_spec("reduce")] = None,
    straggler_delay: Annotated[Optional[float], from_spec("straggler_delay")] = None,
    clients: Annotated[Optional[int], from_spec("clients")] = None,
    clients_per_round: Annotated[Optional[int], from_spec("clients_per_round")] = None,
    local_epochs: Annotated[Optional[int], from_spec("local_epochs")] = None,
    rounds: Annotated[Optional[int], from_spec("rounds")] = None,
    eval_every: Annotated[Optional[int], from_spec("eval_every")] = None,
    mu: Annotated[Optional[float], from_spec("mu")] = None,
    server_lr: Annotated[Optional[float], from_spec("server_lr")] = None,
    local_steps: Annotated[Optional[int], from_spec("local_steps")] = None,
    beta1: Annotated[Optional[float], from_spec("beta1")] = None,
    beta2: Annotated[Optional[float], from_spec("beta2")] = None,
    tau: Annotated[Optional[float], from_spec("tau")] = None,
    mode: Annotated[Optional[str], typer.Option(hidden=True, help="Old name of --algorithm (sync or async).")] = None,
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
    settings = {name: value for name, value in locals().items() if name not in CLIENT_OPTIONS}  # the parameters
    settings["algorithm"] = settings.pop("mode") if algorithm is None else algorithm
    from dtrain.cli.follow import drive, jobs_to_follow

    with user_errors():
        settings["data_dir"] = str(data_dir.absolute()) if data_dir else None
        spec = build_spec(settings)
        jobs = jobs_to_follow(address, local, storage, out_dir, detach)
        dataset = None
        if jobs.runtime == "local":  # the job runs here: check it all before Ray starts
            from dtrain.cluster import placement
            from dtrain.cluster.runner import preflight

            dataset = preflight(spec, [placement.local_cpus()])

    if jobs.runtime == "cluster":
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
    from dtrain.cli.follow import drive, jobs_to_follow

    with user_errors():
        jobs = jobs_to_follow(address, local, storage, out_dir, detach)
        spec = jobs.job(job_id).spec
    drive(
        jobs,
        spec,
        start_on_cluster=(lambda: jobs.resume(job_id)) if jobs.runtime == "cluster" else None,
        run_here=lambda created, on_event: jobs.resume(job_id, on_created=created, on_event=on_event),
        out_dir=out_dir,
        detach=detach,
        as_json=as_json,
    )
