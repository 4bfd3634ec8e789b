#!/usr/bin/env bash
# The GPU check (see benchmarks/gpu_check.py and docs/benchmarks.md "GPU check"):
#   bash benchmarks/gpu_check.sh               # GEO scale on one GPU, under 8 minutes
#   bash benchmarks/gpu_check.sh --cpu --tiny  # CPU dry run, seconds
# Exits non-zero when any part failed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" benchmarks/gpu_check.py "$@"
