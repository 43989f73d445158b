#!/bin/sh
# `bbcu reproduce all --budget gpu` on one accelerator in about ten minutes: every row is its own process
# (`bbcu reproduce --list`), PARALLEL of them at a time on the one GPU, then one call writes the tables and
# the claims report from the finished runs. Usage: scripts/reproduce_gpu.sh [TARGET] (default: all).
set -eu
TARGET=${1:-all}
PARALLEL=${PARALLEL:-8}
BBCU=${BBCU:-.venv/bin/bbcu}
mkdir -p runs/reproduce/gpu
"$BBCU" reproduce "$TARGET" --budget gpu --list |
    sed "s#^bbcu #$BBCU #" |
    xargs -P "$PARALLEL" -I{} sh -c '{} > /dev/null 2>> runs/reproduce/gpu/errors.log || echo "failed: {}"'
"$BBCU" reproduce "$TARGET" --budget gpu --report-only
