"""Do slow epochs and good finals go together on the recorded tables?

For each table: the correlation, over its trials, between a trial's mean seconds per
epoch (as recorded) and its final value, and the best trial's seconds per epoch with its
rank among all trials by that cost (1: the slowest). A cost-aware promotion rule ("the
cheaper first near a rung's cut") leans against the good trials where this is positive.

    PYTHONPATH=. python benchmarks/epoch_cost_vs_final.py benchmarks/tables/*.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    from research.budget_bench import workload_from_rows

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("tables", nargs="+", help="recorded tables (*.jsonl)")
    args = parser.parse_args(argv)
    print(f"{'table':<24} {'trials':>6} {'corr':>6} {'best final':>10} "
          f"{'its s/epoch':>11} {'slowest rank':>12} {'s/epoch range':>14}")
    for path in map(Path, args.tables):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
        workload = workload_from_rows(path.stem, rows)
        cost = np.asarray(workload.epoch_seconds, dtype=float).mean(axis=1)
        finals = np.asarray(workload.finals, dtype=float) * workload.sign  # larger: better
        ok = np.isfinite(finals) & np.isfinite(cost)
        corr = float(np.corrcoef(cost[ok], finals[ok])[0, 1])
        best = int(np.nanargmax(np.where(ok, finals, np.nan)))
        rank = int((cost[ok] > cost[best]).sum()) + 1
        print(f"{path.stem:<24} {int(ok.sum()):>6} {corr:>6.2f} "
              f"{finals[best] * workload.sign:>10.4f} {cost[best]:>11.2f} "
              f"{f'{rank}/{int(ok.sum())}':>12} "
              f"{f'{cost[ok].min():.2f}-{cost[ok].max():.2f}':>14}")
    print("corr: Pearson's, mean seconds per epoch against the final value (signed so that "
          "larger is better; positive: slow trials end better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
