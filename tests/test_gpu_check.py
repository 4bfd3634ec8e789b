"""The GPU check's CPU dry run (benchmarks/gpu_check.sh --cpu --tiny) runs every part."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_cpu_dry_run(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [
            "bash",
            str(ROOT / "benchmarks" / "gpu_check.sh"),
            "--cpu",
            "--tiny",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = run.stdout[run.stdout.index("| part |") :]
    for part in ("cae K=20", "ipcae K=20", "loader", "moments", "MLP decoder 3 x 64"):
        assert part in table, part
    assert "FAILED" not in table
