"""The job spec: one pydantic model that every layer (CLI, runner, workers) reads.

It lives in the root package so that the cluster and worker code never import
the CLI to learn what a job is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Samples all workers together train between two weight averagings in the first
#: epoch (each worker trains its share), and how much that block grows each epoch
#: (up to a whole shard). Chosen by measurement (README, "Combine rule and sync
#: schedule"): short blocks while the model moves fast keep 8 workers' per-epoch
#: accuracy near one worker's; long blocks later cost few syncs and, as in
#: post-local SGD (Lin et al., 2020), end at a better model. Block momentum
#: 1 - 1/K builds up over about K rounds, so with it fewer workers need fewer
#: short rounds: the first epoch has FIRST_EPOCH_ROUNDS_PER_WORKER x K rounds when
#: that is fewer (8 at K = 2, 16 at K = 4; 30 from K = 8 on, for MNIST's 60,000
#: samples). Plain and asynchronous averaging keep 30 (at K = 4, async needed 7
#: epochs to 97% with 16 rounds against 5 with 30).
DEFAULT_ROUND_SAMPLES = 2000
FIRST_EPOCH_ROUNDS_PER_WORKER = 4
DEFAULT_SYNC_GROWTH = 2.0


class JobSpec(BaseModel):
    """What to train and how. Validated once, at the edge; passed down as is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int = Field(8, ge=1, description="Worker actors, one data shard each.")
    epochs: int = Field(32, ge=1, description="Passes over the training set.")
    lr: float = Field(0.01, gt=0, le=100, allow_inf_nan=False, description="SGD learning rate.")
    hidden: tuple[int, ...] = Field((64,), description="Hidden layer sizes.")
    activation: Literal["relu", "sigmoid"] = "relu"
    sync_every: int | None = Field(
        None,
        ge=1,
        description="Samples per worker between syncs in the first epoch (default with bmuf: the larger of"
        " 2000 / workers and shard / (4 x workers), shard being the samples per worker; else 2000 / workers).",
    )
    sync_growth: float = Field(
        DEFAULT_SYNC_GROWTH, ge=1, le=16, allow_inf_nan=False, description="Factor the sync block grows by each epoch."
    )
    combine: Literal["bmuf", "average"] = Field(
        "bmuf", description="How the parameter server merges the workers' weights."
    )
    block_momentum: float | None = Field(
        None, ge=0, lt=1, allow_inf_nan=False, description="BMUF block momentum; default depends on workers."
    )
    cpus_per_worker: float | None = Field(
        None, gt=0, le=1024, allow_inf_nan=False, description="CPUs each worker reserves (default: fitted to the cluster)."
    )
    kernel: Literal["auto", "numba", "numpy"] = "auto"
    seed: int = Field(0, ge=0, description="Seeds init, shuffling: same seed, same weights.")
    until_accuracy: float | None = Field(
        None, gt=0, le=1, allow_inf_nan=False, description="Stop once test accuracy reaches this."
    )
    data_dir: str | None = Field(None, description="Directory of the four IDX files.")
    batch_size: int = Field(1, ge=0, le=65536, description="Samples per SGD step; 1 is per-sample SGD, 0 all of a block.")
    shard: Literal["iid", "label-skew"] = Field("iid", description="How the training set is split over workers or clients.")
    # Asynchronous mode: no round barrier.
    mode: Literal["sync", "async"] = Field("sync", description="sync: rounds with a barrier; async: each worker on its own.")
    max_staleness: int | None = Field(
        None, ge=0, description="async: drop updates more than this many server versions old (default: 2 x workers)."
    )
    reduce: Literal["auto", "flat", "tree"] = Field(
        "auto",
        description="How a round's results reach the parameter server: flat (all in one call), tree (one reducer "
        "per node sums its workers' results first), auto (tree for 32+ workers on 2 or more nodes).",
    )
    straggler_delay: float = Field(
        0.0, ge=0, le=60, allow_inf_nan=False, description="Seconds worker 0 waits before each block: a slow worker, for measuring."
    )
    # Federated averaging (McMahan et al., 2017): virtual clients hosted by the workers.
    clients: int | None = Field(None, ge=1, description="Federated: split the data over this many clients.")
    clients_per_round: int | None = Field(None, ge=1, description="Federated: clients sampled each round (default: all).")
    local_epochs: int = Field(1, ge=1, le=1000, description="Federated: passes each sampled client makes over its data per round.")
    rounds: int | None = Field(None, ge=1, description="Federated: rounds to run (instead of --epochs).")
    eval_every: int = Field(1, ge=1, description="Federated: rounds between two scorings of the global model.")
    # FedProx (Li et al., 2020): federated averaging whose clients add a proximal term.
    mu: float | None = Field(
        None, ge=0, le=1000, allow_inf_nan=False,
        description="FedProx: weight mu of each client's proximal term mu/2 * ||w - w_global||^2 (federated jobs).",
    )

    @property
    def federated(self) -> bool:
        return self.clients is not None

    @property
    def algorithm(self) -> str:
        """The training algorithm's name (cluster/algorithms/): sync, async, fedavg or fedprox."""
        if self.federated:
            return "fedavg" if self.mu is None else "fedprox"
        return self.mode

    @property
    def periods(self) -> int:
        """Scored periods of the job: epochs, or in a federated job, scorings every --eval-every rounds."""
        if self.rounds is not None:
            return -(-self.rounds // self.eval_every)
        return self.epochs

    def period_label(self, period: int) -> str:
        """How a human reads scored period `period` (1-based) of the job: 'epoch 3/32', or 'round 30/87'."""
        if self.rounds is not None:
            return f"round {min(period * self.eval_every, self.rounds)}/{self.rounds}"
        return f"epoch {period}/{self.epochs}"

    @property
    def staleness_bound(self) -> int:
        return 2 * self.workers if self.max_staleness is None else self.max_staleness

    @model_validator(mode="after")
    def _check_modes(self) -> JobSpec:
        federated_only = {"clients_per_round": None, "local_epochs": 1, "rounds": None, "eval_every": 1, "mu": None}
        if self.clients is None:
            for name, default in federated_only.items():
                if getattr(self, name) != default:
                    raise ValueError(f"{name}: only for a federated job (`clients` set)")
        else:
            if self.rounds is None:
                raise ValueError("rounds: a federated job (`clients` set) needs the number of rounds to run")
            if self.clients < self.workers:
                raise ValueError(f"clients: {self.clients} clients for {self.workers} workers; expected at least one client per worker")
            if self.clients_per_round is not None and self.clients_per_round > self.clients:
                raise ValueError(f"clients_per_round: {self.clients_per_round} is more than the {self.clients} clients")
            if self.mode != "sync":
                raise ValueError("mode: a federated job (`clients` set) runs in sync mode")
            if self.epochs != type(self).model_fields["epochs"].default:
                raise ValueError("epochs: a federated job (`clients` set) runs `rounds`, not epochs")
            if self.sync_every is not None or self.sync_growth != DEFAULT_SYNC_GROWTH:
                raise ValueError("sync_every: a federated job (`clients` set) merges once a round; its clients train `local_epochs`")
        if self.block_momentum is not None and (self.combine == "average" or self.mode == "async"):
            raise ValueError("block_momentum: only for `combine` bmuf in sync mode (averaging and async have no block momentum)")
        if self.mode == "sync" and self.max_staleness is not None:
            raise ValueError("max_staleness: only for `mode` async")
        if self.mode == "async" and self.reduce == "tree":
            raise ValueError("reduce: tree is for sync rounds; `mode` async pushes each worker's change on its own")
        return self

    def first_block(self, shard: int) -> int:
        """Samples per worker per round in the first epoch, for shards of `shard` samples."""
        if self.sync_every:
            return self.sync_every
        block = max(1, DEFAULT_ROUND_SAMPLES // self.workers)
        if self.mode == "async" or self.combine != "bmuf":
            return block  # no block momentum to build up: few workers still want short blocks
        block_for_4k_rounds = -(-shard // (FIRST_EPOCH_ROUNDS_PER_WORKER * self.workers))
        return max(block, block_for_4k_rounds)

    def block_size(self, epoch: int, shard: int) -> int:
        """Samples per worker per round in `epoch` (0-based), for shards of `shard` samples."""
        return max(1, min(shard, round(self.first_block(shard) * self.sync_growth**epoch)))

    @field_validator("hidden", mode="before")
    @classmethod
    def _parse_hidden(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",")]
            if not all(p.isdigit() for p in parts):
                raise ValueError(
                    f"expected comma-separated positive integers like '64' or '256,128', got {value!r}"
                )
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
