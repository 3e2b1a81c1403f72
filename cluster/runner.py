"""Running one training job: data into the object store, a parameter server, workers, rounds.

Each round, every worker trains from the server's current weights on its next
block of ``sync_every`` samples, and the server merges all the results in one
call (or, with a tree reduction, one partial sum per node: cluster/reduce.py).
The driver only chains object references (a round's start weights are the
previous round's merge result): its code never fetches a round's results, only
the global model once an epoch, to score it (in local mode Ray's core relays the
results inside its replies: cluster/connect.py).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from dtrain import __version__
from dtrain.cluster.combine import default_block_momentum
from dtrain.cluster import placement
from dtrain.cluster.connect import connect_local
from dtrain.cluster.divergence import divergence
from dtrain.cluster.parameter_server import ParameterServer
from dtrain.cluster.reduce import Flat, Tree, reduction_for
from dtrain.cluster.storage import append_jsonl, read_jsonl, remove_partial_writes, write_atomic, write_json
from dtrain.data.mnist import N_CLASSES, Dataset, load_dataset
from dtrain.data.partition import even_bounds, partition
from dtrain.errors import UserError
from dtrain.model.evaluate import PIXEL_SCALE, Evaluation, evaluate, scale_pixels
from dtrain.model.kernels import resolve_kernel, warm_up
from dtrain.model.mlp import layer_sizes
from dtrain.model.sparse import SparseRows
from dtrain.model.weights import save_weights
from dtrain.spec import JobSpec
from dtrain.worker.actor import Worker, WorkerSettings
from dtrain.worker.shard import block_slice, rounds_for

#: Times Ray restarts a killed worker (in its place, with its shard) before the job gives up on it.
WORKER_RESTARTS = 10

#: Times Ray restarts a lost parameter server before the job gives up on it.
SERVER_RESTARTS = 5

#: Times a job goes back to its last checkpoint (after losing its server, or a worker for good) before it fails.
MAX_RECOVERIES = 5

#: How long a restarted parameter server may take to answer again.
RECOVERY_TIMEOUT_S = 120.0

#: Times a job places its workers again after losing a node (fitted to the nodes left).
MAX_REPLACEMENTS = 3

#: How long after a node with workers is lost the job waits for Ray to restart them before placing them again.
LOST_NODE_GRACE_S = 10.0

#: How long workers may take to start before the job fails instead of hanging.
PLACEMENT_TIMEOUT_S = 120.0

#: Threads the driver scores each epoch on: one per core here, at most 4 (Scorer._evaluate says why).
SCORING_THREADS = min(4, int(placement.local_cpus()))

#: progress callback: (event name, payload)
OnEvent = Callable[[str, dict[str, Any]], None]


class JobFailed(Exception):
    """The job ran but could not produce a model (e.g. it diverged)."""


class JobCancelled(Exception):
    """The job was asked to stop (`dtrain cancel`, or Ctrl-C in local mode)."""


class WorkersLost(Exception):
    """A node with some of the job's workers is gone, and Ray could not restart them elsewhere."""

    def __init__(self, message: str, epochs_done: int):
        super().__init__(message)
        self.epochs_done = epochs_done


class NodeWatch:
    """Waits for an epoch's results while watching the nodes the workers were placed on."""

    def __init__(self, nodes: set[str], stop: Callable[[], bool], grace_s: float | None = None):
        self.nodes = nodes
        self.stop = stop
        self.grace_s = LOST_NODE_GRACE_S if grace_s is None else grace_s

    def wait(self, ref: Any, epochs_done: int) -> dict:
        """ray.get(ref), unless a node of the workers is gone and the epoch does not end within
        the grace period (Ray restarts a lost worker where there is room): then WorkersLost."""
        import ray

        lost_since = None
        while True:
            ready, _ = ray.wait([ref], timeout=1.0)
            if ready:
                return ray.get(ref)
            if self.stop():
                raise JobCancelled(f"stopped after {epochs_done} epochs")
            alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
            gone = self.nodes - alive
            if not gone:
                lost_since = None
                continue
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since >= self.grace_s:
                raise WorkersLost(
                    f"node {', '.join(n[:8] for n in sorted(gone))} was lost with some of the workers; "
                    "placing them again on the nodes left",
                    epochs_done,
                )


