"""beta_eff time and peak memory: Hessian-vector products vs the materialised P.

For probes of about 1e3 .. 1e6 weights (4 weight layers, input width = hidden
width w, 5 classes, batch 256) it measures, each in a fresh subprocess so that the
peak resident memory (ru_maxrss) belongs to one route and one size:

- ``hvp``: ncp_search's compiled float32 path (``beta_eff_terms_from_weights``),
  median of repeated warm calls;
- ``materialised``: the full N x N Hessian (``tests.reference``, float32,
  vectorised jacobian), one warm call; skipped (and reported) when the Hessian
  alone would exceed ``--materialised-limit-gb``, or when the subprocess dies.

Run:  python benchmarks/beta_eff_scaling.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

WIDTHS = {1e3: 16, 1e4: 56, 1e5: 180, 1e6: 576}
CLASSES = 5
BATCH = 256


def n_weights(width: int) -> int:
    return width * width * 3 + width * CLASSES


def _probe(width: int):
    import numpy as np

    rng = np.random.default_rng(0)
    shapes = [(width, width)] * 3 + [(width, CLASSES)]
    kernels = [rng.normal(0, (2.0 / a) ** 0.5, size=(a, b)).astype("float32") for a, b in shapes]
    features = np.abs(rng.normal(1, 1, size=(BATCH, width))).astype("float32")
    labels = rng.integers(0, CLASSES, BATCH)
    return kernels, features, labels


def child(route: str, width: int, repeats: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from ncp_search.engine.capacitance import beta_eff_terms_from_weights
    from tests.reference import materialised_beta_eff

    kernels, features, labels = _probe(width)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    if route == "hvp":

        def run():
            return beta_eff_terms_from_weights(kernels, features, labels, precision="float32")

    else:

        def run():
            return materialised_beta_eff(kernels, features, labels, dtype=tf.float32)

    run()  # warm-up (tracing)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": float(np.median(times)),
        "peak_rss_mb": peak / 1024,
        "extra_rss_mb": (peak - base_rss) / 1024,
    }


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_env() -> dict[str, str]:
    """The child's environment: the repository on its path, for ``tests.reference``
    (``python benchmarks/beta_eff_scaling.py`` puts only ``benchmarks/`` there)."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": ROOT + (os.pathsep + path if path else "")}


def measure(route: str, width: int, repeats: int, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", route, str(width), str(repeats)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=child_env())
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1][:160]
        return {"error": f"exit {done.returncode} ({tail})"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--materialised-limit-gb", type=float, default=8.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        route, width, repeats = args.child
        print(json.dumps(child(route, int(width), int(repeats))))
        return

    rows = []
    header = (
        f"{'target N':>9} {'N':>9} {'hvp ms':>9} {'hvp MB':>8} {'mat ms':>10} {'mat MB':>8} "
        f"{'speed-up':>9}"
    )
    print(header, flush=True)
    for target, width in WIDTHS.items():
        n = n_weights(width)
        hvp = measure("hvp", width, args.repeats, args.timeout)
        hessian_gb = n * n * 4 / 1e9
        if hessian_gb > args.materialised_limit_gb:
            mat = {"error": f"not run: the float32 Hessian alone needs {hessian_gb:,.0f} GB"}
        else:
            mat = measure("materialised", width, max(1, min(3, args.repeats)), args.timeout)
        row = {"target": target, "n_weights": n, "width": width, "hvp": hvp, "materialised": mat}
        rows.append(row)

        def cell(res, key, scale, fmt):
            width = int(fmt.split(".")[0])
            return format(res[key] * scale, fmt) if key in res else "-".rjust(width)

        speed = (
            f"{mat['seconds'] / hvp['seconds']:.0f}x"
            if "seconds" in mat and "seconds" in hvp
            else "-"
        )
        print(
            f"{target:>9.0e} {n:>9,} {cell(hvp, 'seconds', 1e3, '9.2f')} "
            f"{cell(hvp, 'extra_rss_mb', 1, '8.0f')} {cell(mat, 'seconds', 1e3, '10.1f')} "
            f"{cell(mat, 'extra_rss_mb', 1, '8.0f')} {speed:>9}",
            flush=True,
        )
        if "error" in mat:
            print(f"           materialised: {mat['error']}", flush=True)
        if "error" in hvp:
            print(f"           hvp: {hvp['error']}", flush=True)
    small, large = rows[0]["hvp"], rows[-1]["hvp"]
    if "seconds" in small and "seconds" in large:
        growth = large["seconds"] / small["seconds"]
        size = rows[-1]["n_weights"] / rows[0]["n_weights"]
        print(f"hvp time grows {growth:.0f}x for {size:.0f}x more weights")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
