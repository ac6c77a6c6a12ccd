"""Markdown tables of a budget report (``docs/budget/budget.json``), for docs/budget/.

``python -m research.budget_tables docs/budget/budget.json`` prints, per mode, the
epochs share / mean regret / worst-seed regret of every rule on every workload, the
epochs against the cheapest built-in at no worse regret, and the good-trial
(false-prune) rates, so the tables in the docs are generated from the run, never
typed by hand.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

SHORT = {  # Taskset task names as the docs write them
    "taskset_patch128_LSTM128_avg_bs64": "TS LSTM-avg",
    "taskset_patch128_LSTM128_embed128_bs64": "TS LSTM-emb",
    "taskset_patch32_GRU128_bs128": "TS GRU",
    "taskset_patch32_IRNN64_relu_avg_bs128": "TS IRNN",
    "taskset_patch32_LSTM128_E128_bs128": "TS LSTM-E128",
    "taskset_patch32_VRNN64_tanh_avg_bs128": "TS VRNN",
}


def _num(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def _digits(entry: dict[str, Any]) -> int:
    return 3 if entry["kind"] == "taskset" else 2


def rules_of(report: dict[str, Any], mode: str) -> list[str]:
    """Every rule that ran in ``mode``, in the report's order (beta_eff rules last)."""
    names: dict[str, None] = {}
    for entry in report["workloads"].values():
        names.update(dict.fromkeys(entry["modes"].get(mode, {}).get("summary", {})))
    return list(names)


def table(report: dict[str, Any], mode: str, cell: Any, title: str) -> str:
    workloads = report["workloads"]
    head = "| rule | " + " | ".join(SHORT.get(w, w) for w in workloads) + " |"
    lines = [f"#### {title}", "", head, "|---" * (len(workloads) + 1) + "|"]
    for name in rules_of(report, mode):
        cells = []
        label = name
        for entry in workloads.values():
            row = entry["modes"].get(mode, {}).get("summary", {}).get(name)
            cells.append("" if row is None else cell(row, entry))
            label = row["label"] if row else label
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables(report: dict[str, Any]) -> str:
    modes = list(next(iter(report["workloads"].values()))["modes"])
    parts = []
    for mode in modes:
        parts.append(table(
            report, mode,
            lambda r, e: (f"{r['epochs_share']:.2f} / {_num(r['regret_mean'], _digits(e))} / "
                          f"{_num(r['regret_worst'], _digits(e))}"),
            f"{mode}: epochs share / mean regret / worst-seed regret"))
        parts.append(table(report, mode, lambda r, e: _num(r["vs_cheapest"], 2),
                           f"{mode}: epochs / those of the cheapest built-in at no worse "
                           "mean regret"))
    parts.append(table(report, modes[0],
                       lambda r, e: f"{r['good_prune_rate']:.2f} ({r['false_prune_rate']:.2f})",
                       f"{modes[0]}: good-trial prune rate (false-prune rate)"))
    return "\n\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m research.budget_tables docs/budget/budget.json",
              file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as handle:
        print(tables(json.load(handle)), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