@dataclass
class JobResult:
    job_id: str
    state: str
    run_dir: Path
    spec: JobSpec
    history: list[dict[str, Any]]
    evaluation: Evaluation
    dataset: Dataset
    report: dict[str, Any] = field(default_factory=dict)


def check_fits(spec: JobSpec, dataset: Dataset) -> None:
    n = len(dataset.y_train)
    if spec.workers > n:
        raise UserError(f"--workers: {spec.workers} workers for {n} training samples; expected at most {n}")
    if spec.clients and spec.clients > n:
        raise UserError(f"--clients: {spec.clients} clients for {n} training samples; expected at most {n}")


def interesting_examples(
    evaluation: Evaluation, x: np.ndarray, y: np.ndarray, n_examples: int = 3, n_wrong: int = 5
) -> dict:
    """Test images worth drawing: the first few, and the most confident mistakes.

    Each carries its pixels, so a report can be drawn where the dataset is not.
    """
    wrong = np.flatnonzero(evaluation.predictions != y)
    worst = wrong[np.argsort(-evaluation.confidence[wrong], kind="stable")][:n_wrong]
    pick = lambda idx: [  # noqa: E731
        {
            "index": int(i),
            "label": int(y[i]),
            "predicted": int(evaluation.predictions[i]),
            "confidence": round(float(evaluation.confidence[i]), 4),
            "probabilities": [round(float(q), 4) for q in evaluation.proba[i]],
            "pixels": x[i].reshape(-1).tolist(),
        }
        for i in idx
    ]
    return {"examples": pick(range(min(n_examples, len(y)))), "misclassified": pick(worst)}


def check_divergence(figures: dict[str, Any], epoch: int, spec: JobSpec) -> None:
    """Fail the job when training has blown up, rather than save garbage as a model."""
    where = spec.period_label(epoch + 1).split("/")[0]  # "epoch 3", or "round 30"
    why = divergence(figures, epoch, N_CLASSES, where)
    if why:
        raise JobFailed(why)


def momentum_for(spec: JobSpec, rounds_in_epoch: int) -> float:
    if spec.combine == "average":
        return 0.0
    if spec.block_momentum is not None:
        return spec.block_momentum
    if spec.federated or spec.mode == "async":
        return 0.0  # FedAvg; with --block-momentum, FedAvg with server momentum
    return default_block_momentum(spec.workers, rounds_in_epoch)


@dataclass(frozen=True)
class RoundPlan:
    """Rounds and block momentum for each scored period (an epoch, or --eval-every
    federated rounds), fixed before the job starts."""

    rounds: list[int]
    momenta: list[float]

    @classmethod
    def for_job(cls, spec: JobSpec, shard: int) -> RoundPlan:
        if spec.federated:
            assert spec.rounds is not None
            rounds = [min(spec.eval_every, spec.rounds - p * spec.eval_every) for p in range(spec.periods)]
        else:
            # One worker has nothing to merge with: its rounds would be pure overhead.
            rounds = [1 if spec.workers == 1 else rounds_for(shard, spec.block_size(e, shard)) for e in range(spec.epochs)]
        return cls(rounds, [momentum_for(spec, r) for r in rounds])

    def first_round(self, period: int) -> int:
        """Rounds run before `period`."""
        return sum(self.rounds[:period])


