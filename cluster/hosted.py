"""A period's synchronous rounds run inside the one worker process that hosts every worker of the job.

When one process hosts all of a job's workers (local mode on a few cores, a warm pool on
one node: cluster/workers.py `hosts`), the parameter server hands it the whole period
(`ParameterServer.train_period`): the algorithm's rule travels with it, and the process
applies each round's results itself, so the rounds need no Ray call each: Ray's round trips alone cost
each of them a few ms (benchmarks/speed.py's relay round), about a tenth of a warm
8-worker job. The server hands over the next period with this one: the process starts it
from its own answer to this one (`HostedPeriod.after`), which Ray passes it by reference,
while the server takes this one back and writes its checkpoint.

Nothing else changes: the rule is the server's own object and applies the same results in
the same order, so the weights are the same to the last bit; it reports to this period
instead of the server (`advance`, `count`), and the server takes the period back with the
rule's new state and replays those reports (`ParameterServer.take_back`). A process lost
mid-period is restarted by Ray, which runs the call again from its arguments (the period
as the server sent it): the period trains again from its start, as a round did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dtrain.cluster.divergence import finite

if TYPE_CHECKING:
    from dtrain.cluster.parameter_server import Rule
    from dtrain.worker.tasks import Task

#: A rule whose state is bigger than this stays in the server, which sends the rounds out one by
#: one: SCAFFOLD keeps a control variate per client (199 KiB each for the default model), and
#: with 100 clients its 20 MiB crossing the object store twice a period made a local 8-worker
#: job's training 20% slower than the round trips it saved (1.79 -> 2.15 s, medians of 4).
MAX_RULE_BYTES = 4 << 20


def travels(rule: Rule) -> bool:
    """Whether `rule`'s state is small enough to go to the worker process and back each period."""
    return sum(a.nbytes for a in rule.arrays().values()) <= MAX_RULE_BYTES


@dataclass
class HostedPeriod:
    """A period's rounds, the rule that applies them, and what the rule reported: it stands in
    for the server in the rule's `apply` (`advance`, `count`, `epochs_done`)."""

    rule: Rule | None  # None: as the previous period leaves it (`after`)
    version: int  # the server's, at the period's start; one more for every round applied
    epochs_done: int
    rounds: list[dict[int, Task]]  # each round's tasks, by rank
    finite: list[bool] = field(default_factory=list)  # each applied round: its loss and weights were finite
    counts: list[tuple] = field(default_factory=list)  # each `count` call's arguments

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Whatever comes out of Ray is read-only, and the rules update their arrays in place.
        self.__dict__.update(state)
        if self.rule is not None:
            self.rule.load({name: np.array(a) for name, a in self.rule.arrays().items()})

    def after(self, previous: HostedPeriod) -> HostedPeriod:
        """These rounds from where `previous` (as its process answered it) left the rule: what
        the server would hand over once it had taken `previous` back and ended its period."""
        previous.rule.epoch_figures()  # as the server's end_epoch: they start again each period
        return HostedPeriod(previous.rule, previous.version, previous.epochs_done + 1, self.rounds)

    def start(self) -> tuple[Any, int]:
        """What the workers train the next round from: the rule's start, and its version."""
        return self.rule.start(), self.version

    def apply(self, updates: list[Any]) -> None:
        """Fold one round's results (Updates, in any order) into the rule."""
        self.rule.apply(self, tuple(updates))

    def advance(self, loss: float, weights: np.ndarray) -> None:
        """For the rule, as ParameterServer.advance."""
        self.version += 1
        self.finite.append(finite(loss, weights))

    def count(self, *totals: Any) -> None:
        """For the rule, as ParameterServer.count."""
        self.counts.append(totals)
