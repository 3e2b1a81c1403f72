"""The parameter server actor: the global model's state, `apply(update)`, checkpoints and rewind.

How an update changes the model is the algorithm's rule (cluster/algorithms/):
the server holds the rule, a version number, the epoch's training totals and
the divergence state, and writes a checkpoint at the end of every epoch;
`rewind` goes back to one of them, which is how a job carries on after this
server, a worker or the job's runner was lost, or resumes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dtrain.cluster import checkpoint
from dtrain.cluster.divergence import divergence, finite
from dtrain.cluster.hosted import HostedPeriod, travels
from dtrain.cluster.outcome import ServerRestarted
from dtrain.cluster.rounds import Host, send_round
from dtrain.model.mlp import he_init


class Rule(Protocol):
    """An algorithm's server-side update rule (cluster/algorithms/): the weights it keeps, and
    how one `apply` call's updates change them. `apply` reports to the server with
    `server.advance` (a new version) and `server.count` (training totals)."""

    def reset(self, theta0: np.ndarray) -> None: ...
    def start(self) -> np.ndarray: ...  # the weights workers train from next
    def model(self) -> np.ndarray: ...  # the global model: what is scored and saved
    def apply(self, server: ParameterServer, updates: tuple[Any, ...]) -> None: ...
    def arrays(self) -> dict[str, np.ndarray]: ...  # the state a checkpoint keeps (checkpoint.ARRAYS)
    def load(self, arrays: dict[str, np.ndarray]) -> None: ...
    def epoch_figures(self) -> dict[str, Any]: ...  # the rule's own figures of the epoch; resets them


class Unconfigured:
    """The rule of a server that no job has configured (yet): every use of it raises
    ServerRestarted. Ray restarts a lost server empty, and the driver's calls already on
    their way reach it before the job configures it again; they fail as a lost server's do."""

    def __getattr__(self, name: str) -> Any:
        raise ServerRestarted("the parameter server actor was restarted after its process was lost; its job has not configured it again yet")