@dataclass(frozen=True)
class Layout:
    """Where each worker's data lies in the (possibly reordered) training set, and in a
    federated job the clients each worker hosts."""

    order: np.ndarray | None  # the training set's new order, None to keep it
    workers: list[tuple[int, int]]  # each worker's [lo, hi)
    clients: list[list[tuple[int, int]]]  # per worker: its clients' bounds within its slice
    first_client: list[int]  # per worker: the number of its first client

    @classmethod
    def for_job(cls, spec: JobSpec, y: np.ndarray) -> Layout:
        units = spec.clients or spec.workers
        order, unit_bounds = partition(y, units, spec.shard, spec.seed)
        if not spec.federated:
            return cls(order, unit_bounds, [[] for _ in unit_bounds], [0] * len(unit_bounds))
        hosted = even_bounds(units, spec.workers)
        workers = [(unit_bounds[a][0], unit_bounds[b - 1][1]) for a, b in hosted]
        clients = [[(lo - w_lo, hi - w_lo) for lo, hi in unit_bounds[a:b]] for (a, b), (w_lo, _) in zip(hosted, workers)]
        return cls(order, workers, clients, [a for a, _ in hosted])

    def owner(self, client: int) -> int:
        """The worker hosting `client`."""
        return int(np.searchsorted(self.first_client, client, side="right")) - 1


