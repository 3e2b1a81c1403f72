"""The job spec: one pydantic model that every layer (CLI, runner, workers) reads.

A JobSpec holds what every job has (the model, the data, the workers) and, in
`algorithm`, the settings of the one training algorithm it runs: a discriminated
union on `name`, so that a setting of another algorithm cannot be written at
all. Each algorithm's settings live here, at the bottom of the package, so that
the cluster and worker code never import the CLI to learn what a job is; the
algorithms themselves are cluster/algorithms/ (one module each).

The flat form, every setting at the top level (`{"epochs": 3, "mode": "async"}`),
is what `dtrain submit`'s options and the spec.json files of earlier dtrain
versions hold; JobSpec reads it too (`nest_flat`), and `spec_error` words what
pydantic refuses in it as a UserError naming the setting. (About 330 lines: the
settings of every algorithm, their defaults and their help text are the whole
contract between a user and the engine, kept on one page.)
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dtrain.errors import UserError

#: The sync schedule of block momentum (docs/algorithms.md, "Combine rule and sync
#: schedule"), chosen by measurement. BMUF's momentum 1 - 1/K makes a round move
#: about as far as one worker over all K workers' samples, but it remembers about K
#: rounds, so its memory in samples is K x (K x block): it must stay short while the
#: model moves fast. The first epoch therefore has FIRST_EPOCH_ROUNDS_PER_WORKER x K
#: rounds (blocks of shard / 4K: 8 rounds at K = 2, 64 at K = 16, 256 at K = 64),
#: with at least DEFAULT_ROUND_SAMPLES samples a round up to K = 8 (30 rounds there,
#: as many as such few workers need). Blocks then grow by DEFAULT_SYNC_GROWTH each
#: epoch (longer blocks later cost fewer syncs and, as in post-local SGD, Lin et
#: al. 2020, end at a better model) until an epoch has K / LATE_ROUNDS_DIVISOR rounds
#: (one, a whole shard, up to K = 15). Plain and asynchronous averaging, with no
#: momentum to build up, keep 2000-sample rounds and grow to whole shards.
DEFAULT_ROUND_SAMPLES = 2000
FIRST_EPOCH_ROUNDS_PER_WORKER = 4
DEFAULT_SYNC_GROWTH = 2.0
LATE_ROUNDS_DIVISOR = 8
FLOOR_UNTIL_WORKERS = 8


def _shown(text: str) -> dict[str, str]:
    """A default too long for the field itself, as `--help` shows it."""
    return {"default_text": text}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Settings inherited from a parent model that this algorithm refuses (spec_error leaves them out).
    refused: ClassVar[tuple[str, ...]] = ()


class Rounds(Settings):
    """Epochs cut into rounds of blocks that grow each epoch (sync and async)."""

    epochs: int = Field(32, ge=1, description="Passes over the training set.")
    sync_every: int | None = Field(
        None,
        ge=1,
        description="Samples each worker trains between weight syncs in epoch 1.",
        json_schema_extra=_shown(
            "with bmuf, shard/(4 x workers), shard = samples per worker, and at least 2000/workers up to 8 workers; else 2000/workers"
        ),
    )
    sync_growth: float = Field(
        DEFAULT_SYNC_GROWTH, ge=1, le=16, allow_inf_nan=False,
        description="Factor the sync block grows by each epoch, up to a whole shard (bmuf: up to --late-rounds rounds an epoch).",
    )

    @property
    def periods(self) -> int:
        return self.epochs

    unit: ClassVar[str] = "epoch"

    def period_end(self, period: int) -> int:
        return period

    def period_label(self, period: int) -> str:
        return f"epoch {period}/{self.epochs}"

    def first_block(self, shard: int, workers: int) -> int:
        """Samples per worker per round in the first epoch, for `workers` shards of `shard` samples."""
        if self.sync_every:
            return self.sync_every
        block = max(1, DEFAULT_ROUND_SAMPLES // workers)
        if not self.builds_momentum:
            return block  # no block momentum to build up: few workers still want short blocks
        block_for_4k_rounds = -(-shard // (FIRST_EPOCH_ROUNDS_PER_WORKER * workers))
        return max(block, block_for_4k_rounds) if workers <= FLOOR_UNTIL_WORKERS else block_for_4k_rounds

    def last_block(self, shard: int, workers: int) -> int:
        """The size blocks grow to: a whole shard (Sync's block momentum stops earlier)."""
        return shard

    def block_size(self, epoch: int, shard: int, workers: int) -> int:
        """Samples per worker per round in `epoch` (0-based), for `workers` shards of `shard` samples."""
        grown = round(self.first_block(shard, workers) * self.sync_growth**epoch)
        return max(1, min(self.last_block(shard, workers), grown))

    @property
    def builds_momentum(self) -> bool:
        return False


Reduce = Literal["auto", "flat", "tree"]
REDUCE_HELP = (
    "How a round's results reach the server: flat (one call), tree (a reducer per node sums its "
    "workers' first), auto (tree for 32+ workers spanning 2+ nodes)."
)


class Sync(Rounds):
    """Synchronous rounds with a barrier, combined with block momentum (BMUF) or plainly averaged."""

    name: Literal["sync"] = "sync"
    combine: Literal["bmuf", "average"] = Field("bmuf", description="sync: bmuf (block momentum) or average.")
    block_momentum: float | None = Field(
        None, ge=0, lt=1, allow_inf_nan=False,
        description="Server momentum: BMUF's block momentum (sync), FedAvg's server momentum (fedavg, fedprox).",
        json_schema_extra=_shown("1 - 1/workers, then --late-momentum once the blocks stop growing (sync); 0 (fedavg)"),
    )
    late_rounds: int | None = Field(
        None, ge=1,
        description="sync with bmuf: rounds per epoch once the blocks stop growing.",
        json_schema_extra=_shown(f"workers / {LATE_ROUNDS_DIVISOR}, at least 1 (a whole shard)"),
    )
    late_momentum: float | None = Field(
        None, ge=0, lt=1, allow_inf_nan=False,
        description="sync with bmuf: block momentum once the blocks stop growing (see --late-rounds).",
        json_schema_extra=_shown("1 - 4/workers, at least min(1 - 1/workers, 0.5)"),
    )
    reduce: Reduce = Field("auto", description=REDUCE_HELP)

    @property
    def builds_momentum(self) -> bool:
        return self.combine == "bmuf"

    def rounds_when_grown(self, workers: int) -> int:
        """Rounds per epoch once the blocks stop growing."""
        if not self.builds_momentum:
            return 1
        return self.late_rounds or max(1, workers // LATE_ROUNDS_DIVISOR)

    def last_block(self, shard: int, workers: int) -> int:
        return -(-shard // min(shard, self.rounds_when_grown(workers)))

    @model_validator(mode="after")
    def _momentum_needs_bmuf(self) -> Sync:
        for name in ("block_momentum", "late_momentum", "late_rounds"):
            if getattr(self, name) is not None and self.combine == "average":
                raise ValueError(f"{name}: only with `combine` bmuf (plain averaging has no block momentum)")
        return self


class Async(Rounds):
    """Each worker pushes its change on its own, no barrier; stale changes count less, or not at all."""

    name: Literal["async"] = "async"
    max_staleness: int | None = Field(
        None, ge=0, description="async: drop updates older than this many server versions.",
        json_schema_extra=_shown("2 x workers"),
    )

    def staleness_bound(self, workers: int) -> int:
        return 2 * workers if self.max_staleness is None else self.max_staleness


class FedAvg(Settings):
    """Federated averaging (McMahan et al., 2017): virtual clients hosted by the workers."""

    name: Literal["fedavg"] = "fedavg"
    clients: int = Field(ge=1, description="Federated: split the data over this many clients, hosted by the workers.")
    rounds: int = Field(ge=1, description="Federated: rounds to run (instead of --epochs).")
    clients_per_round: int | None = Field(
        None, ge=1, description="Federated: clients sampled each round.", json_schema_extra=_shown("all")
    )
    local_epochs: int = Field(1, ge=1, le=1000, description="Federated: passes each sampled client makes over its data per round.")
    eval_every: int = Field(1, ge=1, description="Federated: rounds between scorings of the global model.")
    block_momentum: float | None = Sync.model_fields["block_momentum"]
    reduce: Reduce = Field("auto", description=REDUCE_HELP)

    @property
    def periods(self) -> int:
        return -(-self.rounds // self.eval_every)

    unit: ClassVar[str] = "round"

    def period_end(self, period: int) -> int:
        return min(period * self.eval_every, self.rounds)

    def period_label(self, period: int) -> str:
        return f"round {self.period_end(period)}/{self.rounds}"

    @model_validator(mode="after")
    def _sample_at_most_all(self) -> FedAvg:
        if self.clients_per_round is not None and self.clients_per_round > self.clients:
            raise ValueError(f"clients_per_round: {self.clients_per_round} is more than the {self.clients} clients")
        return self


class FedProx(FedAvg):
    """FedProx (Li et al., 2020): federated averaging whose clients add a proximal term."""

    name: Literal["fedprox"] = "fedprox"  # type: ignore[assignment]
    mu: float = Field(
        ge=0, le=1000, allow_inf_nan=False,
        description="FedProx: weight mu of each client's proximal term mu/2 * ||w - w_global||^2.",
    )


SERVER_LR_HELP = "FedAdam/FedYogi/SCAFFOLD: the server's step size (eta, eta_g) on the round's change of the model."
SERVER_LR_DEFAULTS = "0.01 (fedadam, fedyogi); 1 (scaffold)"


class FedAdam(FedAvg):
    """FedAdam (Reddi et al., 2021): federated averaging whose server steps with Adam."""

    name: Literal["fedadam"] = "fedadam"  # type: ignore[assignment]
    refused: ClassVar[tuple[str, ...]] = ("block_momentum",)  # FedAvg's, which the server's Adam replaces
    server_lr: float = Field(
        0.01, gt=0, le=10, allow_inf_nan=False, description=SERVER_LR_HELP, json_schema_extra=_shown(SERVER_LR_DEFAULTS)
    )
    beta1: float = Field(0.9, ge=0, lt=1, description="FedAdam/FedYogi: decay of the server's first moment.")
    beta2: float = Field(0.99, ge=0, lt=1, description="FedAdam/FedYogi: decay of the server's second moment.")
    tau: float = Field(
        1e-3, gt=0, le=1, allow_inf_nan=False,
        description="FedAdam/FedYogi: adaptivity tau, added to the root of the second moment.",
    )

    @model_validator(mode="after")
    def _no_block_momentum(self) -> FedAdam:
        if self.block_momentum is not None:
            raise ValueError(f"block_momentum: not with `algorithm` {self.name}, whose server keeps its own momentum (`beta1`)")
        return self


class FedYogi(FedAdam):
    """FedYogi (Reddi et al., 2021): FedAdam with Yogi's additive second moment."""

    name: Literal["fedyogi"] = "fedyogi"  # type: ignore[assignment]


class Scaffold(FedAvg):
    """SCAFFOLD (Karimireddy et al., 2020): federated averaging whose clients correct their drift with control variates."""

    name: Literal["scaffold"] = "scaffold"  # type: ignore[assignment]
    refused: ClassVar[tuple[str, ...]] = ("block_momentum",)  # FedAvg's; the server steps by eta_g times the mean change
    server_lr: float = Field(
        1.0, gt=0, le=10, allow_inf_nan=False, description=SERVER_LR_HELP, json_schema_extra=_shown(SERVER_LR_DEFAULTS)
    )
    local_steps: int | None = Field(
        None, ge=1, le=10_000_000,
        description="SCAFFOLD: SGD steps each sampled client takes per round, through its data pass after pass (instead of --local-epochs).",
        json_schema_extra=_shown("--local-epochs passes"),
    )

    @model_validator(mode="after")
    def _flat_and_no_block_momentum(self) -> Scaffold:
        if self.local_steps is not None and self.local_epochs != 1:
            raise ValueError("local_steps: not with `local_epochs`, which it replaces")
        if self.block_momentum is not None:
            raise ValueError("block_momentum: not with `algorithm` scaffold, whose server steps by `server_lr` times the mean change")
        if self.reduce == "tree":
            raise ValueError("reduce: not tree with `algorithm` scaffold, whose server needs each client's model (flat or auto)")
        return self


Algorithm = Annotated[Union[Sync, Async, FedAvg, FedProx, FedAdam, FedYogi, Scaffold], Field(discriminator="name")]
SETTINGS: dict[str, type[Settings]] = {
    s.model_fields["name"].default: s for s in (Sync, Async, FedAvg, FedProx, FedAdam, FedYogi, Scaffold)
}


class JobSpec(BaseModel):
    """What to train and how. Validated once, at the edge; passed down as is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int = Field(8, ge=1, description="Worker actors, each owning one shard of the training set.")
    lr: float = Field(0.01, gt=0, le=100, allow_inf_nan=False, description="Per-sample SGD learning rate.")
    hidden: tuple[int, ...] = Field((64,), description="Hidden layer sizes, e.g. 64 or 256,128.")
    activation: Literal["relu", "sigmoid"] = Field("relu", description="Hidden activation.")
    cpus_per_worker: float | None = Field(
        None, gt=0, le=1024, allow_inf_nan=False,
        description="CPUs each worker reserves; refused at once if the cluster cannot hold them.",
        json_schema_extra=_shown("1 where the cluster has enough CPUs, else an equal share"),
    )
    kernel: Literal["auto", "numba", "numpy"] = Field("auto", description="SGD kernel.")
    seed: int = Field(0, ge=0, description="Random seed: the same seed gives the same weights.")
    until_accuracy: float | None = Field(
        None, gt=0, le=1, allow_inf_nan=False, description="Stop once test accuracy reaches this fraction, e.g. 0.97."
    )
    data_dir: str | None = Field(
        None, description="Directory of the four IDX files (on the head node, for a cluster).",
        json_schema_extra=_shown("the MNIST shipped with dtrain"),
    )
    batch_size: int = Field(
        1, ge=0, le=65536,
        description="Samples per SGD step: 1 is per-sample SGD; 0 one step on all of a client's data (FedSGD).",
    )
    split: Literal["iid", "label-skew"] = Field(
        "iid", description="How the training set is split over workers or clients: iid, or label-skew (1-2 classes each)."
    )
    straggler_delay: float = Field(
        0.0, ge=0, le=60, allow_inf_nan=False,
        description="Seconds worker 0 waits before each block: a deliberately slow worker, for measuring.",
    )
    algorithm: Algorithm = Field(default_factory=Sync, description="The training algorithm and its settings.")

    @property
    def federated(self) -> bool:
        return isinstance(self.algorithm, FedAvg)

    @property
    def periods(self) -> int:
        """Scored periods of the job: epochs, or in a federated job, scorings every `eval_every` rounds."""
        return self.algorithm.periods

    def period_label(self, period: int) -> str:
        """How a human reads scored period `period` (1-based) of the job: 'epoch 3/32', or 'round 30/87'."""
        return self.algorithm.period_label(period)

    def period_end(self, period: int) -> int:
        """The epoch, or federated round, that scored period `period` (1-based) ends with."""
        return self.algorithm.period_end(period)

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, data: Any) -> Any:
        return nest_flat(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _clients_per_worker(self) -> JobSpec:
        if isinstance(self.algorithm, FedAvg) and self.algorithm.clients < self.workers:
            raise ValueError(
                f"clients: {self.algorithm.clients} clients for {self.workers} workers; expected at least one client per worker"
            )
        return self

    @model_validator(mode="after")
    def _local_steps_take_batches(self) -> JobSpec:
        if getattr(self.algorithm, "local_steps", None) is not None and self.batch_size == 0:
            raise ValueError("local_steps: not with `batch_size` 0 (one step on all of a client's data): give a batch size")
        return self

    @field_validator("hidden", mode="before")
    @classmethod
    def _parse_hidden(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",")]
            if not all(p.isdigit() for p in parts):
                raise ValueError(f"expected comma-separated positive integers like '64' or '256,128', got {value!r}")
            return tuple(int(p) for p in parts)
        return value

    @field_validator("hidden")
    @classmethod
    def _check_hidden(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("expected at least one hidden layer")
        if any(n < 1 or n > 65536 for n in value):
            raise ValueError(f"layer sizes must be between 1 and 65536, got {list(value)}")
        return value


#: Every algorithm setting's name, as it appears in the flat form.
ALGORITHM_FIELDS = sorted({f for s in SETTINGS.values() for f in s.model_fields} - {"name"})

#: What the flat spec.json of dtrain 0.1 held for a setting its job did not use.
_UNUSED = {"combine": "bmuf", "sync_growth": DEFAULT_SYNC_GROWTH, "reduce": "auto", "local_epochs": 1, "eval_every": 1, "epochs": 32}


def nest_flat(data: dict[str, Any]) -> dict[str, Any]:
    """The flat form -> JobSpec's: algorithm settings moved into `algorithm`.

    The algorithm is named by `algorithm` (a string), else by `clients` (fedavg;
    fedprox with `mu`), else by the `mode` of dtrain 0.1 (sync or async), else sync.
    A setting the algorithm lacks stays, to be refused by name, except in dtrain 0.1's
    form (it has `mode`): its spec.json held every setting, used or not, so one holding
    its unused value is dropped, as are the settings 0.1 accepted and ignored: `combine`
    (async, and federated, where "average" was the default's "no server momentum") and
    `reduce` (async).
    """
    if "shard" in data and "split" not in data:  # the flat form's name for `split`
        data = {("split" if k == "shard" else k): v for k, v in data.items()}
    flat = {k: data[k] for k in ALGORITHM_FIELDS if k in data and data[k] is not None}
    named = data.get("algorithm") if isinstance(data.get("algorithm"), str) else None
    if not flat and named is None and "mode" not in data:
        return data
    rest = {k: v for k, v in data.items() if k not in ALGORITHM_FIELDS and k not in ("algorithm", "mode")}
    federated = "fedprox" if "mu" in flat else "fedavg" if "clients" in flat else None
    name = str(named or federated or data.get("mode") or "sync")
    own = SETTINGS[name].model_fields if name in SETTINGS else {}

    def unused(key: str, value: Any) -> bool:
        ignored = {"async": ("combine", "reduce"), "fedavg": ("combine",), "fedprox": ("combine",)}.get(name, ())
        ignored_by_0_1 = key in ignored and value != "tree"  # 0.1 refused tree for async
        return "mode" in data and key not in own and (_UNUSED.get(key) == value or ignored_by_0_1)

    return {**rest, "algorithm": {"name": name, **{k: v for k, v in flat.items() if not unused(k, v)}}}


def spec_error(error: ValidationError, given: dict[str, Any]) -> UserError:
    """The first problem pydantic found in a spec, as a UserError naming the setting at fault
    (its field in the flat form); `given` is what was asked, quoted back in the message."""
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    message = first["msg"].removeprefix("Value error, ")
    if len(loc) == 3 and loc[0] == "algorithm":  # ("algorithm", name, setting)
        name, field = loc[1], loc[2]
        if first["type"] == "extra_forbidden":
            having = [n for n, s in SETTINGS.items() if field in s.model_fields and field not in s.refused]
            listed = ", ".join(having[:-1]) + " or " + having[-1] if len(having) > 1 else "".join(having)
            message = f"only for `algorithm` {listed}, not {name}" if having else "no such setting"
        elif first["type"] == "missing":
            message = f"required with `algorithm` {name}"
    elif loc[:1] == ["algorithm"] and first["type"] == "union_tag_invalid":
        field, message = "algorithm", f"expected one of {', '.join(SETTINGS)}"
    elif loc and loc[-1] not in SETTINGS and loc != ["algorithm"]:
        field = loc[-1]
    else:  # a rule across fields names its field first: "clients: ..."
        field, _, message = message.partition(": ")
    if given.get(field) is not None and "got " not in message and repr(given[field]) not in message:
        message += f" (got {given[field]!r})"
    return UserError(message, field)
