"""Run a command under ``/usr/bin/time -v`` and return its wall time and peak RSS."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass


@dataclass
class Measured:
    """Wall-clock seconds and peak resident memory of one command."""

    command: str
    seconds: float
    peak_rss_gib: float


def measure(command: list[str], *, log: str | None = None) -> Measured:
    """Run ``command`` with GNU time; fail loudly (with its output) if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if log:
        with open(log, "a") as handle:
            handle.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(command)}")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    rss = int(match.group(1)) / 2**20 if match else float("nan")
    return Measured(" ".join(command), seconds, rss)
