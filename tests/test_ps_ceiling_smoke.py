"""The tree-reduce prototype in benchmarks/ps_ceiling.py merges like the parameter server (no Ray)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from dtrain.cluster.algorithms.bmuf import BlockMomentumRule
from dtrain.cluster.parameter_server import ParameterServer

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "ps_ceiling.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("ps_ceiling", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_partials_give_the_flat_merge_up_to_summation_order():
    bench = load_bench()
    sizes = (784, 16, 10)
    rng = np.random.default_rng(3)
    flat = ParameterServer(sizes, seed=0, rule=BlockMomentumRule([0.9]))
    tree = bench.ProfiledServer(sizes, seed=0, rule=BlockMomentumRule([0.9]))
    p = flat.rule.start().size
    for _ in range(3):
        # uneven blocks, so the weights n_k / total are not powers of two
        results = [((flat.rule.start() + rng.normal(0, 0.01, p)).astype(np.float32), int(n), 0.3 * n, int(n) // 2, int(k == 5))
                   for k, n in enumerate(rng.integers(30, 40, 12))]
        a, _ = flat.apply(*results)
        b, _ = tree.apply(*[bench.partial_sum(*results[i:i + 4]) for i in range(0, 12, 4)])
        np.testing.assert_allclose(b, a, rtol=0, atol=4 * np.finfo(np.float32).eps * np.abs(a).max())
    a_totals, b_totals = flat.end_epoch(), tree.end_epoch()
    assert abs(a_totals.pop("train_loss") - b_totals.pop("train_loss")) < 1e-12  # loss sums in another order
    assert a_totals == b_totals and a_totals["worker_restarts"] == 3


def test_cost_fit_recovers_a_linear_cost():
    bench = load_bench()
    points = [(n, mb, 2.0 + n * (0.05 + 0.3 * mb)) for n in (1, 4, 16, 64) for mb in (0.2, 0.8, 3.1)]
    fit = bench.fit_cost(points)
    assert abs(fit["a_ms"] - 2.0) < 1e-6 and abs(fit["b_ms_per_input"] - 0.05) < 1e-6
    assert abs(bench.predict(fit, 1000, 0.2) - (2.0 + 1000 * (0.05 + 0.3 * 0.2))) < 1e-3
