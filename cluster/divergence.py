"""When training has blown up: the one rule the parameter server and the runner share."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: An epoch whose training loss exceeds this many times that of guessing (ln of the classes) has diverged.
DIVERGENCE_FACTOR = 1.5


def finite(loss: float, weights: np.ndarray) -> bool:
    """Whether a round's loss and the weights it left are all finite (a diverged round's are not)."""
    return bool(math.isfinite(loss) and np.isfinite(weights).all())


def divergence(figures: dict[str, Any], epoch: int, n_classes: int, where: str | None = None) -> str | None:
    """Why an epoch's training totals show a blown-up model (one line ending in the fix), or None.

    Blown up means a NaN or infinite loss or weight, or a training loss far above
    that of guessing uniformly: per-sample SGD with too large a step drives the
    softmax to confident wrong answers without ever producing a NaN. `epoch` is 0-based;
    `where` names it for humans (default "epoch N"; a federated job says "round R").
    """
    chance = math.log(n_classes)
    period = where or f"epoch {epoch + 1}"
    if not figures["finite"]:
        at = figures["diverged_at_round"]
        at_round = f"{period}, round {at}" if at and not period.startswith("round") else period
        return f"diverged at {at_round}: the loss or the weights are NaN or infinite; lower --lr"
    if figures["train_loss"] > DIVERGENCE_FACTOR * chance:
        return (
            f"diverged at {period}: training loss {figures['train_loss']:.2f} is far above "
            f"guessing ({chance:.2f}); lower --lr"
        )
    return None
