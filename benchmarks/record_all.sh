#!/usr/bin/env bash
# Records the three workloads' tables (resumable: rerun to continue). ~45 min on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
for name in digits_mlp fashion_cnn fashion_select; do
  python -m research record "configs/record_${name}.yaml" --out "benchmarks/tables/${name}.jsonl"
done
