"""Running one training job: prepare, place, let its algorithm drive, report.

`run_job` puts the data into the object store once, starts the parameter server
(with the algorithm's update rule) and the workers, and calls the algorithm's
driver loop (cluster/algorithms/) inside the recovery loop (cluster/training.py);
when a node with workers is lost it places them again on the nodes left. At the
end it saves the model and writes a typed report (cluster/job_report.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from dtrain import __version__
from dtrain.cluster import placement
from dtrain.cluster.algorithms import Algorithm, algorithm_for
from dtrain.cluster.connect import connect_local
from dtrain.reports.job_report import JobReport, examples, until_accuracy_summary
from dtrain.cluster.datacache import DataCache
from dtrain.cluster.layout import Layout
from dtrain.cluster.outcome import JobCancelled, JobFailed, OnEvent, WorkersLost
from dtrain.cluster.parameter_server import ParameterServer
from dtrain.files import read_jsonl, write_json
from dtrain.cluster.rundir import start_or_resume, wait_for_turn
from dtrain.cluster.training import Job, NodeWatch, train_periods
from dtrain.cluster.workers import PLACEMENT_TIMEOUT_S, OwnWorkers, assignments, packable, wait_until_ready
from dtrain.data.mnist import N_CLASSES, Dataset
from dtrain.errors import UserError
from dtrain.model.evaluate import PIXEL_SCALE, Evaluation
from dtrain.model.kernels import resolve_kernel
from dtrain.model.mlp import layer_sizes
from dtrain.model.weights import save_weights
from dtrain.spec import JobSpec

__all__ = ["JobCancelled", "JobFailed", "JobResult", "OnEvent", "WorkersLost", "check_fits", "run_job"]

#: Times Ray restarts a lost parameter server before the job gives up on it.
SERVER_RESTARTS = 5

#: Times a job places its workers again after losing a node (fitted to the nodes left).
MAX_REPLACEMENTS = 3



@dataclass
class JobResult:
    job_id: str
    state: str
    run_dir: Path
    spec: JobSpec
    history: list[dict[str, Any]]
    evaluation: Evaluation
    dataset: Dataset
    report: dict[str, Any]  # report.json's content (JobReport.to_json())


@dataclass
class Trained:
    """What placing and training gave: the history, the final model and its evaluation, and how it ran."""

    history: list[dict[str, Any]]
    theta: np.ndarray
    final: Evaluation
    workers: list[dict]  # Worker.stats() by rank
    share: float  # CPUs per worker
    reduction: dict[str, Any]  # {"reduce": name, "reducers": [...]}
    startup_s: float | None


def preflight(spec: JobSpec, nodes: list[float], data: DataCache | None = None) -> Dataset:
    """Check that the job can run on nodes of `nodes` CPUs before anything starts: its
    data loads (from `data` if it has it), fits the workers, and the workers fit the nodes.
    Returns the data."""
    dataset = (data or DataCache()).dataset(spec.data_dir)
    check_fits(spec, dataset)
    placement.worker_cpus(spec.workers, spec.cpus_per_worker, nodes)
    return dataset


def check_fits(spec: JobSpec, dataset: Dataset) -> None:
    n = len(dataset.y_train)
    if spec.workers > n:
        raise UserError(f"{spec.workers} workers for {n} training samples; expected at most {n}", "workers")
    if spec.federated and spec.algorithm.clients > n:
        raise UserError(f"{spec.algorithm.clients} clients for {n} training samples; expected at most {n}", "clients")


# prepare -> place -> algorithm.drive inside the recovery loop -> JobReport, in that order
# on one page; each step is a call.
def run_job(
    spec: JobSpec,
    run_dir: Path,
    job_id: str,
    on_event: OnEvent | None = None,
    dataset: Dataset | None = None,
    should_stop: Callable[[], bool] | None = None,
    may_start: Callable[[], bool] | None = None,
    crew: Any = None,
    data: DataCache | None = None,
    server: Any = None,
) -> JobResult:
    """Train `spec` on the connected Ray cluster (an embedded one if none); write the run directory.

    Events for `on_event`: "connected", "pending" (waiting for CPUs), "placed", "started",
    then one "epoch" per epoch. `should_stop` is polled while waiting for CPUs
    and at each epoch; when it answers True the job ends with JobCancelled.
    `may_start` says whether the job may reserve its CPUs yet (jobs queue in
    submission order on a cluster); it is polled until it does. `crew` gives the job its
    workers and takes them back (`start(group, share)`, `finish(workers)`): its own by
    default (workers.OwnWorkers), or a cluster's warm ones (pool.PooledWorkers). `data` keeps
    datasets and their training rows for later jobs of the same process (datacache.py).
    `server` is a parameter server the caller started (`start_server`) and ends, for this job
    to configure; else the job starts its own and ends it.
    """
    emit = on_event or (lambda kind, payload: None)
    stop = should_stop or (lambda: False)
    t_start = time.perf_counter()
    data = data or DataCache()
    dataset = dataset or data.dataset(spec.data_dir)
    check_fits(spec, dataset)
    kernel = resolve_kernel(spec.kernel)
    start_or_resume(run_dir, spec)
    algorithm = algorithm_for(spec)
    layout = Layout.for_job(spec, dataset.y_train)
    warm, training_set = prepare_meanwhile(algorithm, kernel, dataset, data, layout)
    nodes, share = connect_and_wait(spec, may_start, stop, emit)
    import ray

    emit_counting, recoveries = counting_recoveries(emit)
    sizes = layer_sizes(dataset.n_features, spec.hidden, N_CLASSES)
    plan = algorithm.schedule(layout.largest_shard())
    job = Job(spec, algorithm, plan, layout, dataset, sizes, run_dir, emit_counting, stop, t_start, job_id)
    done_before = len(read_jsonl(run_dir / "metrics.jsonl"))
    if done_before:
        emit_counting("recovering", {"epochs_done": done_before, "reason": "resumed from its last checkpoint", "resumed": True})
    # One node (local mode): workers that share its cores share processes too (workers.OwnWorkers).
    crew = crew or OwnWorkers(pack=packable(spec) and len(nodes) == 1)
    own_server = server is None
    server = server or start_server()  # first: its process starts while the data goes into the object store
    try:
        # The dataset enters the object store once; every worker gets the references.
        data_refs = data.put(*training_set.result())
        trained = place_and_train(job, server, share, data_refs, kernel, warm, crew)
    finally:
        if own_server:
            ray.kill(server)
    return finish(job, job_id, kernel, trained, recoveries)


def counting_recoveries(emit: OnEvent) -> tuple[OnEvent, list[str]]:
    """`emit` that also keeps each "recovering" event's reason, and the list it keeps them in (for the report)."""
    recoveries: list[str] = []

    def emit_counting(kind: str, payload: dict[str, Any]) -> None:
        if kind == "recovering":
            recoveries.append(payload["reason"])
        emit(kind, payload)

    return emit_counting, recoveries


