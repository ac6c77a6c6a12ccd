#!/usr/bin/env bash
# Regenerates docs/ray/replay.{txt,json} and docs/ray/ray_<table>.png from the committed
# tables: recorded runs replayed through real Ray Tune runs (one ray.init, 2 CPUs,
# 4 concurrent trials), 10 seeds (orders), NCPScheduler beside Tune's built-in schedulers.
# About an hour on 2 busy CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/ray
mkdir -p "$out"
"${PYTHON:-python}" -m benchmarks.ray_replay --table benchmarks/tables/digits_mlp.jsonl \
    benchmarks/tables/fashion_cnn.jsonl benchmarks/tables/fashion_select.jsonl \
    --seeds 10 --concurrency 4 --json "$out/replay.json" --plot "$out" | tee "$out/replay.txt"
