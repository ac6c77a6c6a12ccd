"""Self-contained HTML report of a sweep (``ncp-search report OUTPUT_DIR``).

:func:`write_report` writes ``report.html`` (figures embedded as base64 PNG, inline
CSS, no script, no external resource) and the same figures as PNG files in
``report/``. Matplotlib and SciPy are imported only when a report is written.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import ncp_search.app.report.plots as report_plots

FIGURES = ("predicted_vs_actual", "beta_eff", "history", "epochs_saved")
_CSS = """
body{font-family:sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top;font-size:.92em}th{background:#f2f2f2}
img{max-width:100%;height:auto}.note{color:#555;font-style:italic}code{background:#f4f4f4}
"""


def _float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def _array(values: Any) -> np.ndarray:
    return np.array([_float(v) for v in (values or [])], dtype=float)


def _normalise(trial: dict[str, Any], index: int) -> dict[str, Any]:
    val = _array(trial.get("val_accuracy"))
    final = _float(trial.get("final"))
    if math.isnan(final) and np.isfinite(val).any():
        final = float(val[np.isfinite(val)][-1])
    number = trial.get("number")
    return {
        "number": int(number) if isinstance(number, (int, float)) else index,
        "state": str(trial.get("state") or "UNKNOWN").upper(),
        "params": dict(trial.get("params") or {}),
        "val": val,
        "beta": _array(trial.get("beta_eff")),
        "pred": _array(trial.get("predicted_final")),
        "final": final,
        "model_path": trial.get("model_path"),
        "seconds": _float(trial.get("seconds")),
    }


def _last(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if len(finite) else math.nan


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return "&ndash;" if not math.isfinite(value) else f"{value:.{digits}g}"
    if value is None:
        return "&ndash;"
    return html.escape(str(value))


def _table(rows: Sequence[Sequence[str]], header: Sequence[str] = ()) -> str:
    """Rows of already-escaped cells as an HTML table."""
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _kendall(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2:
        return math.nan
    from scipy.stats import kendalltau

    value = kendalltau(x, y).statistic
    return float(value) if np.isfinite(value) else math.nan


def _prediction_points(trials: list[dict], epochs: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{k: (prediction after epoch k, actual final)}`` over COMPLETE trials, for k at
    a quarter, half and three quarters of the epochs (last finite prediction <= k)."""
    ks = sorted({max(1, epochs * q // 4) for q in (1, 2, 3)})
    points = {}
    for k in ks:
        pairs = [(_last(t["pred"][:k]), t["final"]) for t in trials if t["state"] == "COMPLETE"]
        pairs = [p for p in pairs if math.isfinite(p[0]) and math.isfinite(p[1])]
        points[k] = (np.array([p for p, _ in pairs]), np.array([a for _, a in pairs]))
    return points


def _best(trials: list[dict], maximize: bool) -> tuple[dict | None, list[tuple[int, float]]]:
    """Best COMPLETE trial (lowest number on ties) and the best-so-far steps."""
    best, steps = None, []
    for t in trials:
        if t["state"] != "COMPLETE" or not math.isfinite(t["final"]):
            continue
        if best is None or (t["final"] > best["final"] if maximize else t["final"] < best["final"]):
            best = t
        steps.append((t["number"], best["final"]))
    return best, steps


def _budget(trials: list[dict], epochs: int) -> list[int]:
    """Epochs each trial would use without pruning: ``epochs`` for PRUNED trials, what
    it trained for the others (a failed or running trial is not shortened by pruning)."""
    return [max(len(t["val"]), epochs) if t["state"] == "PRUNED" else len(t["val"])
            for t in trials]


def _figure(name: str, png: bytes | None, figure_dir: Path, alt: str) -> str:
    if png is None:
        return ""
    (figure_dir / f"{name}.png").write_bytes(png)
    data = base64.b64encode(png).decode("ascii")
    return f'<p><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}"></p>'


def _best_section(best: dict | None, out_dir: Path, metric: str) -> str:
    if best is None:
        return '<p class="note">No complete trial: there is no best configuration.</p>'
    rows = [[html.escape(str(k)), _fmt(v)] for k, v in best["params"].items()]
    path = best["model_path"]
    where = "<em>not saved</em>" if not path else f"<code>{html.escape(str(path))}</code>"
    if path and not (out_dir / str(path)).exists():
        where += ' <span class="note">(file not found)</span>'
    return (f"<p>Trial {best['number']}: final {html.escape(metric)} "
            f"<strong>{_fmt(best['final'])}</strong>, {_fmt(best['seconds'], 3)} s.</p>"
            + _table(rows or [["<em>no parameters</em>", ""]], ["parameter", "value"])
            + f"<p>Model (relative to the output directory): {where}</p>")


def _trials_table(trials: list[dict]) -> str:
    rows = [[str(t["number"]), html.escape(t["state"]), str(len(t["val"])), _fmt(t["final"]),
             _fmt(_last(t["pred"])), _fmt(t["seconds"], 3),
             html.escape(", ".join(f"{k}={v}" for k, v in t["params"].items()))]
            for t in trials]
    header = ["trial", "state", "epochs", "final", "last prediction", "seconds", "params"]
    return _table(rows, header)


def write_report(meta: dict[str, Any], trials: list[dict[str, Any]], out_dir: str | Path) -> Path:
    """Write ``out_dir/report.html`` and its figures as PNGs in ``out_dir/report/``.

    Args:
        meta: the sweep's description (``name``, ``backend``, ``metric``,
            ``direction``, ``epochs``, ``pruner``, ``storage``, ``created``).
        trials: one dict per trial (``number``, ``state``, ``params``,
            ``val_accuracy``, ``beta_eff``, ``predicted_final``, ``final``,
            ``model_path``, ``seconds``); None or NaN values are missing values.
        out_dir: the sweep's output directory (created if needed).

    Returns:
        The path of ``report.html``.
    """
    out_dir = Path(out_dir)
    figure_dir = out_dir / "report"
    figure_dir.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:  # no stale figure from an earlier report
        (figure_dir / f"{name}.png").unlink(missing_ok=True)
    rows = sorted((_normalise(t, i) for i, t in enumerate(trials)), key=lambda t: t["number"])
    metric = str(meta.get("metric") or "value")
    maximize = str(meta.get("direction") or "maximize").lower() != "minimize"
    epochs = _float(meta.get("epochs"))
    epochs = max([int(epochs) if math.isfinite(epochs) else 0] + [len(t["val"]) for t in rows])
    title = f"ncp-search report: {meta.get('name') or 'sweep'}"
    keys = ("name", "backend", "metric", "direction", "epochs", "pruner", "storage", "created")
    parts = [f"<h1>{html.escape(title)}</h1>",
             _table([[k, _fmt(meta.get(k))] for k in keys] + [["trials", str(len(rows))]])]
    if not rows:
        parts.append('<p class="note">No trials recorded: nothing to report.</p>')
    else:
        best, steps = _best(rows, maximize)
        budget = _budget(rows, epochs)
        used, total = sum(len(t["val"]) for t in rows), sum(budget)
        states = [t["state"] for t in rows]
        saved = f"{100.0 * (total - used) / total:.1f}%" if total else "&ndash;"
        points = _prediction_points(rows, epochs)
        pruned = np.array([p for p in (_last(t["pred"]) for t in rows if t["state"] == "PRUNED")
                           if math.isfinite(p)])
        taus = [[str(k), str(len(p)), _fmt(_kendall(p, a), 3)] for k, (p, a) in points.items()]
        parts += [
            "<h2>Best configuration</h2>", _best_section(best, out_dir, metric),
            "<h2>Epochs saved</h2>",
            _table([["epochs trained", str(used)], ["epochs without pruning", str(total)],
                    ["saved", saved], ["pruned trials", str(states.count("PRUNED"))],
                    ["complete trials", str(states.count("COMPLETE"))],
                    ["failed trials", str(states.count("FAIL"))]]),
            _figure("epochs_saved", report_plots.epochs_saved(rows, budget), figure_dir,
                    "epochs trained and saved per trial"),
            "<h2>Predicted vs actual final value</h2>",
            "<p>Last prediction made up to epoch k, complete trials only. Kendall tau "
            "between predicted and actual final values (&ndash; with fewer than two pairs "
            "or constant values):</p>",
            _table(taus, ["k", "trials", "Kendall tau"]),
            _figure("predicted_vs_actual",
                    report_plots.predicted_vs_actual(points, pruned, metric), figure_dir,
                    "predicted vs actual final value")
            or '<p class="note">No prediction for a complete trial.</p>',
            "<h2>beta_eff trajectories</h2>",
            _figure("beta_eff", report_plots.beta_trajectories(rows), figure_dir,
                    "beta_eff per epoch")
            or '<p class="note">No beta_eff recorded (backend without beta_eff).</p>',
            "<h2>Optimisation history</h2>",
            _figure("history", report_plots.optimisation_history(rows, steps, metric),
                    figure_dir, "optimisation history")
            or '<p class="note">No trial has a final value.</p>',
            "<h2>All trials</h2>", _trials_table(rows),
        ]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