def run_job(
    spec: JobSpec,
    run_dir: Path,
    job_id: str,
    on_event: OnEvent | None = None,
    dataset: Dataset | None = None,
    should_stop: Callable[[], bool] | None = None,
    may_start: Callable[[], bool] | None = None,
) -> JobResult:
    """Train `spec` on the connected Ray cluster (an embedded one if none); write the run directory.

    Events for `on_event`: "connected", "pending" (waiting for CPUs), "placed", "started",
    then one "epoch" per epoch. `should_stop` is polled while waiting for CPUs
    and at each epoch; when it answers True the job ends with JobCancelled.
    `may_start` says whether the job may reserve its CPUs yet (jobs queue in
    submission order on a cluster); it is polled until it does.
    """
    emit = on_event or (lambda kind, payload: None)
    stop = should_stop or (lambda: False)
    t_start = time.perf_counter()
    dataset = dataset or load_dataset(spec.data_dir)
    check_fits(spec, dataset)
    kernel = resolve_kernel(spec.kernel)
    sizes = layer_sizes(dataset.n_features, spec.hidden, N_CLASSES)
    start_or_resume(run_dir, spec)

    # While Ray starts (ray.init mostly waits for its processes): compile or load the
    # kernel, so that the workers find it cached, and convert the training images to
    # sparse rows (0.2-0.5 s that would otherwise delay creating the workers).
    layout = Layout.for_job(spec, dataset.y_train)
    preparing = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dtrain-prepare")
    warm = preparing.submit(warm_up, kernel, dataset.n_features)
    training_set = preparing.submit(training_rows, dataset, layout)
    preparing.shutdown(wait=False)
    connect_local()  # before Ray is imported here: it sets Ray's environment for this process (connect.py)
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    nodes = placement.node_cpus()
    share = placement.worker_cpus(spec.workers, spec.cpus_per_worker, nodes)
    emit("connected", {"cpus": sum(nodes), "nodes": len(nodes), "cpus_per_worker": share})
    # Jobs start in the order they were submitted: Ray places waiting groups in no set order.
    if not wait_for_turn(may_start, stop, emit):
        raise JobCancelled("stopped while waiting for older jobs to start")
    # The dataset enters the object store once; every worker gets the references.
    x_rows, y_train = training_set.result()
    x_ref, y_ref = ray.put(x_rows), ray.put(y_train)
    bounds = layout.workers
    plan = RoundPlan.for_job(spec, max(hi - lo for lo, hi in bounds))
    recoveries: list[dict[str, Any]] = []

    def emit_counting(kind: str, payload: dict[str, Any]) -> None:
        if kind == "recovering":
            recoveries.append(payload)
        emit(kind, payload)

    done_before = len(read_jsonl(run_dir / "metrics.jsonl"))
    if done_before:
        emit_counting("recovering", {"epochs_done": done_before, "reason": "resumed from its last checkpoint", "resumed": True})
    startup = None
    server = (
        ray.remote(ParameterServer)
        .options(
            num_cpus=0,
            resources=placement.ON_HEAD,  # it writes the checkpoints, next to the job's other files
            max_restarts=SERVER_RESTARTS,
            max_task_retries=0,  # the runner rewinds it to a checkpoint instead: a merge must not run twice
        )
        .remote(sizes, seed=spec.seed, momentum=plan.momenta[0], checkpoints=str(run_dir / "checkpoints"))
    )
    # One actor class for all the workers: Ray exports (pickles and hashes) a class once
    # per ray.remote(), and each worker process would fetch its own copy.
    worker_actor = ray.remote(Worker)
    settings = WorkerSettings.of(spec)
    try:
        # Workers are placed again (fitted to the nodes left) when a node is lost with
        # workers that Ray cannot restart elsewhere.
        for placing in range(MAX_REPLACEMENTS + 1):
            share = share if placing == 0 else placement.worker_cpus(spec.workers, spec.cpus_per_worker, placement.node_cpus())
            with placement.reserved(spec.workers, share) as group:
                waiting = f"waiting for {spec.workers} x {share:g} CPU for the workers; other jobs hold them"
                if not placement.wait_for(group, stop, lambda s: emit("pending", {"message": waiting, "waited_s": s})):
                    raise JobCancelled("stopped while waiting for CPUs")
                emit("placed", {"cpus_per_worker": share})
                with placement.native_stderr_muted():
                    workers = [
                        worker_actor.options(
                            num_cpus=share,
                            scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=rank),
                            # A killed worker is restarted with its arguments, so it takes its shard back,
                            # and its pending round runs again: train_block depends on its arguments
                            # alone, so the redone round gives exactly the result the lost one would have.
                            max_restarts=WORKER_RESTARTS,
                            max_task_retries=-1,
                        )
                        .remote(
                            x_ref, y_ref, lo, hi, settings=settings, sizes=sizes, kernel=kernel, rank=rank,
                            clients=layout.clients[rank], first_client=layout.first_client[rank],
                        )
                        for rank, (lo, hi) in enumerate(bounds)
                    ]
                reduction: Flat | Tree = Flat()
                try:
                    warm.result()
                    placed = wait_until_ready(workers, share)
                    # One reducer per node of the workers (when the tree is on), made again with them.
                    reduction = reduction_for(spec, placed["node_of"], group)
                    server_pid = ray.get(server.ready.remote(), timeout=PLACEMENT_TIMEOUT_S)
                    reduction.wait_ready(PLACEMENT_TIMEOUT_S)
                    startup = startup or time.perf_counter() - t_start
                    emit(
                        "started",
                        {
                            "startup_s": startup,
                            "workers": spec.workers,
                            "rounds": sum(plan.rounds),
                            "kernel": kernel,
                            "cpus_per_worker": share,
                            "nodes": placed["nodes"],
                            "pids": placed["pids"],
                            "server_pid": server_pid,
                            "reduce": reduction.name,
                            "reducers": reduction.summary(),
                        },
                    )
                    watch = NodeWatch(set(placed["nodes"]), stop)
                    # The driver scores epochs while the workers use the cores. (The dtrain command
                    # also starts BLAS with one thread, which spares the spin of a pool cut down
                    # here: dtrain/cli/__init__.py.)
                    with threadpool_limits(1):
                        history, theta, final = train_epochs(
                            spec, plan, layout, server, workers, dataset, sizes, run_dir, emit_counting, stop, t_start,
                            watch.wait, reduction,
                        )
                    worker_stats = ray.get([w.stats.remote() for w in workers])
                    reduced = {"reduce": reduction.name, "reducers": reduction.summary()}
                    break
                except WorkersLost as lost:
                    if placing == MAX_REPLACEMENTS:
                        raise JobFailed(f"lost workers {MAX_REPLACEMENTS + 1} times; last: {lost}") from None
                    emit_counting("recovering", {"epochs_done": lost.epochs_done, "reason": str(lost)})
                finally:
                    reduction.kill()
                    for worker in workers:
                        ray.kill(worker)
    finally:
        ray.kill(server)

    save_weights(
        run_dir / "model.npz",
        theta,
        sizes,
        {
            "activation": spec.activation,
            "input_scale": PIXEL_SCALE,
            "image_shape": list(dataset.image_shape),
            "dataset": dataset.name,
            "test_accuracy": final.accuracy,
            "job_id": job_id,
        },
    )
    report = {
        "job_id": job_id,
        "state": "SUCCEEDED",
        "dtrain_version": __version__,
        "spec": spec.model_dump(mode="json"),
        "dataset": {
            "name": dataset.name,
            "train": len(dataset.y_train),
            "test": len(dataset.y_test),
            "image_shape": list(dataset.image_shape),
        },
        "layer_sizes": list(sizes),
        "kernel": kernel,
        "block_momentum": plan.momenta[: len(history)],
        "rounds_per_epoch": plan.rounds[: len(history)],
        "rounds_run": sum(plan.rounds[: len(history)]),
        "cpus_per_worker": share,
        **reduced,
        "epochs_run": len(history),
        "workers": worker_stats,
        "worker_restarts": sum(h["worker_restarts"] for h in history),
        "recoveries": [r["reason"] for r in recoveries],
        "test": final.summary(),
        "timing": {
            "startup_s": startup,
            "train_s": history[-1]["train_time_s"],
            "total_s": time.perf_counter() - t_start,
        },
        "until_accuracy": until_accuracy_summary(spec, history),
        **interesting_examples(final, dataset.x_test, dataset.y_test),
    }
    write_json(run_dir / "report.json", report)
    return JobResult(job_id, "SUCCEEDED", run_dir, spec, history, final, dataset, report)


