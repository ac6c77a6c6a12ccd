"""What-if: trials still in learning-rate warm-up at the first rung are promoted past it
in addition to the kept ones (not in the package; not adopted).

A recorded table's runs carry their configuration; a run whose ``schedule`` is
``warmup`` has trained its first epoch at about 1% of its learning rate, so the first
rung judges it before it has really trained. This script runs the pausing simulator
(``research/pausing_bench.py``) with a policy that keeps such trials at the first rung
on top of the ones it keeps anyway, beside the default (ASHA on the predicted best), the
pick (``pause,rf=3,keep=auto,bracket=all``) and the pick with its first rung after 3
epochs, 20 seeds, sequential, no checkpoint costs. Output of 2026-12-05:
``docs/budget/pausing_warmup_whatif.txt``.

Run from the repository root::

    PYTHONPATH=. python benchmarks/pausing_warmup_whatif.py \
        benchmarks/tables/{digits_mlp,fashion_cnn,fashion_select}.jsonl \
        benchmarks/tables/holdout_{digits_cnn,fashion_mlp,fashion_wide30}.jsonl
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

import research.pausing_bench as pb
from ncp_search.core.pausing import PausingPolicy
from research.budget_bench import load_workload, study_trials

PICK = "pause,rf=3,keep=auto,bracket=all"
RULES = ["default", PICK, PICK + ",warm", PICK + ",min=3"]


class WarmupExempt(PausingPolicy):
    """Promotes the trials of :attr:`exempt` at the first rung whatever their rank, on
    top of the ones the rung keeps (reads the private ranking hook, as research)."""

    exempt: frozenset[str] = frozenset()

    def _with_ties(self, ranked: list[str], level: int, keep: int) -> int:
        kept = super()._with_ties(ranked, level, keep)
        if level > 0:
            return kept
        extra = [t for t in ranked[kept:] if t in self.exempt]
        rest = [t for t in ranked[kept:] if t not in self.exempt]
        ranked[:] = ranked[:kept] + extra + rest
        return kept + len(extra)


def main(tables: list[str], seeds: int = 20) -> None:
    state: dict[str, Any] = {}
    make_host = pb.make_host

    def with_warmup(name: str, n_trials: int, n_steps: int, sign: float, **kwargs: Any) -> Any:
        warm = name.endswith(",warm")
        host = make_host(name.removesuffix(",warm"), n_trials, n_steps, sign, **kwargs)
        if warm:
            old = host.policy
            policy = WarmupExempt(
                n_trials=old.n_trials, max_resource=old.max_resource,
                reduction_factor=old.reduction_factor, min_resource=old.min_resource,
                keep_min=old.keep_min, bracket_size=old.bracket_size,
                promote_early=old.promote_early, first_step=old.first_step,
                predictor=old.predictor.name, keep_ties=old.keep_ties)
            runs = state["workload"].runs
            policy.exempt = frozenset(
                str(position) for position, run in enumerate(state["order"])
                if (runs[run].get("config") or {}).get("schedule") == "warmup")
            host.policy = policy
        return host

    pb.make_host = with_warmup  # type: ignore[assignment]
    for path in tables:
        workload = load_workload({"kind": "table", "path": path, "tolerance": 0.5})
        state["workload"] = workload
        for size in ("large", "small"):
            for rule in RULES:
                runs = []
                for seed in range(seeds):
                    order = (study_trials(workload, seed) if size == "large"
                             else pb.small_trials(workload, seed))
                    state["order"] = order
                    runs.append(pb.simulate(workload, rule, order, seed=seed))
                epochs = np.mean([r["epochs_share"] for r in runs])
                regret = [r["final_regret"] for r in runs]
                name = rule.replace(PICK, "pick")
                print(f"{workload.name[:28]:28s} {size:5s} {name:14s} epochs {epochs:.3f} "
                      f"regret {np.mean(regret):.3f} worst {max(regret):.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
