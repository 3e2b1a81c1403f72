"""Where the one-actor parameter server saturates, and what a tree reduction buys (issue 7, "Scale on paper").

    python benchmarks/ps_ceiling.py [--repeats 5] [--quick] [--out benchmarks/results/ps_ceiling.json]

One command, about 1-2 minutes on 2 cores. It starts its own embedded Ray (address
"local", a private temp dir: it never joins another cluster on the machine), prints
one markdown table per section and writes the JSON.

1. Supply: merge throughput of the real `ParameterServer` actor (cluster/parameter_server.py,
   unchanged) for K in 1..64 workers and three model sizes: ms per round, rounds/s,
   syncs/s (worker results merged per second).
2. Demand at default settings: a worker's compute per round (its block of the default
   sync schedule, 2000/K samples in epoch 1, doubling per epoch up to a whole shard, as
   RoundPlan plans it) at the numba kernel's samples/s measured in the same run on real
   MNIST; the share of a round the merge takes; the K where merge > compute (saturation).
3. Where the merge time goes at K = 64: Ray's per-call floor, fetching and deserialising
   the K argument objects, combine.py's weighted mean, the rest of apply_updates,
   returning the new start weights.
4. Tree reduction, as dtrain runs it (cluster/reduce.py): a reducer turns a group of G workers'
   results into one partial (sample-weighted sum of thetas in float64, samples, the workers'
   loss sums, correct, restarted) with `partial_sum`, as a task and as the job's `NodeReducer`
   actor; the real `ParameterServer.apply_partials` merges the partials. Measured side by side
   with the flat merge, and checked to give the same weights and totals.
5. A linear cost model fitted to 1 and 4 (its per-object constant taken from 3), and what it
   predicts for 1000 workers: one actor as today, the flat buffer sharded over 8 actors, a
   tree with 8 or 32 workers per reducer, tree and shards. Extrapolated from K <= 64.
   Also measured: the driver's cost to submit one train_block-shaped call (the runner
   submits K of them per round).

How the workers are simulated. 64 real worker actors would cost ~0.5 s and ~100+ MiB each
on 2 cores, so a few *producer* actors (4) stand in for them: each call returns many result
tuples `(theta float32, samples, loss, correct, restarted)` -- exactly what
`Worker.train_block` returns -- with `num_returns=n`, so every one of a round's K results is
its own object in the object store, made by another process and owned by the driver, as in
a job. The results of a round are made before the round is timed, so the producers' compute
is not counted. Each (model, K) gets a pool of up to 20 rounds of distinct objects (at most
256 MiB: one round at 64 x 784-1024-10), cycled through; the JSON's checks.fresh_vs_reused
times fresh objects every round against a pool of one round (784-64-10, K = 64): fresh was
3-9% slower in the runs so far, so pooled figures may be that much low.

Timing. "Pipelined": rounds submitted back to back as the runner submits them
(`start = server.apply.remote(*results)`, each round's output ref replacing the
last); the actor runs them in order, so elapsed / rounds is the server's busy time per
round: its capacity. "One at a time": submit a round, wait for its start weights, repeat:
adds the driver's round trip, as a round's critical path would. Each figure is the median
of --repeats repeats (default 5). The machine is 2 cores shared with other work: the load
average at start and end goes into the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

# One BLAS thread, as in the workers (and the kernel figure is "one core").
threadpool_limits(1)

# dtrain.cluster sets Ray's environment (token auth, no usage stats) for Ray to read at import:
# it must be imported before ray.
import dtrain.cluster  # noqa: E402, F401
from dtrain.cluster.combine import default_block_momentum  # noqa: E402
from dtrain.cluster.algorithms.bmuf import BlockMomentumRule  # noqa: E402
from dtrain.cluster.parameter_server import ParameterServer  # noqa: E402
from dtrain.cluster.reduce import NodeReducer, Partial  # noqa: E402
from dtrain.cluster.reduce import partial_sum as reduce_partial_sum  # noqa: E402
from dtrain.model.mlp import he_init, layer_sizes, n_params  # noqa: E402

MODELS: dict[str, tuple[int, ...]] = {"784-64-10": (64,), "784-200-200-10": (200, 200), "784-1024-10": (1024,)}
DEFAULT_MODEL = "784-64-10"
WORKERS = (1, 2, 4, 8, 16, 32, 64)
PRODUCERS = 4  # producer actors standing in for the workers
VARIANTS = 4  # distinct weight vectors each producer hands out
POOL_BYTES = 256 * 2**20  # cap on the result objects made at once for one (model, K)
MAX_DISTINCT = 20  # rounds of fresh objects in a pool, memory allowing
PROFILE_K = 64
TREE_GROUPS = (4, 8, 16, 32)  # workers per reducer (per node) tried at K = 64
TREE_DEFAULT_GROUP = 8
SCALE_K = 1000  # the projection's worker count
SHARDS = 8  # server shards in the sharding projection
LR = 0.01
MIB = 2**20


def log(message: str) -> None:
    print(f"[ps_ceiling {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def med(values: list[float]) -> float:
    return statistics.median(values)


# ------------------------------------------------------------------ the tree reduction's code


def partial_sum(*results: tuple) -> Partial:
    """A reducer's output for a group of workers' results: dtrain's own `partial_sum` (the one
    NodeReducer.reduce runs), taking the results as arguments, so it can run as a Ray task."""
    return reduce_partial_sum(results)


class ProfiledServer(ParameterServer):
    """The real ParameterServer plus timers and no-op probes. Nothing of the parent is
    overridden: apply is the job's code."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.timings: list[tuple[float, float]] = []

    def set_momentum(self, momentum: float) -> None:
        """Block momentum from the next merge on (a job's schedule fixes it per epoch instead)."""
        self.rule.momenta = [float(momentum)]

    def apply_updates_timed(self, *results: tuple) -> np.ndarray:
        """apply, timing its body and the weighted sum inside it (reduce.weighted_sum)."""
        from dtrain.cluster import reduce

        original, spent = reduce.weighted_sum, [0.0]

        def timed_mean(thetas: Any, counts: Any) -> np.ndarray:
            t = time.perf_counter()
            try:
                return original(thetas, counts)
            finally:
                spent[0] += time.perf_counter() - t

        reduce.weighted_sum = timed_mean  # this actor's process only, for this call only
        t0 = time.perf_counter()
        try:
            out = self.apply(*results)
        finally:
            reduce.weighted_sum = original
        self.timings.append((time.perf_counter() - t0, spent[0]))
        return out

    def take_timings(self) -> list[tuple[float, float]]:
        out, self.timings = self.timings, []
        return out

    def noop(self, *results: tuple) -> None:
        """Ray resolves the arguments (fetch + deserialise), nothing else."""
        return None

    def noop_return(self, *results: tuple) -> np.ndarray:
        """As noop, and returns the start weights as apply does."""
        return self.start()

    def get_inside(self, refs: list) -> float:
        """Seconds for ray.get of the refs inside this actor (refs passed in a list: not resolved by Ray)."""
        import ray

        t0 = time.perf_counter()
        ray.get(refs)
        return time.perf_counter() - t0

    def state(self) -> tuple[np.ndarray, np.ndarray, int]:
        return self.rule.start(), self.rule.model(), self.version