def wait_for_turn(may_start: Callable[[], bool] | None, stop: Callable[[], bool], emit: OnEvent, poll_s: float = 0.5) -> bool:
    """Wait until the job may reserve its CPUs; False if it was stopped first."""
    said = False
    while may_start is not None and not may_start():
        if stop():
            return False
        if not said:
            emit("pending", {"message": "queued behind older jobs that are waiting for CPUs"})
            said = True
        time.sleep(poll_s)
    return True


def start_or_resume(run_dir: Path, spec: JobSpec) -> None:
    """Prepare the run directory: kept as it is if it holds this job already (it resumes from
    its checkpoints, less what writes cut off by a crash left behind), else cleared of
    another job's metrics and checkpoints."""
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_partial_writes(run_dir)
    spec_file = run_dir / "spec.json"
    if spec_file.is_file() and json.loads(spec_file.read_text()) == spec.model_dump(mode="json"):
        return
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    write_json(spec_file, spec.model_dump(mode="json"))


def wait_until_ready(workers: list, share: float) -> dict[str, Any]:
    """Wait for every worker to be up with its kernel loaded; fail rather than hang.

    Returns {"nodes": workers on each node (by node id), "node_of": each worker's node id,
    "pids": each worker's process id}, lists in rank order.
    """
    import ray

    ready = [w.ready.remote() for w in workers]
    _, pending = ray.wait(ready, num_returns=len(ready), timeout=PLACEMENT_TIMEOUT_S)
    if pending:
        raise JobFailed(
            f"{len(pending)} of {len(workers)} workers could not be started within {PLACEMENT_TIMEOUT_S:.0f} s "
            f"(each asks for {share:g} CPU; the cluster has {placement.total_cpus():g})"
        )
    answers = ray.get(ready)
    nodes: dict[str, int] = {}
    for answer in answers:
        nodes[answer["node"]] = nodes.get(answer["node"], 0) + 1
    return {"nodes": nodes, "node_of": [a["node"] for a in answers], "pids": [a["pid"] for a in answers]}