def prepare_meanwhile(algorithm: Algorithm, kernel: str, dataset: Dataset, data: DataCache, layout: Layout) -> tuple[Future, Future]:
    """While Ray starts (ray.init mostly waits for its processes): compile or load the kernel,
    so that the workers find it cached, and convert the training images to sparse rows (0.2-0.5 s
    that would otherwise delay creating the workers). Returns (the kernel's warm-up, the training set)."""
    preparing = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dtrain-prepare")
    warm = preparing.submit(algorithm.warm_up, kernel, dataset.n_features)
    training_set = preparing.submit(data.training_set, dataset, layout)
    preparing.shutdown(wait=False)
    return warm, training_set


def connect_and_wait(spec: JobSpec, may_start: Callable[[], bool] | None, stop: Callable[[], bool], emit: OnEvent) -> tuple[list[float], float]:
    """Connect to Ray (an embedded one if none) and wait for the job's turn: the nodes' CPUs and each worker's share."""
    connect_local()  # before Ray is imported here: it sets Ray's environment for this process (connect.py)
    nodes = placement.node_cpus()
    share = placement.worker_cpus(spec.workers, spec.cpus_per_worker, nodes)
    emit("connected", {"cpus": sum(nodes), "nodes": len(nodes), "cpus_per_worker": share})
    # Jobs start in the order they were submitted: Ray places waiting groups in no set order.
    if not wait_for_turn(may_start, stop, emit):
        raise JobCancelled("stopped while waiting for older jobs to start")
    return nodes, share


def start_server() -> Any:
    """A parameter server actor on the head node, for a job to configure (training.py does, with
    the algorithm's update rule, before each rewind)."""
    import ray

    return (
        ray.remote(ParameterServer)
        .options(
            num_cpus=0,
            resources=placement.ON_HEAD,  # it writes the checkpoints, next to the job's other files
            max_restarts=SERVER_RESTARTS,
            max_task_retries=0,  # the runner rewinds it to a checkpoint instead: a round must not be applied twice
        )
        .remote()
    )


