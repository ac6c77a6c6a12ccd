#!/usr/bin/env bash
# The CLI front door: a pruned sweep from a config, then its HTML report.
#
#   examples/cli_sweep.sh [CONFIG] [OUTPUT] [extra `ncp-search sweep` options]
#
# e.g. examples/cli_sweep.sh configs/quick.yaml runs/quick --workers 2
# Interrupt it with Ctrl-C at any time; the same command with --resume continues.
set -euo pipefail
config=${1:-configs/quick.yaml}
output=${2:-runs/example}
shift $(( $# > 2 ? 2 : $# ))
ncp-search sweep "$config" --output "$output" "$@"
ncp-search report "$output"
echo "open $output/report.html"