def train_epochs(
    spec: JobSpec,
    plan: RoundPlan,
    layout: Layout,
    server: Any,
    workers: list,
    dataset: Dataset,
    sizes: tuple[int, ...],
    run_dir: Path,
    emit: OnEvent,
    stop: Callable[[], bool],
    t_start: float,
    await_totals: Callable[[Any, int], dict] | None = None,
    reduction: Flat | Tree | None = None,
) -> tuple[list[dict[str, Any]], np.ndarray, Evaluation]:
    """Run the epochs from the job's last scored one, going back to it if the server or a worker is lost.

    `await_totals(ref, epochs_done)` waits for an epoch's training totals (default: ray.get);
    run_job's raises WorkersLost when a node with workers on it is gone. `reduction` says
    how sync rounds reach the server (default: flat).

    Returns the per-epoch history, and the last scored model with its evaluation
    (with --until-accuracy, the first that reached the target).
    """
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    x_test = scale_pixels(dataset.x_test)  # once, not at every epoch's scoring
    history = read_jsonl(run_dir / "metrics.jsonl")  # a resumed job's epochs so far
    reduction = reduction or Flat()
    for attempt in range(MAX_RECOVERIES + 1):
        try:
            scorer = Scorer(spec, plan, sizes, x_test, dataset.y_test, run_dir, emit, history,
                            await_totals or (lambda ref, done: ray.get(ref)))
            if not scorer.rewind(server, t_start):
                if attempt:  # the workers trained past the checkpoint, and train that again now
                    ray.get([worker.forget_after.remote(scorer.done) for worker in workers], timeout=RECOVERY_TIMEOUT_S)
                if spec.mode == "async":
                    _train_async(spec, plan, layout, server, workers, scorer, stop)
                else:
                    _train_rounds(spec, plan, layout, server, workers, scorer, stop, reduction)
            assert scorer.last is not None
            return history, *scorer.last
        except (RayActorError, RayTaskError) as e:
            # Only a lost actor (the server, or a worker or reducer for good) is worth a rewind; an
            # error raised by the code itself would be raised again.
            if isinstance(e, RayTaskError) and not isinstance(e.cause, RayActorError):
                raise
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if attempt == MAX_RECOVERIES:
                raise JobFailed(f"lost its parameter server or a worker {MAX_RECOVERIES + 1} times; last: {reason}") from None
            emit("recovering", {"epochs_done": len(history), "reason": reason})
    raise AssertionError("unreachable")


