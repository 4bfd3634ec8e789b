"""Helpers shared by the benchmark scripts: machine description and recording to docs."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import resource
import shlex
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine() -> str:
    """One line naming the machine: CPU model, cores, memory and GPU if any."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    text = f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM"
    try:
        import torch

        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text


def commit() -> str:
    """Short hash of the checked-out commit (with ``+dirty`` for local changes)."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, in GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def record(title: str, table: str, *, notes: str = "", path: Path = DOCS) -> None:
    """Append a dated result block (machine, commit, command, table) to docs/benchmarks.md."""
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = f"\n### {title} ({stamp})\n\n- machine: {machine()}\n- commit: {commit()}\n- command: `{command}`\n\n{table.strip()}\n"
    if notes:
        block += f"\n{notes.strip()}\n"
    if not path.exists():
        path.write_text("# Benchmarks\n")
    with path.open("a") as handle:
        handle.write(block)


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Render dicts as a markdown table."""
    if not rows:
        return ""
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [
            f"{row.get(c):.4g}" if isinstance(row.get(c), float) else str(row.get(c, ""))
            for c in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
