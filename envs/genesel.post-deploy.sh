#!/usr/bin/env bash
# Run by Snakemake inside the new envs/genesel.yaml environment: install genesel from
# the repository this file belongs to (dependencies come from the environment file).
set -euo pipefail
python -m pip install --quiet --no-deps "$(dirname "$0")/.."
