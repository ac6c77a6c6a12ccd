"""Driver for the local-cluster test: connects to a running Ray head with
``ray.init(address=...)``, runs a small NCPScheduler sweep on a synthetic
function trainable and writes what it saw to a JSON file.

Run as ``python -m tests.integrations.ray_cluster_driver ADDRESS STORAGE_PATH OUT_JSON`` with the
loopback environment of ``tests/integrations/test_ray_cluster.py`` (see ``docs/ray/cluster.md``).
"""

from __future__ import annotations

import json
import os
import sys
import time

import ray
from ray import tune

from ncp_search.integrations.ray.scheduler import NCPScheduler
from ncp_search.integrations.ray.trainable import trial_resources

# The percentile rule with the 0.1 defaults these tests were written for.
RULE_01 = {"rule": "percentile", "grace_period": 2}

QUALITIES = [0.1, 0.9, 0.2, 0.8, 0.15, 0.85, 0.3, 0.7]
STEPS = 8


def trainable(config):
    quality = config["quality"]
    for step in range(STEPS):
        time.sleep(0.05)
        accuracy = 0.3 + 0.6 * quality * (1 - 0.7 ** (step + 1))
        tune.report({"val_accuracy": accuracy, "beta_eff": 1.0 / (step + 1),
                     "node_ip": ray.util.get_node_ip_address()})


def socket_ips() -> list[str]:
    """Local and remote IPs of this process's TCP/UDP sockets."""
    import psutil  # ray ships it and puts it on sys.path once imported

    process = psutil.Process()
    connections = (process.net_connections(kind="inet") if hasattr(process, "net_connections")
                   else process.connections(kind="inet"))
    return sorted({a.ip for c in connections for a in (c.laddr, c.raddr) if a})


def main(address: str, storage: str, out: str) -> None:
    ray.init(address=address, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        context = ray.get_runtime_context()
        resources = trial_resources()
        state_path = os.path.join(storage, "ncp", "ncp_scheduler.jsonl")
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            param_space={"quality": tune.grid_search(QUALITIES)},
            tune_config=tune.TuneConfig(
                metric="val_accuracy", mode="max",
                scheduler=NCPScheduler(**RULE_01, max_t=STEPS, state_path=state_path),
            ),
            run_config=tune.RunConfig(storage_path=storage, name="ncp", verbose=0),
        )
        results = tuner.fit()
        best = results.get_best_result()
        report = {
            "gcs_address": context.gcs_address,
            "driver_node_ip": ray._private.worker.global_worker.node_ip_address,
            "nodes": [{"ip": n["NodeManagerAddress"], "alive": n["Alive"]} for n in ray.nodes()],
            "resources": resources,
            "num_results": len(results),
            "errors": [str(e) for e in results.errors],
            "trials": [
                {"quality": r.config["quality"],
                 "iterations": r.metrics.get("training_iteration"),
                 "node_ip": r.metrics.get("node_ip")}
                for r in results
            ],
            "best": {"quality": best.config["quality"],
                     "iterations": best.metrics["training_iteration"]},
            "state_path_written": os.path.exists(state_path),
            "driver_socket_ips": socket_ips(),
        }
    finally:
        ray.shutdown()
    with open(out, "w") as handle:
        json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
