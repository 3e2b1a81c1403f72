"""The warm pool's leases, idle release and memory budget, on real Ray actors (cluster/pool.py).

A job adopting warm workers end to end (the same bits as its first run, a warm
worker killed mid-job) is in test_reliability.py, on the two-node cluster.
"""

from __future__ import annotations

import secrets

import pytest

from dtrain.cluster.pool import PREFIX, PoolSettings, WarmPool
from clusters import wait_until


@pytest.fixture
def namespace(ray_cluster) -> str:
    """A namespace of the test's own, and every warm worker left in it killed at the end."""
    name = f"test-pool-{secrets.token_hex(4)}"
    yield name
    for actor in ray_cluster.util.list_named_actors(all_namespaces=True):
        if actor["namespace"] == name:
            ray_cluster.kill(ray_cluster.get_actor(actor["name"], namespace=name))


def warm_names(ray, namespace: str) -> set[str]:
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == namespace and a["name"].startswith(PREFIX)}


def is_dead(ray, handle) -> bool:
    try:
        ray.get(handle.state.remote(), timeout=10)
    except ray.exceptions.RayActorError:
        return True
    return False


def gone(ray, namespace: str, pool: WarmPool | None = None) -> bool:
    """True once no warm worker is left in `namespace` (ray.kill takes a moment to free a name);
    with `pool`, it sweeps first."""
    if pool is not None:
        pool.reap()
    return not warm_names(ray, namespace)


def test_leases_reuse_idle_workers_and_never_give_one_worker_to_two_jobs(ray_cluster, namespace):
    ray = ray_cluster
    node = ray.get_runtime_context().get_node_id()
    pool = WarmPool(PoolSettings(), namespace)
    first = pool.lease("job-a", [node, node])
    states_a = ray.get([w.state.remote() for w in first])
    assert [s["job"] for s in states_a] == ["job-a", "job-a"]  # each knows its lease
    pool.lease("job-b", [node])  # a's are leased: b gets a new one
    assert len(warm_names(ray, namespace)) == 3

    pool.release("job-a")
    summary = pool.summary()
    assert sorted(w["job"] or "" for w in summary) == ["", "", "job-b"]
    assert all(w["rss_mib"] > 50 for w in summary if not w["job"])  # a real process, numpy loaded

    again = pool.lease("job-c", [node, node])
    assert {ray.get(w.state.remote())["pid"] for w in again} == {s["pid"] for s in states_a}  # a's workers, adopted
    assert len(warm_names(ray, namespace)) == 3


def test_a_warm_worker_that_died_while_idle_is_replaced_at_the_next_lease(ray_cluster, namespace):
    ray = ray_cluster
    node = ray.get_runtime_context().get_node_id()
    pool = WarmPool(PoolSettings(), namespace)
    (worker,) = pool.lease("job-a", [node])
    pid = ray.get(worker.state.remote())["pid"]
    pool.release("job-a")
    ray.kill(worker)  # for good: no restart
    # ray.kill only asks: until the process is gone, it may still answer the next lease.
    wait_until(lambda: is_dead(ray, worker), 30, "the killed worker to die")

    (replacement,) = pool.lease("job-b", [node])
    state = ray.get(replacement.state.remote(), timeout=60)
    assert state["job"] == "job-b" and state["pid"] != pid
    assert len(pool.summary()) == 1


def test_idle_workers_go_after_the_idle_time_and_past_the_memory_budget(ray_cluster, namespace):
    ray = ray_cluster
    node = ray.get_runtime_context().get_node_id()
    pool = WarmPool(PoolSettings(idle_s=3600), namespace)
    workers = pool.lease("job-a", [node, node])
    # Two processes need not weigh the same: Ray may hand an actor a process that ran tasks before.
    small, large = sorted(s["rss_mib"] for s in ray.get([w.state.remote() for w in workers]))

    # A budget that holds either worker, not both, keeps one of them, whichever is kept first.
    pool.settings = PoolSettings(idle_s=3600, memory_mib=large + small / 2)
    pool.release("job-a")
    assert len(pool.summary()) == 1
    wait_until(lambda: len(warm_names(ray, namespace)) == 1, 30, "the worker past the budget to go")
    assert pool.reap() == []  # not idle for an hour yet

    pool.settings = PoolSettings(idle_s=0.5)
    wait_until(lambda: gone(ray, namespace, pool), 30, "the idle worker to be let go")
    assert pool.summary() == []


def test_a_leased_worker_of_a_job_that_ended_is_let_go(ray_cluster, namespace):
    ray = ray_cluster
    node = ray.get_runtime_context().get_node_id()
    pool = WarmPool(PoolSettings(), namespace)
    (worker,) = pool.lease("job-gone", [node])
    ray.get(worker.state.remote())
    assert pool.reap(job_done=lambda job: job == "job-running") == []
    (name,) = [w["name"] for w in pool.summary()]
    assert pool.reap(job_done=lambda job: job == "job-gone") == [name]
    wait_until(lambda: gone(ray, namespace), 30, "the worker to be let go")


def test_a_restarted_registry_finds_the_warm_workers_and_their_jobs(ray_cluster, namespace):
    ray = ray_cluster
    node = ray.get_runtime_context().get_node_id()
    pool = WarmPool(PoolSettings(), namespace)
    ray.get([w.state.remote() for w in pool.lease("job-a", [node]) + pool.lease("job-b", [node])])
    pool.release("job-b")
    found = WarmPool(PoolSettings(), namespace)  # as a restarted registry makes it
    assert sorted((w["name"], w["job"]) for w in found.summary()) == sorted((w["name"], w["job"]) for w in pool.summary())
    assert sorted(w["job"] or "" for w in found.summary()) == ["", "job-a"]


def test_bad_pool_settings_name_the_variable(monkeypatch):
    from dtrain.errors import UserError

    monkeypatch.setenv("DTRAIN_POOL_IDLE_S", "ten minutes")
    with pytest.raises(UserError, match="DTRAIN_POOL_IDLE_S='ten minutes': expected a number"):
        PoolSettings.from_env()
    monkeypatch.setenv("DTRAIN_POOL_IDLE_S", "90")
    monkeypatch.setenv("DTRAIN_POOL_MEMORY_MIB", "512")
    assert PoolSettings.from_env() == PoolSettings(idle_s=90, memory_mib=512)
