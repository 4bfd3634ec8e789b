"""The resource-usage line each ``genesel`` command logs last, and reading it back.

Snakemake's benchmark files sample a job's process tree at intervals, so the CPU time of
jobs shorter than the interval is mostly missed (a 45 CPU-second selection job was booked at
4.9). The process itself knows its CPU time exactly: :func:`usage_line` formats
``getrusage`` of the process and its children, the CLI logs it when a command ends, and the
report reads it from each job's log (:func:`read_usage`), falling back to Snakemake's figure.
"""

from __future__ import annotations

import os
import re
import resource
import sys
from pathlib import Path

#: Starts the line; the report searches job logs for it.
USAGE_PREFIX = "resource usage:"
_FIELD = re.compile(r"(cpu_s|wall_s|max_rss_mb)=([0-9.]+)")


def usage_line(wall_seconds: float) -> str:
    """``resource usage: cpu_s=... wall_s=... max_rss_mb=...`` of this process and its children.

    ``cpu_s`` is user + system time since the interpreter started (imports included);
    ``wall_s`` is the command's own wall time (given); ``max_rss_mb`` the larger peak RSS.
    """
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    unit = 1.0 if sys.platform == "darwin" else 1024.0  # ru_maxrss: bytes on macOS, KiB on Linux
    rss_mb = max(own.ru_maxrss, children.ru_maxrss) * unit / 2**20
    return f"{USAGE_PREFIX} cpu_s={cpu:.2f} wall_s={wall_seconds:.2f} max_rss_mb={rss_mb:.0f}"


def read_usage(path: str | os.PathLike[str]) -> dict[str, float] | None:
    """The fields of the last usage line in a log (summed over several: one job may run several commands)."""
    try:
        lines = [
            line
            for line in Path(path).read_text(errors="replace").splitlines()
            if USAGE_PREFIX in line
        ]
    except OSError:
        return None
    if not lines:
        return None
    total: dict[str, float] = {}
    for line in lines:
        for key, value in _FIELD.findall(line):
            total[key] = (
                max(total.get(key, 0.0), float(value))
                if key == "max_rss_mb"
                else total.get(key, 0.0) + float(value)
            )
    return total or None
