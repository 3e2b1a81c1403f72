"""A Ray cluster of two nodes on this machine, for tests that need a real cluster.

Run as a script (by the tests' cluster fixture): starts a head node and a
second node with Ray's own `ray.cluster_utils.Cluster`, small object stores
and 2 CPUs each, prints one JSON line with the address, then serves commands
on stdin until it closes:

    remove-node   kill the second node at once (its raylet and everything on it)
    add-node      start a new second node

Each command is answered with one JSON line. Being a separate process, the
cluster does not disturb the embedded Ray that the test process itself uses.
"""

from __future__ import annotations

import json
import os
import sys
import time

NODE = dict(num_cpus=2, object_store_memory=100 * 1024**2, memory=1024**3)


def main() -> None:
    # Ray prints node messages to descriptor 1; the answers get a descriptor of their own.
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def answer(message: dict) -> None:
        print(json.dumps(message), file=answers)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args=dict(NODE, include_dashboard=False))
    node = cluster.add_node(**NODE)
    cluster.wait_for_nodes()
    answer({"address": cluster.address, "second_node": node.node_id})
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "remove-node":
                t0 = time.monotonic()
                cluster.remove_node(node, allow_graceful=False)
                answer({"removed": node.node_id, "at": time.time(), "took_s": time.monotonic() - t0})
            elif command == "add-node":
                node = cluster.add_node(**NODE)
                cluster.wait_for_nodes()
                answer({"added": node.node_id})
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
