"""dtrain's per-sample SGD kernel against a plain numba kernel of the same maths, one core.

    python benchmarks/kernel.py [--repeats 7] [--samples 60000] [--out benchmarks/results/kernel.json]

The baseline, ``plain_sgd`` below, is the straightforward per-sample loop over
CSR rows as one would first write it in numba: 784-64-10, ReLU hidden layer,
softmax and cross-entropy, input scaled by 1/255, every sample updating W1's
rows for its non-zero pixels, W1 b1 W2 b2 in place. Default numba options
(no fastmath), work buffers allocated once, no tricks.

dtrain's kernel is called as the workers call it: ``dtrain.model.kernels.sgd("numba", ...)``.

Both train the same He-initialised weights on MNIST's training set in the same
shuffled order. Both are compiled first; then runs of --samples samples alternate
(ABBA: each round swaps which goes first), each on a fresh copy of the initial
weights, and the figure is the median samples/s per kernel; the headline is the
ratio of the medians (dtrain / plain). Wall time is the headline; the thread's CPU
time is recorded too, because on a shared machine wall time includes time spent
waiting for the core.

Before timing, the script checks that both kernels compute the same thing: on
2,000 samples each must match dtrain's NumPy reference kernel (sgd_numpy) to
float32 rounding, else it stops.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads OpenBLAS: one core

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from dtrain.data.mnist import load_dataset  # noqa: E402
from dtrain.model.kernels import sgd  # noqa: E402
from dtrain.model.mlp import he_init, layer_sizes, unflatten  # noqa: E402
from dtrain.model.sgd_setup import SGDSetup  # noqa: E402
from dtrain.model.sparse import SparseRows  # noqa: E402

LR = 0.01
SCALE = 1 / 255
SIZES = (784, 64, 10)
HERE = Path(__file__).resolve().parent


@njit
def plain_sgd(W1, b1, W2, b2, indptr, indices, values, y, order, lr, scale):  # pragma: no cover - compiled
    """Per-sample SGD, plainly: forward, softmax, backward, update, one sample at a time."""
    n_in, n_hidden = W1.shape
    n_out = W2.shape[1]
    x = np.empty(n_in, np.float32)  # the sample's non-zero pixel values, scaled
    z1 = np.empty(n_hidden, np.float32)
    a1 = np.empty(n_hidden, np.float32)
    p = np.empty(n_out, np.float32)
    d2 = np.empty(n_out, np.float32)
    d1 = np.empty(n_hidden, np.float32)
    loss = 0.0
    correct = 0
    for s in order:
        lo, hi = indptr[s], indptr[s + 1]
        for k in range(lo, hi):
            x[k - lo] = np.float32(values[k]) * scale
        # z1 = x W1 + b1 over the non-zero pixels only; a1 = relu(z1)
        for j in range(n_hidden):
            z1[j] = b1[j]
        for k in range(lo, hi):
            i = indices[k]
            for j in range(n_hidden):
                z1[j] += x[k - lo] * W1[i, j]
        for j in range(n_hidden):
            a1[j] = max(z1[j], np.float32(0.0))
        # p = softmax(a1 W2 + b2)
        for j in range(n_out):
            p[j] = b2[j]
        for i in range(n_hidden):
            for j in range(n_out):
                p[j] += a1[i] * W2[i, j]
        zmax = p.max()
        total = np.float32(0.0)
        for j in range(n_out):
            p[j] = np.exp(p[j] - zmax)
            total += p[j]
        for j in range(n_out):
            p[j] /= total
        label = y[s]
        loss -= math.log(max(p[label], np.float32(1.1754944e-38)))
        if p.argmax() == label:
            correct += 1
        # backward: d2 = p - onehot(label); d1 = (W2 d2) * relu'(z1), with W2 before its update
        for j in range(n_out):
            d2[j] = p[j]
        d2[label] -= np.float32(1.0)
        for i in range(n_hidden):
            acc = np.float32(0.0)
            for j in range(n_out):
                acc += W2[i, j] * d2[j]
            d1[i] = acc if a1[i] > 0 else np.float32(0.0)
        # update
        for i in range(n_hidden):
            for j in range(n_out):
                W2[i, j] -= lr * a1[i] * d2[j]
        for j in range(n_out):
            b2[j] -= lr * d2[j]
        for k in range(lo, hi):
            i = indices[k]
            g = lr * x[k - lo]
            for j in range(n_hidden):
                W1[i, j] -= g * d1[j]
        for j in range(n_hidden):
            b1[j] -= lr * d1[j]
    return loss, correct


def run_plain(theta, images, y, order):
    (W1, b1), (W2, b2) = unflatten(theta, SIZES)
    return plain_sgd(
        W1, b1, W2, b2, images.indptr, images.indices, images.values, y, order, np.float32(LR), np.float32(SCALE)
    )


def run_dtrain(theta, images, y, order):
    return sgd("numba", theta, SGDSetup(SIZES, "relu", images, y, LR, SCALE), order)


KERNELS = {"plain numba": run_plain, "dtrain numba": run_dtrain}


def check_same_maths(theta0, images, y) -> dict:
    """Each kernel against sgd_numpy on 2,000 shuffled samples: weights within float32 rounding."""
    order = np.random.default_rng(5).permutation(len(y))[:2000]
    reference = theta0.copy()
    sgd("numpy", reference, SGDSetup(SIZES, "relu", images, y, LR, SCALE), order)
    out = {}
    for name, run in KERNELS.items():
        theta = theta0.copy()
        run(theta, images, y, order)
        diff = float(np.abs(theta - reference).max())
        out[name] = diff
        if not diff <= 1e-5:
            sys.exit(f"{name} does not compute sgd_numpy's result: max |difference| {diff:.3g}")
    return out


def loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(HERE), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "llvm_cpu": numba.config.CPU_NAME or __import__("llvmlite.binding").binding.get_host_cpu_name(),
        "git_commit": commit,
        "git_dirty": dirty,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per kernel (default 7, at least 3)")
    parser.add_argument("--samples", type=int, default=60000, help="samples per run (default 60000: one epoch)")
    parser.add_argument("--out", default=str(HERE / "results" / "kernel.json"), help="JSON to write ('' for none)")
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")
    threadpool_limits(1)
    load_start = loadavg()
    started = time.time()

    data = load_dataset()
    images, y = SparseRows.from_dense(data.x_train), data.y_train
    theta0 = he_init(layer_sizes(SIZES[0], SIZES[1:-1], SIZES[-1]), np.random.default_rng(0))
    # a shuffled order over the whole set, as the workers visit their shards
    order = np.random.default_rng(0).permutation(len(y))
    order = np.resize(order, args.samples)

    t = time.perf_counter()
    for run in KERNELS.values():  # compile (or load from numba's cache)
        run(theta0.copy(), images, y, order[:10])
    compile_s = time.perf_counter() - t
    max_diff = check_same_maths(theta0, images, y)

    runs: dict[str, list[dict]] = {name: [] for name in KERNELS}
    finals = {}
    names = list(KERNELS)
    for r in range(args.repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            theta = theta0.copy()
            c0, w0 = time.thread_time(), time.perf_counter()
            loss, correct = KERNELS[name](theta, images, y, order)
            wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
            runs[name].append(
                {
                    "round": r,
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "samples_per_s": args.samples / wall,
                    "samples_per_cpu_s": args.samples / cpu,
                    "loss_sum": loss,
                    "correct": correct,
                    "loadavg": loadavg()[:1],
                }
            )
            finals[name] = theta
    plain, ours = names
    med = {name: statistics.median(r["samples_per_s"] for r in runs[name]) for name in names}
    med_cpu = {name: statistics.median(r["samples_per_cpu_s"] for r in runs[name]) for name in names}
    round_ratios = [
        runs[ours][r]["samples_per_s"] / runs[plain][r]["samples_per_s"] for r in range(args.repeats)
    ]
    ratio, ratio_cpu = med[ours] / med[plain], med_cpu[ours] / med_cpu[plain]
    epoch_diff = float(np.abs(finals[ours] - finals[plain]).max())

    print(f"{'kernel':<14} {'median samples/s':>17} {'per CPU-s':>10}   runs (samples/s)")
    for name in names:
        figures = " ".join(f"{r['samples_per_s'] / 1e3:.0f}k" for r in runs[name])
        print(f"{name:<14} {med[name]:>17,.0f} {med_cpu[name]:>10,.0f}   {figures}")
    print(
        f"ratio dtrain / plain: {ratio:.2f} (wall, medians of {args.repeats}), {ratio_cpu:.2f} (CPU time); "
        f"per round: median {statistics.median(round_ratios):.2f}, range {min(round_ratios):.2f}-{max(round_ratios):.2f}"
    )
    print(
        f"same maths: max |theta - sgd_numpy| on 2000 samples: "
        + ", ".join(f"{k} {v:.1e}" for k, v in max_diff.items())
        + f"; after {args.samples} samples, max |dtrain - plain| {epoch_diff:.1e}"
    )
    load_end = loadavg()
    print(f"load average {load_start} -> {load_end} on {os.cpu_count()} CPUs")

    if args.out:
        result = {
            "what": "per-sample SGD, 784-64-10 ReLU, lr 0.01, MNIST training set in a shuffled order, one core",
            "command": " ".join(["python", "benchmarks/kernel.py"] + sys.argv[1:]),
            "samples_per_run": args.samples,
            "repeats": args.repeats,
            "ratio_wall": ratio,
            "ratio_cpu": ratio_cpu,
            "round_ratios_wall": round_ratios,
            "median_samples_per_s": med,
            "median_samples_per_cpu_s": med_cpu,
            "runs": runs,
            "max_abs_diff_vs_sgd_numpy_2000_samples": max_diff,
            "max_abs_diff_dtrain_vs_plain_after_run": epoch_diff,
            "compile_or_load_s": compile_s,
            "loadavg_start": load_start,
            "loadavg_end": load_end,
            "elapsed_s": time.time() - started,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "machine": machine(),
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
