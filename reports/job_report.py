"""A finished job's report: what ran, how it went, and test digits worth drawing.

`JobReport` is what the runner writes as report.json and what `dtrain report`
(text and --html) reads; its JSON shape is the one report.json files have always
had, so older files load too (fields added later have defaults).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from dtrain.spec import JobSpec

if TYPE_CHECKING:
    import numpy as np

    from dtrain.model.evaluate import Evaluation


class Example(BaseModel):
    """One test image with the model's answer, pixels included (a report is drawn where the dataset is not)."""

    index: int
    label: int
    predicted: int
    confidence: float
    probabilities: list[float] = Field(default_factory=list)
    pixels: list[int]


class JobReport(BaseModel):
    """report.json; its `spec` is the job's (an older report's flat spec reads as well)."""

    model_config = ConfigDict(extra="allow")

    job_id: str = ""
    state: str = "SUCCEEDED"
    dtrain_version: str = ""
    spec: JobSpec = Field(default_factory=JobSpec)
    dataset: dict[str, Any] = Field(default_factory=dict)  # name, train, test, image_shape
    layer_sizes: list[int] = Field(default_factory=list)
    kernel: str | None = None
    block_momentum: list[float] = Field(default_factory=list)  # server momentum per scored period
    rounds_per_epoch: list[int] = Field(default_factory=list)
    rounds_run: int | None = None
    cpus_per_worker: float | None = None
    reduce: str | None = None
    reducers: list[dict[str, Any]] = Field(default_factory=list)
    epochs_run: int = 0
    workers: list[dict[str, Any]] = Field(default_factory=list)  # Worker.stats() of each worker
    worker_restarts: int = 0
    recoveries: list[str] = Field(default_factory=list)
    test: dict[str, Any]  # Evaluation.summary(): accuracy, loss, confusion, ...
    timing: dict[str, Any] = Field(default_factory=dict)  # startup_s, train_s, total_s
    until_accuracy: dict[str, Any] | None = None
    examples: list[Example] = Field(default_factory=list)
    misclassified: list[Example] = Field(default_factory=list)

    @classmethod
    def of(cls, report: JobReport | dict[str, Any]) -> JobReport:
        """A report as read from report.json (a dict), or one already typed."""
        return report if isinstance(report, JobReport) else cls.model_validate(report)

    @property
    def algorithm(self) -> str:
        """The training algorithm's name (sync, async, fedavg, fedprox)."""
        return self.spec.algorithm.name

    @property
    def federated(self) -> bool:
        return self.spec.federated

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def examples(evaluation: Evaluation, x: np.ndarray, y: np.ndarray, n_examples: int = 3, n_wrong: int = 5) -> dict[str, list[Example]]:
    """Test images worth drawing: the first few, and the most confident mistakes."""
    import numpy as np  # here: a client reading a report (`dtrain submit --json`) never needs NumPy

    wrong = np.flatnonzero(evaluation.predictions != y)
    worst = wrong[np.argsort(-evaluation.confidence[wrong], kind="stable")][:n_wrong]

    def pick(idx: Any) -> list[Example]:
        return [
            Example(
                index=int(i),
                label=int(y[i]),
                predicted=int(evaluation.predictions[i]),
                confidence=round(float(evaluation.confidence[i]), 4),
                probabilities=[round(float(q), 4) for q in evaluation.proba[i]],
                pixels=x[i].reshape(-1).tolist(),
            )
            for i in idx
        ]

    return {"examples": pick(range(min(n_examples, len(y)))), "misclassified": pick(worst)}


def until_accuracy_summary(spec: JobSpec, history: list[dict[str, Any]]) -> dict[str, Any] | None:
    if spec.until_accuracy is None:
        return None
    reached = next((h for h in history if h["test_accuracy"] >= spec.until_accuracy), None)
    return {
        "target": spec.until_accuracy,
        "reached": reached is not None,
        "epoch": reached and reached["epoch"],
        "train_time_s": reached and reached["train_time_s"],
        "wall_time_s": reached and reached["wall_time_s"],
    }
