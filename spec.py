"""The job spec: one pydantic model that every layer (CLI, runner, workers) reads.

It lives in the root package so that the cluster and worker code never import
the CLI to learn what a job is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Samples all workers together train between two weight averagings in the first
#: epoch (each worker trains its share), and how much that block grows each epoch
#: (up to a whole shard). Chosen by measurement (README, "Combine rule and sync
#: schedule"): short blocks while the model moves fast keep 8 workers' per-epoch
#: accuracy near one worker's; long blocks later cost few syncs and, as in
#: post-local SGD (Lin et al., 2020), end at a better model.
DEFAULT_ROUND_SAMPLES = 2000
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
        None, ge=1, description="Samples per worker between syncs in the first epoch (default: 2000 / workers)."
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

    @property
    def first_block(self) -> int:
        """Samples per worker per round in the first epoch."""
        return self.sync_every or max(1, DEFAULT_ROUND_SAMPLES // self.workers)

    def block_size(self, epoch: int, shard: int) -> int:
        """Samples per worker per round in `epoch` (0-based), for shards of `shard` samples."""
        return max(1, min(shard, round(self.first_block * self.sync_growth**epoch)))

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
