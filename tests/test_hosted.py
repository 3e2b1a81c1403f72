"""A period run by the one process that hosts every worker (cluster/hosted.py) against the
parameter server's own rounds: a real Worker actor, real MNIST rows, each algorithm's real
rule. Both ways must end with the same rule state to the last bit, the same versions,
totals and divergence."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from dtrain.cluster.algorithms import algorithm_for
from dtrain.cluster.datacache import training_rows
from dtrain.cluster.algorithms.bmuf import BlockMomentumRule
from dtrain.cluster.hosted import MAX_RULE_BYTES, HostedPeriod, travels
from dtrain.cluster.layout import Layout
from dtrain.cluster.parameter_server import ParameterServer
from dtrain.cluster.workers import assignments
from dtrain.model.mlp import layer_sizes
from dtrain.spec import JobSpec
from dtrain.worker.actor import Worker

WORKERS = 4


def periods_both_ways(ray, dataset, spec: JobSpec) -> list[tuple[ParameterServer, list[dict]]]:
    """Train `spec`'s periods with two servers in this process, sharing one Worker actor that
    hosts every rank: one server hands it each period whole (one host), each with the next,
    the other sends the rounds out one by one (the same process seen as two hosts). Each
    server with its periods' figures."""
    algorithm = algorithm_for(spec)
    layout = Layout.for_job(spec, dataset.y_train)
    plan = algorithm.schedule(layout.largest_shard())
    sizes = layer_sizes(dataset.n_features, spec.hidden, 10)
    data = tuple(ray.put(a) for a in training_rows(dataset, layout))
    job = SimpleNamespace(spec=spec, layout=layout, job_id="hosted", sizes=sizes)
    assigned = assignments(job, data, "numba", placing=0)
    run = SimpleNamespace(plan=plan, workers=[None] * WORKERS, layout=layout)
    worker = ray.remote(Worker).remote()
    ranks = tuple(range(WORKERS))
    ways = {"hosted": [(worker, ranks, 2)], "by round": [(worker, ranks[:2], 1), (worker, ranks[2:], 1)]}
    rounds = [[algorithm.tasks(run, period, r) for r in range(plan.rounds[period])] for period in range(spec.periods)] + [[]]
    trained = []
    for hosts in ways.values():
        server = ParameterServer(sizes, seed=spec.seed, rule=algorithm.rule(plan))
        figures = []
        for p in range(spec.periods):
            # each period handed over with the next, which starts from its answer (ParameterServer._hand_over)
            figures.append(server.train_period(hosts, assigned, rounds[p], rounds[p + 1]))
            if len(hosts) == 1:
                assert (server._ahead or [None])[0] == ((p + 1, rounds[p + 1]) if rounds[p + 1] else None)
        trained.append((server, figures))
    ray.kill(worker)
    return trained


@pytest.mark.parametrize(
    "settings",
    [
        dict(epochs=2),
        dict(algorithm="fedadam", clients=8, clients_per_round=4, rounds=4, eval_every=2),
        dict(algorithm="scaffold", clients=4, rounds=4, eval_every=2, local_steps=50, batch_size=1),
    ],
    ids=["sync", "fedadam", "scaffold"],
)
def test_a_period_hosted_by_the_workers_process_trains_the_bits_of_the_servers_rounds(ray_cluster, small_mnist, settings):
    spec = JobSpec(workers=WORKERS, seed=4, **settings)
    (hosted, hosted_figures), (by_round, by_round_figures) = periods_both_ways(ray_cluster, small_mnist, spec)

    assert travels(hosted.rule)
    assert hosted.version == by_round.version > spec.periods  # periods of several rounds
    for a, b in zip(hosted_figures, by_round_figures):
        a.pop("worker_samples_per_s"), b.pop("worker_samples_per_s")  # timings
        assert a == b
    mine, theirs = hosted.rule.arrays(), by_round.rule.arrays()
    assert mine.keys() == theirs.keys()
    for name in mine:
        np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)
    # the server's copy of the rule's state is its own again: the next period updates it in place
    assert all(a.flags.writeable for a in mine.values())


def test_what_a_hosted_period_reports_reaches_the_server_as_if_its_rule_had_run_there():
    """Versions, the first round whose loss or weights were not finite, and the totals."""
    reports = [(1.0, np.ones(3)), (float("nan"), np.ones(3)), (2.0, np.array([1.0, np.inf, 0.0])), (1.0, np.ones(3))]
    direct = ParameterServer((4, 3, 2), seed=0, rule=BlockMomentumRule([0.0]))
    hosted = ParameterServer((4, 3, 2), seed=0, rule=BlockMomentumRule([0.0]))
    period = HostedPeriod(hosted.rule, hosted.version, hosted.epochs_done, [])
    for server in (direct, period):
        for loss, weights in reports:
            server.advance(loss, weights)
            server.count(10, loss, 3, 0, ((0, 5, 0.1), (1, 5, 0.2)))
    hosted.take_back(period)
    assert (hosted.version, hosted.diverged_at) == (direct.version, direct.diverged_at) == (4, 2)
    assert hosted.end_epoch() == direct.end_epoch()


def test_a_rule_with_a_big_state_stays_in_the_server():
    small = algorithm_for(JobSpec(workers=2, algorithm="scaffold", clients=4, rounds=1, local_steps=1, batch_size=1))
    big = algorithm_for(JobSpec(workers=2, algorithm="scaffold", clients=100, rounds=1, local_steps=1, batch_size=1))
    rules = []
    for algorithm in (small, big):
        rule = algorithm.rule(algorithm.schedule(1000))
        rule.reset(np.zeros(50890, np.float32))
        rules.append(rule)
    assert sum(a.nbytes for a in rules[1].arrays().values()) > MAX_RULE_BYTES
    assert travels(rules[0]) and not travels(rules[1])