def place_and_train(job: Job, server: Any, share: float, data_refs: tuple, kernel: str, warm: Future, crew: Any) -> Trained:
    """Place the workers (again, fitted to the nodes left, when a node with some of them is lost) and train."""
    import ray

    spec, startup = job.spec, None
    for placing in range(MAX_REPLACEMENTS + 1):
        share = share if placing == 0 else placement.worker_cpus(spec.workers, spec.cpus_per_worker, placement.node_cpus())
        with placement.reserved(crew.bundles(spec.workers, share)) as group:
            waiting = f"waiting for {spec.workers} x {share:g} CPU for the workers; other jobs hold them"
            if not placement.wait_for(group, job.stop, lambda s: job.emit("pending", {"message": waiting, "waited_s": s})):
                raise JobCancelled("stopped while waiting for CPUs")
            job.emit("placed", {"cpus_per_worker": share})
            workers = crew.start(group, spec.workers, share)
            assigned = assignments(job, data_refs, kernel, placing)
            reduction = None
            try:
                warm.result()
                placed = wait_until_ready(workers, assigned, share)
                # One reducer per node of the workers (when the tree is on), made again with them.
                reduction = job.algorithm.reduction(placed["node_of"], group)
                server_pid = ray.get(server.ready.remote(), timeout=PLACEMENT_TIMEOUT_S)
                reduction.wait_ready(PLACEMENT_TIMEOUT_S)
                startup = startup or time.perf_counter() - job.t_start
                job.emit("started", {
                    "startup_s": startup, "workers": spec.workers, "rounds": sum(job.plan.rounds), "kernel": kernel,
                    "cpus_per_worker": share, "nodes": placed["nodes"], "pids": placed["pids"],
                    "server_pid": server_pid, "reduce": reduction.name, "reducers": reduction.summary(),
                })
                watch = NodeWatch(set(placed["nodes"]), job.stop)
                # The driver scores epochs while the workers use the cores. (The dtrain command
                # also starts BLAS with one thread, which spares the spin of a pool cut down
                # here: dtrain/cli/__init__.py.)
                with threadpool_limits(1):
                    history, theta, final = train_periods(job, server, workers, assigned, reduction, watch.wait, share)
                stats = ray.get([w.stats.remote(a, len(history)) for w, a in zip(workers, assigned)])
                summary = {"reduce": reduction.name, "reducers": reduction.summary()}
                return Trained(history, theta, final, stats, share, summary, startup)
            except WorkersLost as lost:
                if placing == MAX_REPLACEMENTS:
                    raise JobFailed(f"lost workers {MAX_REPLACEMENTS + 1} times; last: {lost}") from None
                job.emit("recovering", {"epochs_done": lost.epochs_done, "reason": str(lost)})
            finally:
                if reduction is not None:
                    reduction.kill()
                crew.finish(workers)
    raise AssertionError("unreachable")


def finish(job: Job, job_id: str, kernel: str, trained: Trained, recoveries: list[str]) -> JobResult:
    """Save the model and write report.json."""
    spec, dataset, history, final = job.spec, job.dataset, trained.history, trained.final
    info = {"activation": spec.activation, "input_scale": PIXEL_SCALE, "image_shape": list(dataset.image_shape),
            "dataset": dataset.name, "test_accuracy": final.accuracy, "job_id": job_id}
    save_weights(job.run_dir / "model.npz", trained.theta, job.sizes, info)
    report = JobReport(
        job_id=job_id,
        dtrain_version=__version__,
        spec=spec,
        dataset={"name": dataset.name, "train": len(dataset.y_train), "test": len(dataset.y_test),
                 "image_shape": list(dataset.image_shape)},
        layer_sizes=list(job.sizes),
        kernel=kernel,
        block_momentum=job.plan.momenta[: len(history)],
        rounds_per_epoch=job.plan.rounds[: len(history)],
        rounds_run=sum(job.plan.rounds[: len(history)]),
        cpus_per_worker=trained.share,
        **trained.reduction,
        epochs_run=len(history),
        workers=trained.workers,
        worker_restarts=sum(h["worker_restarts"] for h in history),
        recoveries=recoveries,
        test=final.summary(),
        timing={"startup_s": trained.startup_s, "train_s": history[-1]["train_time_s"],
                "total_s": time.perf_counter() - job.t_start},
        until_accuracy=until_accuracy_summary(spec, history),
        **examples(final, dataset.x_test, dataset.y_test),
    ).to_json()
    write_json(job.run_dir / "report.json", report)
    return JobResult(job_id, "SUCCEEDED", job.run_dir, spec, history, final, dataset, report)


