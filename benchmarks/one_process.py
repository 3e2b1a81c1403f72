"""One plain process: dtrain's maths, no Ray, one core. The baseline of benchmarks/speed.py.

    python benchmarks/one_process.py [--epochs 32] [--seed 0]

Trains what `dtrain submit --workers 1` trains, the way one would write it without
a cluster: MNIST's training set as sparse rows in its own order (the iid layout
keeps it), He-initialised 784-64-10 ReLU weights from the seed, per-sample SGD at
lr 0.01 with dtrain's numba kernel, each epoch visiting the samples in the order a
1-worker job's worker draws, rng((seed, 0, epoch)); after each epoch the test set is
scored with dtrain's `evaluate` on one thread. Prints one JSON line at the end.

The maths is the 1-worker job's, up to one float32 rounding per weight an epoch:
the job's parameter server keeps global + (trained - global) where this keeps the
trained weights (with that step added, the two agree bit for bit). Checked against
`dtrain submit --local --workers 1 --epochs 32`: the same test accuracy for epochs
1-7 (losses within 1e-7); constant-lr per-sample SGD then amplifies the rounding,
and later epochs differ by up to a few tenths of a point (final 98.15% here, 98.12%
for the job).

Times are from the first statement of this file (`T0`); `started_at` is the
wall-clock time there, so whoever launched the process can add the interpreter's
own start-up (speed.py times the process from launch to exit).
"""

import time

T0 = time.perf_counter()  # the very first statement: what follows is all counted
STARTED_AT = time.time()

import os  # noqa: E402

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads OpenBLAS: one core

import argparse  # noqa: E402
import json  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from dtrain.data.mnist import N_CLASSES, load_dataset  # noqa: E402
from dtrain.model.evaluate import evaluate, scale_pixels  # noqa: E402
from dtrain.model.kernels import sgd  # noqa: E402
from dtrain.model.mlp import he_init, layer_sizes  # noqa: E402
from dtrain.model.sgd_setup import SGDSetup  # noqa: E402
from dtrain.model.sparse import SparseRows  # noqa: E402

LR = 0.01
HIDDEN = (64,)
TARGET = 0.97


def train(images: SparseRows, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, epochs: int, seed: int = 0,
          on_epoch: Callable[[dict], None] = lambda record: None) -> np.ndarray:
    """Per-sample SGD over all of (images, y) for `epochs` epochs, scoring (x_test, y_test)
    (scaled floats) after each; `on_epoch` gets each epoch's figures (`score_s`: the scoring's
    seconds; the first epoch's `kernel_load_s`: the kernel's load, by a 1-sample call on a copy of
    the weights before it). Returns the weights."""
    sizes = layer_sizes(images.n_cols, HIDDEN, N_CLASSES)
    theta = he_init(sizes, np.random.default_rng(seed))
    setup = SGDSetup(sizes, "relu", images, y, LR)
    t_load = time.perf_counter()
    sgd("numba", theta.copy(), setup, np.zeros(1, np.int64))  # loads (or compiles) the kernel: its cost apart
    load_s = time.perf_counter() - t_load
    for epoch in range(epochs):
        order = np.random.default_rng((seed, 0, epoch)).permutation(len(y))  # worker rank 0's order
        loss, correct = sgd("numba", theta, setup, order)
        t_score = time.perf_counter()
        scored = evaluate(theta, sizes, "relu", x_test, y_test)
        now = time.perf_counter()
        on_epoch({"epoch": epoch + 1, "train_loss": loss / len(y), "train_accuracy": correct / len(y),
                  "test_loss": scored.loss, "test_accuracy": scored.accuracy, "t_s": now - T0, "score_s": now - t_score,
                  **({"kernel_load_s": load_s} if epoch == 0 else {})})
    return theta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = load_dataset()
    images = SparseRows.from_dense(data.x_train)
    x_test = scale_pixels(data.x_test)
    ready_s = time.perf_counter() - T0
    history: list[dict] = []
    train(images, data.y_train, x_test, data.y_test, args.epochs, args.seed, history.append)
    first = next((h for h in history if h["test_accuracy"] >= TARGET), None)
    print(json.dumps({
        "started_at": STARTED_AT,
        "ready_s": ready_s,  # data loaded and converted, before the kernel's first call
        "epochs": args.epochs,
        "history": history,
        "target": TARGET,
        "epoch_to_target": first and first["epoch"],
        "time_to_target_s": first and first["t_s"],
        "final_accuracy": history[-1]["test_accuracy"],
        "total_s": time.perf_counter() - T0,
    }), flush=True)


if __name__ == "__main__":
    main()