class Producer:
    """Stands in for several workers: returns many result tuples per call, each its own object."""

    def set_model(self, sizes: tuple[int, ...], seed: int) -> int:
        rng = np.random.default_rng(seed)
        theta0 = he_init(sizes, np.random.default_rng(0))  # the server's seed-0 model: results near it
        self.thetas = [(theta0 + rng.normal(0.0, 1e-3, theta0.size)).astype(np.float32) for _ in range(VARIANTS)]
        return int(theta0.size)

    def make(self, n: int, samples: int, first: int) -> Any:
        """n results; their sample counts differ by one, as the blocks of uneven shards do (so the
        weights n_k / total are not powers of two, as they would all be at K = 64 with equal blocks)."""
        out = []
        for i in range(n):
            b = samples + (first + i) % 2
            out.append((self.thetas[(first + i) % VARIANTS], b, 0.35 * b, int(0.9 * b), 0))
        return tuple(out) if n > 1 else out[0]

    def touch(self, start: Any, epoch: int, r: int, rounds: int) -> None:
        """A call shaped like Worker.train_block (for the driver's submission cost)."""
        return None


# ------------------------------------------------------------------ measurement helpers


def pipelined(ray: Any, submit_round: Any, rounds: int) -> tuple[float, float]:
    """(ms per round, driver submission ms per round), rounds submitted back to back."""
    submit_s = 0.0
    t0 = time.perf_counter()
    last = None
    for r in range(rounds):
        ts = time.perf_counter()
        last = submit_round(r)
        submit_s += time.perf_counter() - ts
    ray.get(last)
    return (time.perf_counter() - t0) / rounds * 1e3, submit_s / rounds * 1e3


def one_at_a_time(ray: Any, submit_round: Any, rounds: int) -> float:
    t0 = time.perf_counter()
    for r in range(rounds):
        ray.get(submit_round(r))
    return (time.perf_counter() - t0) / rounds * 1e3


def rounds_for_target(est_ms: float, target_ms: float, lo: int = 10, hi: int = 60) -> int:
    return int(min(hi, max(lo, math.ceil(target_ms / max(est_ms, 1e-3)))))


