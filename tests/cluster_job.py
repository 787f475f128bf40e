"""Run by test_sweep_cluster: a 3-node Ray cluster on this machine; one node is removed
while the sweep runs.  Prints a JSON summary."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from sweep.config import load_grid
from sweep.runner import launch


def main(out: str) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    grid = load_grid(Path(__file__).resolve().parent.parent / "conf/demo.yaml", ["workload=noop", "workload.sleep_ms=100", "~workload.n_ops",
                                        "policy=eager", "arch=x86_64", "seed=range(0,40)",
                                        "sweep.batch_size=2"])
    state = {"removed": False, "nodes": len(ray.nodes())}

    def on_progress(p) -> None:
        if not state["removed"] and p.done >= 6:
            cluster.remove_node(nodes[0])
            state["removed"] = True

    prog = launch(grid, out, workers=3, on_progress=on_progress,
                  log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps({"cells": len(grid.cells), "done": prog.done, "failed": prog.failed,
                      "retried": prog.retried, "removed": state["removed"],
                      "nodes": state["nodes"]}))
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
