"""The algorithm registry, the server rules by hand (without Ray), and report.json as a JobReport."""

from __future__ import annotations

import numpy as np
import pytest

from dtrain.cluster.algorithms import ALGORITHMS, algorithm_for
from dtrain.cluster.algorithms.asynchronous import StalenessScaled
from dtrain.cluster.algorithms.bmuf import BlockMomentumRule
from dtrain.reports.job_report import JobReport
from dtrain.cluster.outcome import ServerRestarted
from dtrain.cluster.parameter_server import ParameterServer
from dtrain.spec import Async, FedAvg, FedProx, JobSpec
from dtrain.worker.tasks import Block, Clients, Update

SIZES = (4, 3, 2)


@pytest.mark.parametrize(
    "options, name",
    [({}, "sync"), ({"combine": "average"}, "sync"), ({"mode": "async"}, "async"),
     ({"clients": 8, "rounds": 2}, "fedavg"), ({"clients": 8, "rounds": 2, "mu": 0.1}, "fedprox")],
)
def test_each_spec_is_trained_by_its_registered_algorithm(options, name):
    spec = JobSpec(**options)
    assert spec.algorithm.name == name and type(algorithm_for(spec)) is ALGORITHMS[name] and ALGORITHMS[name].name == name


def test_the_async_rule_scales_a_change_by_its_staleness_and_drops_one_too_stale():
    server = ParameterServer(SIZES, seed=0, rule=StalenessScaled(max_staleness=1))
    theta0 = server.start()[0].copy()  # in this process the rule's own array, updated in place
    change = np.ones_like(theta0)
    # a worker that started from version 0 while nothing else was applied: the whole change
    after = server.apply(Update(change, 10, 1.0, 5, 0, 0))[0].copy()
    np.testing.assert_array_equal(after, theta0 + change)
    # another that also started from version 0: one update stale, so half its change
    after = server.apply(Update(change, 10, 1.0, 5, 0, 0))[0].copy()
    np.testing.assert_array_equal(after, theta0 + change + np.float32(0.5) * change)
    # two updates stale, over the bound of 1: dropped, but its samples are counted
    dropped, version = server.apply(Update(change, 10, 1.0, 5, 1, 0))
    np.testing.assert_array_equal(dropped, after)
    assert version == 2
    figures = server.end_epoch()
    assert figures["samples"] == 30 and figures["worker_restarts"] == 1
    assert figures["dropped_updates"] == 1 and figures["mean_staleness"] == 0.5


def test_the_bmuf_rule_takes_each_epochs_momentum_from_the_schedule():
    server = ParameterServer(SIZES, seed=0, rule=BlockMomentumRule([0.0, 0.5]))
    start = server.start()[0].copy()
    server.apply(Update(start + 1, 10, 1.0, 5, 0, 0))  # epoch 1, no momentum: plain average
    np.testing.assert_allclose(server.model(), start + 1)
    server.end_epoch()
    start2 = server.start()[0].copy()
    server.apply(Update(start2 + 1, 10, 1.0, 5, 0, 1))  # epoch 2: Delta = 0.5 * 1 + 1
    np.testing.assert_allclose(server.model(), start + 2.5, rtol=1e-6)


def test_a_server_that_no_job_has_configured_refuses_every_round_as_restarted():
    """What a server Ray restarted (empty) answers to the calls already on their way to it: the
    error training.py recovers from, and nothing applied; configured, it works from version 0."""
    server = ParameterServer()
    update = Update(np.ones(5, np.float32), 10, 1.0, 5, 0, 0)
    for call in (server.start, server.model, lambda: server.apply(update), server.end_epoch, lambda: server.rewind(1)):
        with pytest.raises(ServerRestarted, match="restarted"):
            call()
    assert server.version == 0 and server.epochs_done == 0 and server.samples == 0
    server.configure(SIZES, seed=0, rule=BlockMomentumRule([0.0]))
    assert server.start()[1] == 0 and server.rewind(0) == 0


def test_a_workers_tasks_say_what_period_their_figures_count_in():
    assert Block(epoch=2, round=0, rounds=4).period == 3
    assert Clients(round_index=7, clients=(1, 3), period=4).period == 4


#: spec.json as dtrain wrote it before the algorithm union: every setting flat, used or not.
FLAT_SPEC_V1 = {
    "workers": 8, "epochs": 32, "lr": 0.01, "hidden": [64], "activation": "relu", "sync_every": None,
    "sync_growth": 2.0, "combine": "bmuf", "block_momentum": None, "cpus_per_worker": None, "kernel": "auto",
    "seed": 0, "until_accuracy": None, "data_dir": None, "batch_size": 1, "shard": "iid", "mode": "sync",
    "max_staleness": None, "reduce": "auto", "straggler_delay": 0.0, "clients": None, "clients_per_round": None,
    "local_epochs": 1, "rounds": None, "eval_every": 1, "mu": None,
}


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, JobSpec()),
        ({"mode": "async", "max_staleness": 3, "epochs": 4}, JobSpec(algorithm=Async(epochs=4, max_staleness=3))),
        ({"clients": 100, "rounds": 5, "clients_per_round": 10, "combine": "average", "shard": "label-skew"},
         JobSpec(split="label-skew", algorithm=FedAvg(clients=100, rounds=5, clients_per_round=10))),
        ({"clients": 100, "rounds": 5, "mu": 0.01}, JobSpec(algorithm=FedProx(clients=100, rounds=5, mu=0.01))),
    ],
)
def test_a_flat_spec_json_of_an_older_dtrain_loads_as_the_same_job(changes, expected):
    old = FLAT_SPEC_V1 | changes
    assert JobSpec.model_validate(old) == expected
    assert JobSpec.model_validate(expected.model_dump(mode="json")) == expected  # the new form round-trips


def test_an_older_report_json_loads():
    old = {  # as report.json files were written before the algorithm union, minimal
        "job_id": "0e6f1167", "state": "SUCCEEDED", "dtrain_version": "0.1.0", "spec": FLAT_SPEC_V1,
        "test": {"accuracy": 0.9781, "loss": 0.0927}, "epochs_run": 32, "timing": {"total_s": 1.0, "train_s": 0.5},
        "examples": [{"index": 0, "label": 7, "predicted": 7, "confidence": 1.0, "probabilities": [0.1] * 10,
                      "pixels": [0] * 784}],
        "something_newer": {"kept": True},
    }
    report = JobReport.of(old)
    assert report.algorithm == "sync" and report.spec == JobSpec()
    assert report.examples[0].label == 7 and report.misclassified == []
    dumped = report.to_json()
    assert {k: dumped[k] for k in old if k != "spec"} == {k: v for k, v in old.items() if k != "spec"}


def test_list_names_each_jobs_algorithm():
    from dtrain.reports.words import job_kind
    from dtrain.spec import JobSpec

    kinds = [job_kind(JobSpec(**k), short=True) for k in [{}, {"mode": "async"}, {"clients": 8, "rounds": 2},
                                             {"clients": 8, "rounds": 2, "mu": 0.1}, {"clients": 8, "rounds": 2, "batch_size": 0},
                                             {"shard": "label-skew"}]]
    assert kinds == ["sync", "async", "fedavg", "fedprox", "fedsgd", "sync+skew"]
