#!/usr/bin/env bash
# Regenerates docs/budget/ (budget.txt, budget.json, pareto_<workload>.png): every stop
# rule against every built-in in real Optuna studies (sequential and 4 in flight) on the
# three recorded tables and the six public Taskset tasks (the folder named by
# $NCP_SEARCH_TASKSET; left out with a note when unset), plus real Tune runs on the
# recorded tables (run while the Optuna studies run, in two worker processes; or taken
# from an earlier report with RAY_FROM=<budget.json>). 20 seeds on every workload
# (SEEDS, TASKSET_SEEDS). Run it with `nice -n 10`; docs/budget/budget.txt ends with
# the wall time it took.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/budget
mkdir -p "$out"
ray_seeds=${RAY_SEEDS:-3}
taskset_seeds=${TASKSET_SEEDS:-20}
ray_from=()
if [ -n "${RAY_FROM:-}" ]; then ray_from=(--ray-from "$RAY_FROM"); fi
"${PYTHON:-python}" -m research bench budget --seeds "${SEEDS:-20}" \
    --taskset-seeds "$taskset_seeds" --concurrency 1 4 \
    --ray-seeds "$ray_seeds" --ray-alpha 0.3 --processes "${PROCESSES:-2}" "${ray_from[@]}" \
    --scoped "Ray Tune runs: $ray_seeds seeds (not 20) and the recorded tables only (no Taskset): one Tune run took 11-160 s on 2 shared cores (a seed of 7 schedulers x 3 tables took 9-27 minutes), so 20 seeds would take hours" \
             "beta_eff rules: ASHA rf 3 without the incumbent test only (the incumbent test reads best-so-far values, not the predictor, so its effect does not depend on beta_eff)" \
             "latency targets (T4): not re-measured here; quoted from docs/optuna/prune_latency.txt and docs/ray/scheduler_latency.txt" \
    --json "$out/budget.json" --plot "$out" | tee "$out/budget.txt"