class Scorer:
    """Scores each epoch's global model in the driver, and keeps the job's history and best-so-far.

    `history` (a list shared with the caller) is updated in place and appended
    to metrics.jsonl, one record per scored epoch.
    """

    def __init__(
        self,
        spec: JobSpec,
        plan: RoundPlan,
        sizes: tuple[int, ...],
        x_test: np.ndarray,
        y_test: np.ndarray,
        run_dir: Path,
        emit: OnEvent,
        history: list[dict[str, Any]],
        await_totals: Callable[[Any, int], dict],
    ):
        self.spec, self.plan, self.sizes = spec, plan, sizes
        self.x_test, self.y_test = x_test, y_test
        self.run_dir, self.emit, self.history, self.await_totals = run_dir, emit, history, await_totals
        self.last: tuple[np.ndarray, Evaluation] | None = None
        self.done = 0

    def _evaluate(self, theta: np.ndarray) -> Evaluation:
        # One scoring thread per core (up to 4): the workers train the next epoch meanwhile, and
        # a single thread would slow one worker's core only, which every other worker then
        # waits for at the round's end. Measured, medians of 4 alternated 32-epoch jobs, training
        # phase with 1 / 2 threads: 2 workers 3.39 / 3.28 s; 1 and 8 workers the same within noise.
        return evaluate(theta, self.sizes, self.spec.activation, self.x_test, self.y_test, threads=SCORING_THREADS)

    def rewind(self, server: Any, t_start: float) -> bool:
        """Rewind the server to the last scored epoch; True if the job has nothing left to train.

        Every scored epoch has a checkpoint (the server writes it before the epoch is
        scored); if it is gone, go back further and redo the epochs after it.
        """
        import ray

        history, spec = self.history, self.spec
        self.done = done = ray.get(server.rewind.remote(len(history)), timeout=RECOVERY_TIMEOUT_S)
        if done < len(history):
            del history[done:]
            write_atomic(
                self.run_dir / "metrics.jsonl", b"".join((json.dumps(h, sort_keys=True) + "\n").encode() for h in history)
            )
        if done:
            theta = np.array(ray.get(server.get_global_weights.remote()))
            self.last = (theta, self._evaluate(theta))
        # Times go on from the last scored epoch, leaving out any time the job was down.
        now = time.perf_counter()
        self.t_train = now - (history[-1]["train_time_s"] if history else 0.0)
        self.t_wall = now - history[-1]["wall_time_s"] if history else t_start
        self.t_epoch = now
        reached = spec.until_accuracy is not None and any(h["test_accuracy"] >= spec.until_accuracy for h in history)
        return done >= spec.periods or reached

    def finish(self, epoch: int, totals_ref: Any, weights_ref: Any) -> bool:
        """Score epoch `epoch` (0-based) from its training totals and its weights; True when the job should stop."""
        import ray

        spec = self.spec
        figures = self.await_totals(totals_ref, len(self.history))
        finished = time.perf_counter()
        check_divergence(figures, epoch, spec)
        theta = np.array(ray.get(weights_ref))
        scored = self._evaluate(theta)
        self.last = (theta, scored)
        record = {
            "epoch": epoch + 1,
            "train_loss": figures["train_loss"],
            "train_accuracy": figures["train_accuracy"],
            "test_loss": scored.loss,
            "test_accuracy": scored.accuracy,
            "samples": figures["samples"],
            "rounds": self.plan.rounds[epoch],
            "worker_restarts": figures["worker_restarts"],
            "samples_per_s": figures["samples"] / (finished - self.t_epoch),
            "train_time_s": finished - self.t_train,
            "wall_time_s": finished - self.t_wall,
        }
        if spec.federated:
            record["round"] = self.plan.first_round(epoch + 1)
        for key in ("dropped_updates", "mean_staleness"):
            if key in figures:
                record[key] = figures[key]
        self.history.append(record)
        append_jsonl(self.run_dir / "metrics.jsonl", record)
        self.emit("epoch", record)
        self.t_epoch = self.t_train + record["train_time_s"]
        return spec.until_accuracy is not None and scored.accuracy >= spec.until_accuracy


def _round_results(spec: JobSpec, plan: RoundPlan, layout: Layout, workers: list, start: Any, epoch: int, r: int) -> dict[int, Any]:
    """Start one round on the workers; the refs of their results, by worker rank (in rank order)."""
    rounds = plan.rounds[epoch]
    if not spec.federated:
        return {rank: w.train_block.remote(start, epoch, r, rounds) for rank, w in enumerate(workers)}
    # FedAvg: a fresh sample of clients each round, drawn from (seed, round).
    assert spec.clients is not None
    round_index = plan.first_round(epoch) + r
    picked = np.random.default_rng((spec.seed, 0xFEDA, round_index)).choice(
        spec.clients, spec.clients_per_round or spec.clients, replace=False
    )
    by_worker: dict[int, list[int]] = {}
    for client in sorted(picked.tolist()):
        by_worker.setdefault(layout.owner(client), []).append(client)
    return {w: workers[w].train_clients.remote(start, round_index, clients) for w, clients in sorted(by_worker.items())}