def make_pool(ray: Any, producers: list, k: int, samples: int, distinct: int) -> list[list]:
    """`distinct` rounds of K result refs each, spread over the producers; waits until all exist."""
    share = [k // len(producers) + (i < k % len(producers)) for i in range(len(producers))]
    pool = []
    for d in range(distinct):
        refs: list = []
        for i, (producer, n) in enumerate(zip(producers, share)):
            if n == 0:
                continue
            out = producer.make.options(num_returns=n).remote(n, samples, d + i)
            refs += [out] if n == 1 else list(out)
        pool.append(refs)
    flat = [r for rr in pool for r in rr]
    ready, _ = ray.wait(flat, num_returns=len(flat), timeout=300, fetch_local=False)
    if len(ready) != len(flat):
        raise RuntimeError("producers did not make the results within 300 s")
    return pool


def fit_cost(points: list[tuple[float, float, float]], b_fixed: float | None = None) -> dict[str, Any]:
    """t = a + n * (b + c * mib) for (n inputs, mib MiB per input, t ms), least squares on the
    relative error (the figures span 1-100 ms). With `b_fixed` the per-input constant is not
    fitted but given (section 3 measures it: fetching and deserialising one argument object).
    A coefficient that comes out negative is dropped (fixed at 0) and the rest refitted."""
    n = np.array([p[0] for p in points], float)
    mb = np.array([p[1] for p in points], float)
    t = np.array([p[2] for p in points], float)
    columns = {"a_ms": np.ones_like(n), "b_ms_per_input": n, "c_ms_per_input_mib": n * mb}
    given = {} if b_fixed is None else {"b_ms_per_input": float(b_fixed)}
    keep = [c for c in columns if c not in given]
    target = t - sum(columns[c] * v for c, v in given.items())
    while True:
        X = np.column_stack([columns[c] for c in keep])
        coef, *_ = np.linalg.lstsq(X / t[:, None], target / t, rcond=None)
        if (coef >= 0).all() or len(keep) == 1:
            break
        keep.pop(int(np.argmin(coef)))
    fit: dict[str, Any] = {c: 0.0 for c in columns}
    fit.update(given)
    fit.update({c: float(v) for c, v in zip(keep, coef)})
    pred = fit["a_ms"] + n * (fit["b_ms_per_input"] + fit["c_ms_per_input_mib"] * mb)
    return {**fit, "b_given": b_fixed is not None, "max_rel_err": float(np.max(np.abs(pred - t) / t)),
            "median_rel_err": float(np.median(np.abs(pred - t) / t)), "points": len(points),
            "dropped": sorted(set(columns) - set(keep) - set(given))}


def per_result_slope(ks: list[int], ms: list[float]) -> dict[str, float]:
    """t = a + s * K for one model (relative least squares): s is the cost of one more worker's result."""
    k, t = np.array(ks, float), np.array(ms, float)
    X = np.column_stack([np.ones_like(k), k])
    (a, s), *_ = np.linalg.lstsq(X / t[:, None], np.ones_like(t), rcond=None)
    return {"a_ms": float(a), "ms_per_result": float(s)}


def predict(fit: dict[str, float], n: float, mb: float) -> float:
    return fit["a_ms"] + n * (fit["b_ms_per_input"] + fit["c_ms_per_input_mib"] * mb)


# ------------------------------------------------------------------ 2. demand


def kernel_speeds(repeats: int) -> dict[str, Any]:
    """Per-sample SGD samples/s on one core (numba, real MNIST as sparse rows, fixed order) per model."""
    from dtrain.data.mnist import load_dataset
    from dtrain.model.kernels import resolve_kernel, sgd, warm_up
    from dtrain.model.sgd_setup import SGDSetup
    from dtrain.model.sparse import SparseRows

    ds = load_dataset()
    kernel = resolve_kernel("auto")
    images = SparseRows.from_dense(ds.x_train)
    order = np.random.default_rng(0).permutation(len(ds.y_train)).astype(np.int64)
    warm_up(kernel, ds.x_train.shape[1])
    counts = {"784-64-10": 30_000, "784-200-200-10": 8_000, "784-1024-10": 4_000}
    if kernel != "numba":
        counts = {m: 1_000 for m in counts}
    out: dict[str, Any] = {"kernel": kernel, "train": len(ds.y_train), "models": {}}
    for model, hidden in MODELS.items():
        sizes = layer_sizes(ds.x_train.shape[1], hidden, 10)
        theta0 = he_init(sizes, np.random.default_rng(0))
        setup = SGDSetup(sizes, "relu", images, ds.y_train, LR)
        sgd(kernel, theta0.copy(), setup, order[:1])  # writable-array specialisation
        runs = []
        for _ in range(repeats):
            n = counts[model]
            t0 = time.perf_counter()
            sgd(kernel, theta0.copy(), setup, order[:n])
            runs.append(n / (time.perf_counter() - t0))
        out["models"][model] = {"samples": counts[model], "samples_per_s_runs": runs, "samples_per_s": med(runs)}
        log(f"  kernel {model}: {med(runs) / 1000:.1f}k samples/s")
    return out


def schedule(k: int, n_train: int) -> list[dict[str, int]]:
    """The default sync schedule for K workers, epoch by epoch until whole-shard rounds: the
    largest worker's block (samples per round) and rounds per epoch, as the runner plans it."""
    from dtrain.cluster.algorithms import algorithm_for
    from dtrain.spec import JobSpec

    shard = -(-n_train // k)  # the largest of K nearly equal contiguous shards
    spec = JobSpec(workers=k)
    plan = algorithm_for(spec).schedule(shard)
    out = []
    for e, rounds in enumerate(plan.rounds):
        out.append({"epoch": e + 1, "rounds": rounds, "block": -(-shard // rounds), "momentum": plan.momenta[e]})
        if rounds == 1:
            break
    return out


# ------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="repeats of every timing (medians are quoted)")
    parser.add_argument("--quick", action="store_true", help="2 repeats, shorter timings: a smoke run")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "ps_ceiling.json"))
    args = parser.parse_args()
    repeats = 2 if args.quick else max(1, args.repeats)
    target_ms = 60.0 if args.quick else 150.0
    t_begin = time.perf_counter()

    import ray

    R: dict[str, Any] = {
        "config": {"repeats": repeats, "quick": args.quick, "target_ms_per_repeat": target_ms, "workers": list(WORKERS),
                   "models": {m: list(layer_sizes(784, h, 10)) for m, h in MODELS.items()}, "producers": PRODUCERS,
                   "pool_bytes_cap": POOL_BYTES, "tree_groups": list(TREE_GROUPS), "argv": sys.argv[1:]},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "ray": ray.__version__, "loadavg_start": loadavg(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")},
    }
    log(f"{repeats} repeats, load {loadavg()}")

    log("2. kernel speed on real MNIST (one core)")
    R["kernel"] = kernel_speeds(3)
    n_train = R["kernel"]["train"]

    tmp = tempfile.mkdtemp(prefix="psc", dir="/tmp")  # short: Ray's socket paths live under it
    os.environ.setdefault("RAY_worker_maximum_startup_concurrency", "256")
    ray.init(address="local", num_cpus=os.cpu_count() or 2, object_store_memory=1024 * MIB, include_dashboard=False,
             logging_level="WARNING", log_to_driver=False, _temp_dir=tmp)
    try:
        measure(ray, R, repeats, target_ms)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    analyse(R, n_train)
    R["machine"]["loadavg_end"] = loadavg()
    R["total_s"] = time.perf_counter() - t_begin
    report(R)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(R, indent=1, default=float) + "\n")
    log(f"wrote {out} ({R['total_s']:.0f} s)")
    return 0


def measure(ray: Any, R: dict[str, Any], repeats: int, target_ms: float) -> None:
    producers = [ray.remote(Producer).options(num_cpus=0).remote() for _ in range(PRODUCERS)]
    reducer = ray.remote(num_cpus=1)(partial_sum)
    reducer_actor = ray.remote(NodeReducer).options(num_cpus=0).remote()
    R["grid"], R["profile"], R["tree"], R["checks"] = {}, {}, {}, {}
    for model, hidden in MODELS.items():
        sizes = layer_sizes(784, hidden, 10)
        p = n_params(sizes)
        mib = p * 4 / MIB
        ray.get([pr.set_model.remote(sizes, seed) for seed, pr in enumerate(producers)])
        server = ray.remote(ProfiledServer).options(num_cpus=0, max_task_retries=0).remote(sizes, seed=0, rule=BlockMomentumRule([0.0]))
        prof = ray.remote(ProfiledServer).options(num_cpus=0, max_task_retries=0).remote(sizes, seed=0, rule=BlockMomentumRule([0.0]))
        ray.get([server.ready.remote(), prof.ready.remote()])
        R["grid"][model] = {"params": p, "mib": mib, "by_k": {}}
        log(f"1. {model} ({p} params, {mib:.2f} MiB): merge throughput")
        for k in WORKERS:
            samples = 2000 // k
            distinct = max(1, min(MAX_DISTINCT, POOL_BYTES // (k * p * 4)))
            pool = make_pool(ray, producers, k, samples, distinct)
            momentum = default_block_momentum(k, late=False)
            server.set_momentum.remote(momentum)

            def flat(r: int, pool: list = pool, server: Any = server) -> Any:
                return server.apply.remote(*pool[r % len(pool)])

            warm = [one_at_a_time(ray, flat, 1) for _ in range(3)]
            rounds = rounds_for_target(med(warm), target_ms)
            pipe, submit, single = [], [], []
            for _ in range(repeats):
                ms, sub = pipelined(ray, flat, rounds)
                pipe.append(ms)
                submit.append(sub)
                single.append(one_at_a_time(ray, flat, max(5, rounds // 2)))
            row = {"k": k, "samples_per_result": samples, "momentum": momentum, "pool_rounds": len(pool),
                   "rounds_per_repeat": rounds, "pipelined_ms_runs": pipe, "one_at_a_time_ms_runs": single,
                   "submit_ms_runs": submit, "ms_per_round": med(pipe), "one_at_a_time_ms": med(single),
                   "submit_ms": med(submit)}
            row["rounds_per_s"] = 1e3 / row["ms_per_round"]
            row["syncs_per_s"] = k * row["rounds_per_s"]
            R["grid"][model]["by_k"][k] = row
            log(f"  K={k:3d}: {row['ms_per_round']:.2f} ms/round pipelined ({row['syncs_per_s']:.0f} syncs/s), "
                f"{row['one_at_a_time_ms']:.2f} one at a time")
            if k == PROFILE_K:
                R["profile"][model] = profile(ray, prof, pool, k, rounds, repeats, mib)
                R["tree"][model] = tree(ray, prof, reducer, reducer_actor, pool, k, repeats, target_ms, mib, momentum)
                if model == DEFAULT_MODEL:
                    R["checks"]["fresh_vs_reused"] = fresh_vs_reused(ray, producers, server, k, samples, repeats)
                    R["checks"]["driver_submit"] = driver_submit(ray, producers, server, k, repeats)
            del pool, flat
        final = ray.get(prof.state.remote())
        R["grid"][model]["profiled_server_finite"] = bool(np.isfinite(final[0]).all())
        for actor in (server, prof):
            ray.kill(actor)
    for actor in [*producers, reducer_actor]:
        ray.kill(actor)


def profile(ray: Any, prof: Any, pool: list, k: int, rounds: int, repeats: int, mib: float) -> dict[str, Any]:
    """Section 3: one K-result round taken apart (all pipelined per-call times, ms, medians)."""
    log(f"3. profile of a K={k} round")
    refs = pool[0]
    calls = {
        "call_floor": lambda r: prof.noop.remote(),
        "args_only": lambda r: prof.noop.remote(*pool[r % len(pool)]),
        "args_and_return": lambda r: prof.noop_return.remote(*pool[r % len(pool)]),
        "apply_updates": lambda r: prof.apply_updates_timed.remote(*pool[r % len(pool)]),
    }
    for fn in calls.values():  # warm
        ray.get(fn(0))
    ray.get(prof.take_timings.remote())
    runs: dict[str, list[float]] = {name: [] for name in calls}
    inside_get = []
    for _ in range(repeats):
        for name, fn in calls.items():
            runs[name].append(pipelined(ray, fn, rounds)[0])
        inside_get.append(ray.get(prof.get_inside.remote(refs)) * 1e3)
    timings = ray.get(prof.take_timings.remote())
    body = med([t[0] for t in timings]) * 1e3
    mean = med([t[1] for t in timings]) * 1e3
    # the same weighted mean in this process, on the same objects (zero-copy views)
    from dtrain.cluster.combine import weighted_mean

    values = ray.get(refs)
    thetas, counts = [v[0] for v in values], [v[1] for v in values]
    local = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        weighted_mean(thetas, counts)
        local.append((time.perf_counter() - t0) * 1e3)
    del values, thetas
    m = {name: med(v) for name, v in runs.items()}
    parts = {
        "ray_call_floor": m["call_floor"],
        "fetch_deserialise_args": m["args_only"] - m["call_floor"],
        "weighted_mean": mean,
        "rest_of_apply_updates": body - mean,
        "return_start_weights": m["args_and_return"] - m["args_only"],
    }
    parts["residual"] = m["apply_updates"] - sum(parts.values())
    return {"k": k, "mib_per_result": mib, "rounds_per_repeat": rounds, "runs_ms": runs, "medians_ms": m,
            "apply_updates_body_ms": body, "weighted_mean_ms": mean, "inside_ray_get_ms_runs": inside_get,
            "inside_ray_get_ms": med(inside_get), "weighted_mean_in_driver_ms": med(local), "parts_ms": parts,
            "total_ms": m["apply_updates"]}


def tree(ray: Any, prof: Any, reducer: Any, reducer_actor: Any, pool: list, k: int, repeats: int, target_ms: float, mib: float,
         momentum: float) -> dict[str, Any]:
    """Section 4: the tree reduction (cluster/reduce.py) at K workers, groups of G, against the flat merge."""
    log(f"4. tree reduction at K={k}")
    out: dict[str, Any] = {"k": k, "by_group": {}}
    ray.get([reducer.remote(*pool[0][:2]) for _ in range(2)])  # start (and warm) the reducers' worker processes
    for g in TREE_GROUPS:
        groups = [[rr[i:i + g] for i in range(0, len(rr), g)] for rr in pool]
        parts = [[reducer.remote(*grp) for grp in gg] for gg in groups]
        flat_parts = [x for pp in parts for x in pp]
        ray.wait(flat_parts, num_returns=len(flat_parts), timeout=300, fetch_local=False)

        def server_only(r: int, parts: list = parts) -> Any:
            return prof.apply.remote(*parts[r % len(parts)])

        def one_reducer(r: int, groups: list = groups) -> Any:
            return reducer.remote(*groups[r % len(groups)][0])

        def one_reducer_actor(r: int, groups: list = groups) -> Any:
            return reducer_actor.reduce.remote(*groups[r % len(groups)][0])

        def tree_round(r: int, groups: list = groups) -> Any:
            return prof.apply.remote(*[reducer.remote(*grp) for grp in groups[r % len(groups)]])

        ray.get(server_only(0))
        rounds = rounds_for_target(med([one_at_a_time(ray, server_only, 1) for _ in range(3)]), target_ms)
        red_rounds = rounds_for_target(med([one_at_a_time(ray, one_reducer, 1) for _ in range(2)]), target_ms, 5, 30)
        ray.get(one_reducer_actor(0))
        srv, red, red_actor, whole = [], [], [], []
        for _ in range(repeats):
            srv.append(pipelined(ray, server_only, rounds)[0])
            red.append(one_at_a_time(ray, one_reducer, red_rounds))
            red_actor.append(one_at_a_time(ray, one_reducer_actor, red_rounds))
            if g == TREE_DEFAULT_GROUP:
                whole.append(one_at_a_time(ray, tree_round, max(3, red_rounds // 4)))
        row = {"group": g, "partials": len(parts[0]), "partial_mib": mib * 2, "rounds_per_repeat": rounds,
               "server_ms_runs": srv, "server_ms": med(srv), "reducer_ms_runs": red, "reducer_ms": med(red),
               "reducer_actor_ms_runs": red_actor, "reducer_actor_ms": med(red_actor)}
        row["cluster_critical_path_ms"] = min(row["reducer_ms"], row["reducer_actor_ms"]) + row["server_ms"]
        if whole:
            row["this_machine_round_ms_runs"] = whole
            row["this_machine_round_ms"] = med(whole)
        out["by_group"][g] = row
        log(f"  G={g:2d}: server {row['server_ms']:.2f} ms for {row['partials']} partials, "
            f"one reducer {row['reducer_ms']:.2f} ms (task), {row['reducer_actor_ms']:.2f} ms (actor)")
        if g == TREE_DEFAULT_GROUP:
            out["equal"] = same_weights(ray, prof, pool, parts, momentum)
        del parts, flat_parts
    return out


def same_weights(ray: Any, prof: Any, pool: list, parts: list, momentum: float, rounds: int = 3) -> dict[str, Any]:
    """Flat and tree merges of the same results, from the same state: the weights they reach."""
    def run(submit: Any) -> tuple[np.ndarray, np.ndarray, dict]:
        ray.get(prof.rewind.remote(0))
        prof.set_momentum.remote(momentum)
        start = None
        for r in range(rounds):
            start = submit(r)
        ray.get(start)
        start_w, global_w, _ = ray.get(prof.state.remote())
        return np.array(start_w), np.array(global_w), ray.get(prof.end_epoch.remote())

    fs, fg, ff = run(lambda r: prof.apply.remote(*pool[r % len(pool)]))
    ts, tg, tf = run(lambda r: prof.apply.remote(*parts[r % len(parts)]))
    diff = float(max(np.abs(fs - ts).max(), np.abs(fg - tg).max()))
    scale = float(np.abs(fg).max())
    totals_equal = all(ff[key] == tf[key] for key in ("version", "samples", "train_accuracy", "worker_restarts")) and \
        math.isclose(ff["train_loss"], tf["train_loss"], rel_tol=1e-12)
    return {"rounds": rounds, "max_abs_diff": diff, "max_abs_weight": scale, "rel_diff": diff / scale,
            "float32_eps": float(np.finfo(np.float32).eps), "totals_equal": totals_equal}


def fresh_vs_reused(ray: Any, producers: list, server: Any, k: int, samples: int, repeats: int) -> dict[str, Any]:
    """Does cycling a small pool of result objects time like fresh objects every round? (default model)"""
    rounds = 20
    out = {}
    for label, distinct in (("fresh", rounds), ("pool_of_1", 1)):
        pool = make_pool(ray, producers, k, samples, distinct)
        fn = lambda r, pool=pool: server.apply.remote(*pool[r % len(pool)])  # noqa: E731
        ray.get(fn(0))
        runs = [pipelined(ray, fn, rounds)[0] for _ in range(max(3, repeats))]
        out[label] = {"ms_runs": runs, "ms_per_round": med(runs)}
        del pool, fn
    out["ratio_fresh_over_reused"] = out["fresh"]["ms_per_round"] / out["pool_of_1"]["ms_per_round"]
    log(f"  fresh objects vs reused pool at K={k}: {out['fresh']['ms_per_round']:.2f} vs "
        f"{out['pool_of_1']['ms_per_round']:.2f} ms/round")
    return out


def driver_submit(ray: Any, producers: list, server: Any, k: int, repeats: int) -> dict[str, Any]:
    """What the runner's loop costs the driver per worker call and round: K train_block-shaped calls."""
    start = server.start.remote()
    ray.get(start)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        refs = [producers[i % len(producers)].touch.remote(start, 0, 0, 1) for i in range(k * 5)]
        runs.append((time.perf_counter() - t0) / (k * 5) * 1e6)
        ray.get(refs)
    return {"us_per_call_runs": runs, "us_per_call": med(runs), "calls": k * 5}


# ------------------------------------------------------------------ analysis


def analyse(R: dict[str, Any], n_train: int) -> None:
    # 2. demand and saturation
    R["demand"], R["saturation"] = {}, {}
    for model in MODELS:
        sps = R["kernel"]["models"][model]["samples_per_s"]
        by_k = R["grid"][model]["by_k"]
        rows = {}
        for k in WORKERS:
            merge = by_k[k]["ms_per_round"]
            epochs = []
            for e in schedule(k, n_train):
                compute = e["block"] / sps * 1e3
                epochs.append({**e, "compute_ms": compute, "merge_ms": merge, "merge_share": merge / (merge + compute),
                               "saturated": merge > compute})
            rows[k] = epochs
        R["demand"][model] = rows
        n_epochs = max(len(v) for v in rows.values())
        sat = {}
        for e in range(n_epochs):
            # epoch e+1 for every K (a K whose schedule reached whole-shard rounds earlier keeps them)
            first = next((k for k in WORKERS if rows[k][min(e, len(rows[k]) - 1)]["saturated"]), None)
            sat[e + 1] = first
        R["saturation"][model] = {"first_saturated_k_by_epoch": sat,
                                  "whole_shard_first_saturated_k": next((k for k in WORKERS if rows[k][-1]["saturated"]), None)}

    # 5. cost model and projections
    flat_points = [(k, R["grid"][m]["mib"], R["grid"][m]["by_k"][k]["ms_per_round"]) for m in MODELS for k in WORKERS]
    partial_points = [(row["partials"], row["partial_mib"], row["server_ms"])
                      for m in MODELS for row in R["tree"][m]["by_group"].values()]
    reducer_points = [(row["group"], R["grid"][m]["mib"], min(row["reducer_ms"], row["reducer_actor_ms"]))
                      for m in MODELS for row in R["tree"][m]["by_group"].values()]
    # The per-input constant b is what fetching and deserialising one argument object costs,
    # measured directly in section 3 (the same for every model size: zero-copy); fitted freely
    # it is poorly determined next to the per-MiB term, so the projections take the measured one.
    per_ref = med([R["profile"][m]["parts_ms"]["fetch_deserialise_args"] / PROFILE_K for m in MODELS])
    fits = {"flat_server": fit_cost(flat_points, per_ref), "partial_server": fit_cost(partial_points, per_ref),
            "reducer": fit_cost(reducer_points, per_ref)}
    R["fit"] = fits
    R["fit_free"] = {"flat_server": fit_cost(flat_points), "partial_server": fit_cost(partial_points),
                     "reducer": fit_cost(reducer_points)}
    R["per_ref_ms"] = per_ref
    R["per_result_slope"] = {m: per_result_slope(list(WORKERS), [R["grid"][m]["by_k"][k]["ms_per_round"] for k in WORKERS])
                             for m in MODELS}
    proj: dict[str, Any] = {}
    submit_us = R["checks"]["driver_submit"]["us_per_call"]
    for model in MODELS:
        mib = R["grid"][model]["mib"]
        sps = R["kernel"]["models"][model]["samples_per_s"]
        designs = {
            "flat (one actor, today)": predict(fits["flat_server"], SCALE_K, mib),
            f"{SHARDS} shards of the flat buffer (per shard, in parallel)": predict(fits["flat_server"], SCALE_K, mib / SHARDS),
        }
        for g in (8, 32):
            designs[f"tree, {g} workers per reducer ({math.ceil(SCALE_K / g)} partials)"] = (
                predict(fits["reducer"], g, mib) + predict(fits["partial_server"], math.ceil(SCALE_K / g), 2 * mib))
        designs[f"tree, 32 per reducer, + {SHARDS} shards"] = (
            predict(fits["reducer"], 32, mib / SHARDS) + predict(fits["partial_server"], math.ceil(SCALE_K / 32), 2 * mib / SHARDS))
        proj[model] = {name: {"merge_ms": t, "syncs_per_s": SCALE_K / t * 1e3,
                              "min_block_samples": t / 1e3 * sps} for name, t in designs.items()}
        proj[model]["_default_schedule_at_1000"] = {
            "epoch1_block": max(1, 2000 // SCALE_K), "whole_shard_block": -(-n_train // SCALE_K),
            "epoch1_compute_ms": max(1, 2000 // SCALE_K) / sps * 1e3,
            "whole_shard_compute_ms": -(-n_train // SCALE_K) / sps * 1e3,
            "driver_submit_ms_per_round": SCALE_K * submit_us / 1e3}
    R["projection_1000"] = proj


# ------------------------------------------------------------------ output


def table(title: str, header: list[str], rows: list[list[Any]], notes: list[str] = ()) -> None:
    print(f"\n**{title}**\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join("—" if c is None else str(c) for c in row) + " |")
    for note in notes:
        print(f"\n{note}")


def report(R: dict[str, Any]) -> None:
    reps = R["config"]["repeats"]
    load = f"load average {R['machine']['loadavg_start']} at start, {R['machine'].get('loadavg_end')} at end"
    print(f"# Parameter-server ceiling ({R['machine']['cpus']} cores shared with other work; {load}; "
          f"total {R['total_s']:.0f} s; medians of {reps})")

    rows = []
    for model in MODELS:
        g = R["grid"][model]
        for k in WORKERS:
            r = g["by_k"][k]
            rows.append([model, g["params"], k, f"{r['ms_per_round']:.2f}", f"{r['rounds_per_s']:.0f}",
                         f"{r['syncs_per_s']:,.0f}", f"{r['ms_per_round'] / k:.3f}", f"{r['one_at_a_time_ms']:.2f}"])
    fr = R["checks"]["fresh_vs_reused"]
    table("1. Merge throughput of one ParameterServer actor (pipelined = server busy time per round)",
          ["model", "params", "K", "ms/round", "rounds/s", "syncs/s", "ms per result", "ms/round one at a time"], rows,
          [f"K results per round, each its own object made by {PRODUCERS} producer actors (num_returns), merged by the "
           "real apply_updates. Fresh objects every round vs a reused pool, 784-64-10, K=64: "
           f"{fr['fresh']['ms_per_round']:.2f} vs {fr['pool_of_1']['ms_per_round']:.2f} ms/round."])

    for model in MODELS:
        sps = R["kernel"]["models"][model]["samples_per_s"]
        dem = R["demand"][model]
        n_ep = max(len(v) for v in dem.values())
        header = ["K", "merge ms"] + [f"e{e + 1}: block, compute ms, merge share" for e in range(n_ep)]
        rows = []
        for k in WORKERS:
            cells = []
            for e in range(n_ep):
                d = dem[k][min(e, len(dem[k]) - 1)]
                mark = " **sat**" if d["saturated"] else ""
                cells.append(f"{d['block']}, {d['compute_ms']:.2f}, {d['merge_share'] * 100:.0f}%{mark}")
            rows.append([k, f"{dem[k][0]['merge_ms']:.2f}", *cells])
        sat = R["saturation"][model]["first_saturated_k_by_epoch"]
        table(f"2. Demand at default settings, {model}: kernel {sps / 1000:.1f}k samples/s on one core",
              header, rows,
              ["block = samples per worker per round (the default schedule: 2000/K in epoch 1, x2 per epoch, up to a "
               "whole shard; K=1 always trains its whole shard in one round); compute = block / kernel speed, as if each "
               "worker had its own core; merge share = merge / (merge + compute); sat = merge > compute. First saturated "
               "K by epoch: " + ", ".join(f"e{e}: {k if k else 'none <= 64'}" for e, k in sat.items()) + "."])

    rows = []
    for model in MODELS:
        p = R["profile"][model]
        parts = p["parts_ms"]
        rows.append([model, f"{p['total_ms']:.2f}", f"{parts['ray_call_floor']:.2f}", f"{parts['fetch_deserialise_args']:.2f}",
                     f"{parts['weighted_mean']:.2f}", f"{parts['rest_of_apply_updates']:.2f}",
                     f"{parts['return_start_weights']:.2f}", f"{parts['residual']:.2f}", f"{p['inside_ray_get_ms']:.2f}",
                     f"{p['weighted_mean_in_driver_ms']:.2f}"])
    table(f"3. Where a K={PROFILE_K} merge goes (ms per round, pipelined, medians)",
          ["model", "apply_updates", "Ray call floor", "fetch + deserialise 64 args", "weighted mean (combine.py)",
           "rest of apply_updates", "return start weights", "residual", "check: ray.get of 64 refs in the actor",
           "check: weighted mean in the driver"], rows,
          ["Call floor = a no-argument call; fetch = a no-op taking the 64 results minus the floor; return = the same no-op "
           "returning the start weights minus it; weighted mean and the rest = timers inside apply_updates; residual = "
           "apply_updates minus the parts."])

    rows = []
    for model in MODELS:
        flat = R["grid"][model]["by_k"][PROFILE_K]
        t = R["tree"][model]
        for g, row in t["by_group"].items():
            rows.append([model, g, row["partials"], f"{flat['ms_per_round']:.2f}", f"{row['server_ms']:.2f}",
                         f"{flat['ms_per_round'] / row['server_ms']:.1f}x", f"{row['reducer_ms']:.2f}",
                         f"{row['reducer_actor_ms']:.2f}",
                         f"{row['cluster_critical_path_ms']:.2f}",
                         f"{row['this_machine_round_ms']:.2f} (flat {flat['one_at_a_time_ms']:.2f})"
                         if "this_machine_round_ms" in row else None])
    eq = {m: R["tree"][m]["equal"] for m in MODELS}
    table(f"4. Tree reduction (cluster/reduce.py) at K={PROFILE_K} (groups of G workers -> one float64 partial each)",
          ["model", "G", "partials", "flat server ms", "tree server ms", "server speed-up", "one reducer ms (task)",
           "one reducer ms (actor)",
           "cluster round: faster reducer + server ms", "this machine, whole round one at a time ms"], rows,
          ["Same weights? " + "; ".join(f"{m}: max |diff| {e['max_abs_diff']:.2e} (relative {e['rel_diff']:.1e}, float32 eps "
                                         f"{e['float32_eps']:.1e}), totals equal {e['totals_equal']}" for m, e in eq.items()),
           "On a cluster the reducers run in parallel, one per node, so a round's critical path adds one reducer; on this "
           "machine all of them share 2 cores with the server, hence the last column."])

    fits = R["fit"]
    rows = [[name, f"{f['a_ms']:.3f}", f"{f['b_ms_per_input']:.4f}", f"{f['c_ms_per_input_mib']:.4f}",
             f"{f['median_rel_err'] * 100:.0f}%", f"{f['max_rel_err'] * 100:.0f}%", f["points"]] for name, f in fits.items()]
    slopes = R["per_result_slope"]
    table("5a. Fitted cost: t = a + n (b + c * MiB per input); n = results (flat), partials, or a reducer's group",
          ["fit", "a ms", "b ms/input", "c ms/input/MiB", "median rel err", "max rel err", "points"], rows,
          [f"b is measured, not fitted: section 3's fetch + deserialise of one argument object, {R['per_ref_ms']:.3f} ms "
           "(median over the models). Fitted freely instead: "
           + "; ".join(f"{k} a {v['a_ms']:.2f}, b {v['b_ms_per_input']:.4f}, c {v['c_ms_per_input_mib']:.4f}"
                       for k, v in R["fit_free"].items()) + ".",
           "Flat merge, ms per extra worker result (t = a + s K, per model): "
           + ", ".join(f"{m}: {v['ms_per_result']:.3f} (a {v['a_ms']:.2f})" for m, v in slopes.items())
           + ". Reducer fit: the faster of task and actor at each point."])
    rows = []
    for model in MODELS:
        for name, v in R["projection_1000"][model].items():
            if name.startswith("_"):
                continue
            rows.append([model, name, f"{v['merge_ms']:.1f}", f"{v['syncs_per_s']:,.0f}", f"{v['min_block_samples']:,.0f}"])
    d = R["projection_1000"][DEFAULT_MODEL]["_default_schedule_at_1000"]
    table(f"5b. Projected merge per round at {SCALE_K} workers (extrapolated from K <= 64)",
          ["model", "design", "server ms/round", "syncs/s", "block per worker for compute >= merge (samples)"], rows,
          [f"Default schedule on MNIST at {SCALE_K} workers: {d['epoch1_block']} samples per worker in epoch 1 "
           f"({d['epoch1_compute_ms']:.3f} ms), a whole shard is {d['whole_shard_block']} ({d['whole_shard_compute_ms']:.2f} ms); "
           f"the driver alone spends {d['driver_submit_ms_per_round']:.0f} ms per round submitting {SCALE_K} worker calls "
           f"({R['checks']['driver_submit']['us_per_call']:.0f} us each)."])

    rows = []
    for model in MODELS:
        k64 = R["grid"][model]["by_k"][PROFILE_K]
        sat = R["saturation"][model]
        t8 = R["tree"][model]["by_group"][TREE_DEFAULT_GROUP]
        parts = R["profile"][model]["parts_ms"]
        biggest = max(("fetch_deserialise_args", "weighted_mean", "return_start_weights"), key=lambda x: parts[x])
        rows.append([model, f"{k64['syncs_per_s']:,.0f} ({k64['ms_per_round']:.1f} ms/round)",
                     f"{R['per_result_slope'][model]['ms_per_result']:.3f}",
                     sat["first_saturated_k_by_epoch"][1] or "none <= 64", sat["whole_shard_first_saturated_k"] or "none <= 64",
                     f"{biggest} ({parts[biggest] / R['profile'][model]['total_ms'] * 100:.0f}%)",
                     f"{k64['ms_per_round'] / t8['server_ms']:.1f}x ({t8['server_ms']:.1f} ms)",
                     f"{R['tree'][model]['equal']['rel_diff']:.1e}"])
    table(f"Summary (medians of {reps}; 2-core shared machine)",
          ["model", f"syncs/s at K={PROFILE_K}", "ms per extra result", "first saturated K, epoch 1",
           "first saturated K, whole-shard rounds", f"largest part of a K={PROFILE_K} merge",
           f"tree server speed-up, G={TREE_DEFAULT_GROUP}", "tree vs flat weights, rel diff"], rows)


if __name__ == "__main__":
    sys.exit(main())
