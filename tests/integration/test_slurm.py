"""The workflow on a real single-node SLURM cluster (tests/integration/slurm_check.sh).

Skipped unless GENESEL_SLURM_CHECK=1: the check starts munged, slurmctld and slurmd on this
machine (root and Debian's slurm-wlm and munge packages needed) and takes a few minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("slurm_check.sh")

pytestmark = pytest.mark.skipif(
    os.environ.get("GENESEL_SLURM_CHECK") != "1",
    reason="set GENESEL_SLURM_CHECK=1 to start a SLURM cluster on this machine and run the workflow on it",
)


def test_workflow_on_slurm_equals_local_run() -> None:
    env = {**os.environ, "GENESEL_PYTHON": os.environ.get("GENESEL_PYTHON", sys.executable)}
    result = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=1800, env=env
    )
    output = result.stdout + result.stderr
    print(output)  # shown with pytest -rP
    assert result.returncode == 0, output[-6000:]
    assert output.rstrip().endswith("SLURM check: PASS"), output[-6000:]
