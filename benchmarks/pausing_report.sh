#!/usr/bin/env bash
# Regenerates docs/budget/pausing.txt, pausing.json and anytime_<workload>.png: the
# pausing policy (synchronous successive halving with pause and resume) at several
# settings against today's default (ASHA on the predicted best, replayed) and Tune's
# HyperBandScheduler / HyperBandForBOHB (driven through their hooks), simulated on the
# budget benchmark's studies: the three recorded tables and the six public Taskset tasks
# (the folder named by $NCP_SEARCH_TASKSET; left out with a note when unset), 20 seeds,
# sequential and 4 in flight, plus small studies (16-24 trials). Checkpoint save and
# restore seconds are measured first on CHECKPOINT_MODELS Keras models per recorded
# table (or taken from an earlier report with CHECKPOINTS_FROM=<pausing.json>).
# Runs under `nice -n 10` and prints the wall time it took.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/budget
mkdir -p "$out"
started=$(date +%s)
checkpoints=(--measure-checkpoints "${CHECKPOINT_MODELS:-5}")
if [ -n "${CHECKPOINTS_FROM:-}" ]; then checkpoints=(--checkpoints-from "$CHECKPOINTS_FROM"); fi
nice -n 10 "${PYTHON:-python}" -m research bench pausing --seeds "${SEEDS:-20}" \
    --concurrency 1 4 --processes "${PROCESSES:-2}" "${checkpoints[@]}" \
    --json "$out/pausing.json" --text "$out/pausing.txt" --plot "$out"
echo "pausing report: wall time $(( $(date +%s) - started )) s"
