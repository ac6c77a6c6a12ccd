#!/usr/bin/env bash
# Regenerates docs/optuna/ from the committed tables: recorded runs replayed through real
# Optuna studies, 10 seeds (orders), every built-in pruner beside NCPPruner variants.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/optuna
mkdir -p "$out"
python -m research bench optuna --table benchmarks/tables/digits_mlp.jsonl \
    benchmarks/tables/fashion_cnn.jsonl benchmarks/tables/fashion_select.jsonl \
    --seeds 10 --json "$out/replay.json" --plot "$out" | tee "$out/replay.txt"
for name in digits_mlp fashion_cnn fashion_select; do
  python -m research bench sampler --table "benchmarks/tables/$name.jsonl" \
      --config "configs/record_$name.yaml" --seeds 10 --trials 40 \
      --json "$out/sampler_$name.json" | tee "$out/sampler_$name.txt"
done
python benchmarks/optuna_prune_latency.py --sizes 100 1000 10000 \
    --json "$out/prune_latency.json" | tee "$out/prune_latency.txt"
