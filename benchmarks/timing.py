"""Timing helpers: a command under ``/usr/bin/time -v`` (wall time, peak RSS); a cold page cache."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measured:
    """Wall-clock seconds and peak resident memory of one command."""

    command: str
    seconds: float
    peak_rss_gib: float
    cpu_seconds: float = float("nan")


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
    cpu = sum(
        float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", proc.stderr)
    )
    return Measured(" ".join(command), seconds, rss, cpu)


def drop_caches() -> bool:
    """Ask the kernel to drop the page cache (root only); return whether it could."""
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        print("warning: cannot drop caches; timings use the page cache", file=sys.stderr)
        return False
    return True
