"""A Ray cluster of two nodes on this machine, for tests that need a real cluster.

Run as a script (by the `two_node_cluster` fixture): starts a head node and a
second node with Ray's own `ray.cluster_utils.Cluster`, small object stores
and 2 CPUs each, prints one JSON line with the address, then keeps the cluster
up until its stdin closes. Being a separate process, it does not disturb the
embedded Ray that the test process itself uses.
"""

from __future__ import annotations

import json
import sys

NODE = dict(num_cpus=2, object_store_memory=100 * 1024**2, memory=1024**3)


def main() -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args=dict(NODE, include_dashboard=False))
    node = cluster.add_node(**NODE)
    cluster.wait_for_nodes()
    print(json.dumps({"address": cluster.address, "second_node": node.node_id}), flush=True)
    try:
        sys.stdin.read()  # until the fixture closes it
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