def _train_rounds(
    spec: JobSpec, plan: RoundPlan, layout: Layout, server: Any, workers: list, scorer: Scorer, stop: Callable[[], bool],
    reduction: Flat | Tree,
) -> None:
    """Synchronous rounds: every worker trains from the same start point, the server merges
    all their results in one call (through the reducers first with a tree), and the driver
    only chains the object references. Each epoch's model is scored while the next epoch trains."""
    done = scorer.done
    server.set_momentum.remote(plan.momenta[done])
    start = server.get_weights.remote()
    previous = None
    for epoch in range(done, spec.periods):
        if stop():
            raise JobCancelled(f"stopped after {len(scorer.history)} of {spec.periods} epochs")
        if epoch > done and plan.momenta[epoch] != plan.momenta[epoch - 1]:
            server.set_momentum.remote(plan.momenta[epoch])
        for r in range(plan.rounds[epoch]):
            start = reduction.merge(server, _round_results(spec, plan, layout, workers, start, epoch, r))
        # end_epoch waits on the epoch's last merge: if a merge failed, it never runs.
        submitted = (epoch, server.end_epoch.remote(start), server.get_global_weights.remote())
        if previous is not None and scorer.finish(*previous):
            return
        previous = submitted
    scorer.finish(*previous)


def _train_async(
    spec: JobSpec, plan: RoundPlan, layout: Layout, server: Any, workers: list, scorer: Scorer, stop: Callable[[], bool]
) -> None:
    """Asynchronous mode: each worker pushes its change to the server as soon as its block is
    done and goes on from the weights the push returns, with no round barrier, so a slow
    worker holds up no one. An epoch ends (and is scored) once the server has taken a
    training set's worth of samples, whoever trained them."""
    import ray

    n_train = sum(hi - lo for lo, hi in layout.workers)
    position = [(scorer.done, 0)] * len(workers)  # each worker's (epoch, round) in its own schedule

    def start_block(i: int, pulled: Any) -> None:
        epoch, r = position[i]
        rounds = plan.rounds[min(epoch, len(plan.rounds) - 1)]
        position[i] = (epoch, r + 1) if r + 1 < rounds else (epoch + 1, 0)
        running[workers[i].train_async.remote(pulled, epoch, r, rounds)] = (i, block_samples(layout.workers[i], r, rounds))

    running: dict[Any, tuple[int, int]] = {}  # a block's result -> (worker, samples in the block)
    pulled = server.pull.remote()
    for i in range(len(workers)):
        start_block(i, pulled)
    epoch, taken = scorer.done, 0
    while True:
        finished, _ = ray.wait(list(running), num_returns=1, timeout=1.0, fetch_local=False)
        if stop():
            raise JobCancelled(f"stopped after {len(scorer.history)} of {spec.periods} epochs")
        if not finished:
            continue
        i, samples = running.pop(finished[0])
        pushed = server.push.remote(finished[0], spec.staleness_bound)
        taken += samples
        epoch_done = taken >= (epoch + 1 - scorer.done) * n_train
        if not epoch_done or epoch + 1 < spec.periods:
            start_block(i, pushed)
        if not epoch_done:
            continue
        # Scored while the workers go on with the next epoch.
        totals, weights = server.end_epoch.remote(pushed), server.get_global_weights.remote()
        if scorer.finish(epoch, totals, weights) or epoch + 1 >= spec.periods:
            return
        epoch += 1


def training_rows(dataset: Dataset, layout: Layout) -> tuple[SparseRows, np.ndarray]:
    """The training images as sparse rows and their labels, in the layout's order."""
    x_train, y_train = dataset.x_train, dataset.y_train
    if layout.order is not None:
        x_train, y_train = x_train[layout.order], y_train[layout.order]
    return SparseRows.from_dense(x_train), y_train


def block_samples(bounds: tuple[int, int], r: int, rounds: int) -> int:
    """Samples in round r of `rounds` of a shard [lo, hi), cut as the worker cuts it."""
    block = block_slice(bounds[1] - bounds[0], r, rounds)
    return block.stop - block.start


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
