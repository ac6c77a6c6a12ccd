"""Markdown tables from a `python -m research bench predict --json` report.

Run:  python benchmarks/summarize_prediction.py docs/prediction/report.json [--k 5]
Prints, per mode, Kendall tau (95% bootstrap interval) per predictor and workload at
K, the mean across workloads, top-1 regret and the difference to the shuffled
control for the beta_eff predictors.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report")
    parser.add_argument("--k", default=None, help="observed epochs (default: second K)")
    parser.add_argument("--predictors", nargs="+", default=None)
    args = parser.parse_args()
    report = json.load(open(args.report, encoding="utf-8"))
    tables = list(report)
    modes = sorted({m for t in tables for m in report[t]["modes"]})
    for mode in modes:
        present = [t for t in tables if mode in report[t]["modes"]]
        first = report[present[0]]["modes"][mode]
        k = args.k or list(first["ks"])[1 if len(first["ks"]) > 1 else 0]
        names = args.predictors or [n for n in first["predictors"] if not n.endswith("+shuffled")]
        epochs = first["epochs"]
        print(f"\n**{mode}**, K = {k} of {epochs} epochs: Kendall tau [95% CI] (top-1 regret, "
              "points; tau minus shuffled control)\n")
        print("| predictor | " + " | ".join(present) + " | mean tau |")
        print("|---|" + "---|" * (len(present) + 1))
        for name in names:
            cells, taus = [], []
            for table in present:
                row = report[table]["modes"][mode]["ks"].get(str(k), {}).get(name)
                if row is None:
                    cells.append("-")
                    continue
                tau = row["kendall_tau"]
                taus.append(tau["value"])
                extra = f"{row['top1_regret']['value']:.1f}"
                if "tau_minus_shuffled" in row:
                    extra += f"; {row['tau_minus_shuffled']['value']:+.2f}"
                cells.append(f"{tau['value']:.2f} [{tau['ci'][0]:.2f}, {tau['ci'][1]:.2f}] "
                             f"({extra})")
            mean = f"{np.mean(taus):.3f}" if taus else "-"
            print(f"| {name} | " + " | ".join(cells) + f" | {mean} |")


if __name__ == "__main__":
    main()
