"""The parameter server's combine rule, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dtrain.cluster.combine import BlockMomentum, default_block_momentum, weighted_mean


def test_weighted_mean_weights_by_samples_seen():
    a, b = np.array([0.0, 4.0], np.float32), np.array([3.0, 0.0], np.float32)
    assert np.allclose(weighted_mean([a, b], [1, 2]), [2.0, 4.0 / 3.0])
    with pytest.raises(ValueError):
        weighted_mean([a, b], [0, 0])


def test_without_momentum_bmuf_is_plain_weighted_averaging():
    rule = BlockMomentum(np.zeros(2, np.float32), momentum=0.0)
    rule.combine([np.array([1.0, 1.0], np.float32), np.array([3.0, -1.0], np.float32)], [1, 1])
    assert np.allclose(rule.global_theta, [2.0, 0.0])
    assert np.allclose(rule.start, rule.global_theta)


def test_block_momentum_and_nesterov_start_point_by_hand():
    eta = 0.5
    rule = BlockMomentum(np.array([0.0], np.float32), momentum=eta)
    # round 1: workers started from 0 and ended (on average) at 1: G = 1
    rule.combine([np.array([1.0], np.float32)], [10])
    # Delta = 0.5 * 0 + 1 = 1; global = 0 + 1 = 1; start = 1 + 0.5 * 1 = 1.5
    assert rule.delta[0] == pytest.approx(1.0)
    assert rule.global_theta[0] == pytest.approx(1.0)
    assert rule.start[0] == pytest.approx(1.5)
    # round 2: workers started from 1.5 and ended at 2: G = 0.5
    rule.combine([np.array([2.0], np.float32)], [10])
    # Delta = 0.5 * 1 + 0.5 = 1; global = 1 + 1 = 2; start = 2 + 0.5 = 2.5
    assert rule.delta[0] == pytest.approx(1.0)
    assert rule.global_theta[0] == pytest.approx(2.0)
    assert rule.start[0] == pytest.approx(2.5)


def test_default_momentum_is_one_minus_one_over_k_capped_on_whole_shard_rounds():
    assert default_block_momentum(1, late=False) == 0.0
    assert default_block_momentum(8, late=False) == pytest.approx(0.875)
    assert default_block_momentum(8, late=True) == pytest.approx(0.5)
    assert default_block_momentum(2, late=True) == pytest.approx(0.5)
    # Beyond 8 workers late momentum keeps the model moving as far per epoch as at 8: 1 - 4/K.
    assert default_block_momentum(16, late=True) == pytest.approx(0.75)
    assert default_block_momentum(64, late=True) == pytest.approx(0.9375)


@pytest.mark.parametrize(
    "options, first_epochs, late",
    [
        (dict(workers=2), [8, 4, 2, 1], 1),  # block momentum builds up over ~K rounds: 4K rounds
        (dict(workers=4), [16, 8, 4, 2, 1], 1),
        (dict(workers=8), [30, 15, 8, 4, 2, 1], 1),  # at least 2000 samples a round up to K = 8
        (dict(workers=16), [64, 32, 16, 8, 4, 2], 2),  # 4K rounds; then K / 8 rounds an epoch
        (dict(workers=64), [235, 118, 59, 30, 15, 8], 8),  # shards of 937: 4K rounds of 4 samples
        (dict(workers=16, late_rounds=1), [64, 32, 16, 8, 4, 2, 1], 1),
        (dict(workers=2, mode="async"), [30, 15, 8, 4, 2, 1], 1),  # no momentum: short blocks at any K
        (dict(workers=4, combine="average"), [30, 15, 8, 4, 2, 1], 1),
        (dict(workers=16, combine="average"), [30, 15, 8, 4, 2, 1], 1),
        (dict(workers=2, sync_every=500), [60, 30, 15, 8, 4, 2, 1], 1),
        (dict(workers=1), [1, 1], 1),  # nothing to merge with
    ],
)
def test_sync_schedule_for_mnist_sized_shards(options, first_epochs, late):
    from dtrain.cluster.algorithms import algorithm_for
    from dtrain.spec import JobSpec

    spec = JobSpec(**options)
    rounds = algorithm_for(spec).schedule(60_000 // spec.workers).rounds
    assert len(rounds) == spec.algorithm.epochs
    assert rounds[: len(first_epochs)] == first_epochs
    assert set(rounds[len(first_epochs) :]) == {late}  # the blocks have stopped growing


@pytest.mark.parametrize(
    "options, momenta",
    [
        (dict(workers=8), {0.875: 5, 0.5: 27}),  # 1 - 1/K while blocks grow, then capped at 0.5
        (dict(workers=16), {0.9375: 5, 0.75: 27}),  # then 1 - 4/K: lr / 4 per epoch, as at 8
        (dict(workers=64), {1 - 1 / 64: 5, 0.9375: 27}),
        (dict(workers=16, late_momentum=0.5), {0.9375: 5, 0.5: 27}),
        (dict(workers=16, block_momentum=0.3), {0.3: 32}),  # one momentum for every round
        (dict(workers=16, combine="average"), {0.0: 32}),
    ],
)
def test_block_momentum_by_epoch(options, momenta):
    from collections import Counter

    from dtrain.cluster.algorithms import algorithm_for
    from dtrain.spec import JobSpec

    spec = JobSpec(**options)
    plan = algorithm_for(spec).schedule(60_000 // spec.workers)
    assert dict(Counter(plan.momenta)) == momenta  # all exact in binary: 1 - 1/16, 1 - 4/64, ...


def test_late_settings_need_block_momentum():
    from pydantic import ValidationError

    from dtrain.spec import JobSpec

    for key, value in (("late_rounds", 2), ("late_momentum", 0.5)):
        with pytest.raises(ValidationError, match=key):
            JobSpec(workers=16, combine="average", **{key: value})