class ParameterServer:
    """The global model: its rule's state, a version number, and the epoch's totals.

    Workers' results reach `apply` as object references, all of a round's in one
    call (or one partial sum per node with a tree reduction: cluster/reduce.py;
    or one push at a time in asynchronous mode), so the driver never fetches them
    (in local mode Ray carries them inside its replies: cluster/connect.py).
    """

    def __init__(self, sizes: tuple[int, ...] | None = None, *, seed: int = 0, rule: Rule | None = None,
                 checkpoints: str | None = None):
        # A job's runner starts its server before it knows the job (so that its process is up
        # by then) and configures it before every rewind, so a restarted one is configured again.
        self.rule: Rule = Unconfigured()  # type: ignore[assignment]
        self._ahead: tuple[tuple, Any] | None = None  # the next period handed over, and its answer (_hand_over)
        self.checkpoints: Path | None = None
        self.version, self.epochs_done, self.diverged_at = 0, 0, None
        self._reset_epoch_totals()
        if sizes is not None:
            self.configure(sizes, seed=seed, rule=rule, checkpoints=checkpoints)

    def configure(self, sizes: tuple[int, ...], *, seed: int, rule: Rule, checkpoints: str | None = None) -> None:
        """Hold a new job's model from its first version on: rewind() then takes it to its last checkpoint."""
        # The initial model is made here from its seed rather than sent: small arguments are
        # all a reconfiguration needs.
        self.theta0 = he_init(sizes, np.random.default_rng(seed))
        self.n_classes = sizes[-1]
        self.rule = rule
        self.checkpoints = Path(checkpoints) if checkpoints else None
        self._start_over()

    def _start_over(self) -> None:
        self._ahead = None
        self.rule.reset(self.theta0)
        self.version = 0
        self.epochs_done = 0
        self.diverged_at: int | None = None  # first version whose loss or weights were not finite
        self._reset_epoch_totals()

    def _reset_epoch_totals(self) -> None:
        self.samples, self.loss_sum, self.correct, self.restarts = 0, 0.0, 0, 0
        self.by_worker: dict[int, list[float]] = {}  # rank -> [samples, busy seconds]

    def ready(self) -> int:
        """Answers once the server is up: its process id."""
        import os

        return os.getpid()

    def restarted(self) -> bool:
        """Whether Ray restarted this server after its process was lost."""
        import ray

        return ray.get_runtime_context().was_current_actor_reconstructed

    def start(self) -> tuple[np.ndarray, int]:
        """The weights workers train from next, and their version."""
        return self.rule.start(), self.version

    def model(self) -> np.ndarray:
        """The global model itself: what is evaluated and saved."""
        return self.rule.model()

    def apply(self, *updates: Any) -> tuple[np.ndarray, int]:
        """Fold `updates` (workers' results, or partial sums of them) into the model by the
        algorithm's rule; return what workers train from next, as `start` does."""
        self.rule.apply(self, updates)
        return self.start()

    def train_period(self, hosts: list[Host], assignments: list, rounds: list[dict[int, Any]],
                     following: list[dict[int, Any]] | None = None) -> dict:
        """Run a period's synchronous rounds, one after the other, then end it as `end_epoch`
        does (and return what it returns). Each round's tasks (rank -> Task) go to the workers
        from the weights held now, and all their results are applied as `apply` applies them.

        When one process hosts every worker, it is handed the whole period with the rule
        (cluster/hosted.py) and applies each round itself: one call a period instead of one a
        round. The `following` period's rounds (the driver's next call, if it knows them) are
        handed to it at once too, to start from this period's answer as soon as it is ready:
        the process does not wait while this server takes the period back and ends it.
        Otherwise the workers answer this actor directly: a round's weights make two hops
        instead of four through the job's driver (benchmarks/speed.py's relay round times both
        ways). Ending the period here, not in a call of its own, spares a round trip to the
        driver between periods: the driver's next call (`model`) is already waiting. A worker
        lost for good fails this call, and the driver rewinds as for a lost server.
        """
        import ray

        if len(hosts) == 1 and travels(self.rule):
            self.take_back(ray.get(self._hand_over(hosts[0], tuple(assignments), rounds, following)))
            return self.end_epoch()
        for tasks in rounds:
            # The start weights go by value: Ray carries them inside the calls (cluster/connect.py).
            self.apply(*ray.get(list(send_round(hosts, assignments, self.start(), tasks).values())))
        return self.end_epoch()

    def _hand_over(self, host: Host, assignments: tuple, rounds: list[dict[int, Any]],
                   following: list[dict[int, Any]] | None) -> Any:
        """A reference to this period's answer from the process that hosts every worker: the one
        handed over with the previous period, if it was for this one, else asked for now. The
        `following` period is handed over to start from it."""
        worker, _, threads = host
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == (self.epochs_done, rounds):
            answer = ahead[1]
        else:
            answer = worker.train_period.remote(HostedPeriod(self.rule, self.version, self.epochs_done, rounds), assignments, threads)
        if following:
            # The answer goes as a reference: Ray hands it to the process once it is ready.
            then = worker.train_period.remote(HostedPeriod(None, 0, 0, following), assignments, threads, answer)
            self._ahead = ((self.epochs_done + 1, following), then)
        return answer

    def take_back(self, period: HostedPeriod) -> None:
        """The rule of a period that a worker process ran (cluster/hosted.py), and what it reported."""
        self.rule = period.rule
        for round_finite in period.finite:
            self._advance(round_finite)
        for totals in period.counts:
            self.count(*totals)

    def advance(self, loss: float, weights: np.ndarray) -> None:
        """For the rule: the model changed (a new version); remember the first version whose
        loss or weights are not finite."""
        self._advance(finite(loss, weights))

    def _advance(self, round_finite: bool) -> None:
        self.version += 1
        if self.diverged_at is None and not round_finite:
            self.diverged_at = self.version

    def count(self, samples: int, loss: float, correct: int, restarts: int, speeds: Sequence[tuple[int, int, float]] = ()) -> None:
        """For the rule: add trained samples to the epoch's totals, and each worker's (rank, samples, busy seconds)."""
        self.samples += samples
        self.loss_sum += loss
        self.correct += correct
        self.restarts += restarts
        for rank, n, busy_s in speeds:
            figures = self.by_worker.setdefault(rank, [0, 0.0])
            figures[0] += n
            figures[1] += busy_s

    def _worker_speeds(self) -> list[float | None]:
        """Each worker's samples/s while it trained this epoch, by rank (None: it reported no time)."""
        ranks = [rank for rank in self.by_worker if rank >= 0]
        speeds = [None] * (max(ranks) + 1 if ranks else 0)
        for rank in ranks:
            n, busy_s = self.by_worker[rank]
            speeds[rank] = n / busy_s if busy_s > 0 else None
        return speeds

    def end_epoch(self, last_round: object = None) -> dict:
        """This epoch's training totals and divergence state; resets the totals, writes a checkpoint.

        The runner passes the epoch's last apply result as `last_round`: if any
        round of the epoch failed, Ray then fails this call without running it,
        so no checkpoint is ever written for an epoch that did not happen.
        """
        train_loss = self.loss_sum / max(self.samples, 1)
        figures = {
            "version": self.version,
            "samples": self.samples,
            "train_loss": train_loss if math.isfinite(train_loss) else None,
            "train_accuracy": self.correct / max(self.samples, 1),
            "finite": self.diverged_at is None and math.isfinite(train_loss),
            "diverged_at_round": self.diverged_at,
            "worker_restarts": self.restarts,
            "worker_samples_per_s": self._worker_speeds(),
            **self.rule.epoch_figures(),
        }
        self._reset_epoch_totals()
        self.epochs_done += 1
        # A diverged model is nothing to resume from.
        if self.checkpoints and not divergence(figures, self.epochs_done - 1, self.n_classes):
            info = {"version": self.version, "figures": figures}
            checkpoint.save(self.checkpoints, self.epochs_done, self.rule.arrays(), info)
        return figures

    def rewind(self, epochs_done: int) -> int:
        """Go back to the state after `epochs_done` epochs (or the newest checkpoint before it).

        Returns the epochs done in the state now held: training resumes with the next one.
        """
        self._start_over()
        found = checkpoint.load(self.checkpoints, epochs_done) if self.checkpoints and epochs_done else None
        if found is None:
            return 0
        arrays, info = found
        self.rule.load(arrays)
        self.version, self.epochs_done = info["version"], info["epochs_done"]
        return self.epochs_done
