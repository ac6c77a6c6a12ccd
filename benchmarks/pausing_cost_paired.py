"""Cost-aware promotion at a pausing rung, paired per seed against the pick.

A what-if of the simulator (``research/pausing_bench.py``, options ``cost=tie|tol``,
``band=F``, ``slow=X``; not in the package): for each recorded table and Taskset task,
large and small studies, 20 seeds, it prints the epochs and seconds shares, the regret,
and per cost variant against the pick (``pause,rf=3,keep=auto,bracket=all``): in how
many studies the cost rule changed a kept set, the seconds saved, and the seeds whose
regret went up or down. Output of 2026-12-05: ``docs/budget/pausing_cost_aware.txt``.

Run from the repository root (``NCP_SEARCH_TASKSET`` names the Taskset folder; without
it, the tables only)::

    PYTHONPATH=. python benchmarks/pausing_cost_paired.py checkpoint   # or: memory
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np

import research.pausing_bench as pb
from research.budget_bench import load_workload, study_trials
from research.taskset import task_files

PICK = "pause,rf=3,keep=auto,bracket=all"
VARIANTS = ["", ",cost=tie", ",cost=tie,band=0.5", ",cost=tol", ",cost=tol,slow=2"]
TABLES = ["digits_mlp", "fashion_cnn", "fashion_select"]


def main(resume: str = "checkpoint", seeds: int = 20) -> None:
    with open("docs/budget/pausing.json", encoding="utf-8") as handle:
        measured = json.load(handle)["checkpoints"]
    hosts: list[Any] = []
    make_host = pb.make_host

    def recording(*args: Any, **kwargs: Any) -> Any:  # keeps each study's host
        host = make_host(*args, **kwargs)
        hosts.append(host)
        return host

    pb.make_host = recording  # type: ignore[assignment]
    sources: list[dict[str, Any]] = [
        {"kind": "table", "path": f"benchmarks/tables/{t}.jsonl", "tolerance": 0.5}
        for t in TABLES]
    folder = os.environ.get("NCP_SEARCH_TASKSET")
    if folder:
        sources += [{"kind": "taskset", "path": str(f), "tolerance": 0.01, "draw": 100}
                    for f in task_files(folder)]
    for early in ("", ",early=off"):
        print(f"### resumes={resume} {'early=off' if early else 'early=on'}")
        for source in sources:
            workload = load_workload(source)
            checkpoint = pb.checkpoint_for(workload, measured, resume)
            for size in ("large", "small"):
                base: tuple[np.ndarray, np.ndarray] | None = None
                for variant in VARIANTS:
                    hosts.clear()
                    runs = [pb.simulate(workload, PICK + early + variant,
                                        study_trials(workload, s) if size == "large"
                                        else pb.small_trials(workload, s),
                                        checkpoint=checkpoint, seed=s) for s in range(seeds)]
                    changed = [getattr(h.policy, "changed", 0) for h in hosts]
                    secs = np.array([r["seconds_share"] for r in runs])
                    regret = np.array([r["final_regret"] for r in runs])
                    epochs = np.array([r["epochs_share"] for r in runs])
                    extra = ""
                    if base is None:
                        base = (secs, regret)
                    else:
                        d = secs / base[0] - 1
                        extra = (f" | seeds changed {sum(c > 0 for c in changed):2d}/{seeds}; "
                                 f"secs vs pick {np.mean(d) * 100:+.1f}% (lower in "
                                 f"{sum(d < -1e-9)}, higher in {sum(d > 1e-9)}); regret up in "
                                 f"{sum(regret > base[1] + 1e-9)}, down in "
                                 f"{sum(regret < base[1] - 1e-9)}")
                    name = "pick" + early + variant
                    print(f"{workload.name[:40]:40s} {size:5s} {name:28s} ep {epochs.mean():.3f} "
                          f"secs {secs.mean():.3f} regret {regret.mean():.4f} "
                          f"worst {regret.max():.4f}{extra}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "checkpoint")
