#!/usr/bin/env bash
# Regenerates docs/prediction/ from the committed tables (no training; ~5 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/prediction
mkdir -p "$out"
ncp-search bench predict --table benchmarks/tables/digits_mlp.jsonl \
    benchmarks/tables/fashion_cnn.jsonl benchmarks/tables/fashion_select.jsonl \
    --k 2 3 25% 50% --boot 1000 --json "$out/report.json" --plot "$out" | tee "$out/report.txt"
ncp-search bench predict --table benchmarks/tables/fashion_cnn.jsonl \
    benchmarks/tables/fashion_select.jsonl benchmarks/tables/digits_mlp.jsonl \
    --mode probe_head --target observer --k 2 3 25% 50% --boot 1000 \
    --json "$out/transfer.json" | tee "$out/transfer.txt"
probes=""
for p in narrow wide deep seed1 seed2 batch2; do probes="$probes ncp_raw@$p xtrial_ncp@$p"; done
ncp-search bench predict --table benchmarks/tables/digits_probes.jsonl --k 2 3 25% 50% \
    --boot 1000 --predictors last best ncp_raw xtrial_curve xtrial_ncp $probes \
    --json "$out/probes.json" | tee "$out/probes.txt"
