"""Runtime summaries: wall time per workflow rule and time per training step per method."""

from __future__ import annotations

import numpy as np
import pandas as pd


def rule_times(benchmarks: pd.DataFrame) -> pd.DataFrame:
    """Per rule: number of jobs, total and mean wall seconds, total CPU seconds, peak memory (MB).

    Parameters
    ----------
    benchmarks
        Output of :func:`genesel.report.aggregate.read_benchmarks`.
    """
    columns = [
        "rule",
        "jobs",
        "total_seconds",
        "mean_seconds",
        "max_seconds",
        "cpu_seconds",
        "peak_rss_mb",
    ]
    if benchmarks.empty:
        return pd.DataFrame(columns=columns)
    summary = (
        benchmarks.groupby("rule", sort=True)
        .agg(
            jobs=("seconds", "size"),
            total_seconds=("seconds", "sum"),
            mean_seconds=("seconds", "mean"),
            max_seconds=("seconds", "max"),
            cpu_seconds=("cpu_seconds", "sum"),
            peak_rss_mb=("max_rss_mb", "max"),
        )
        .reset_index()
    )
    return summary[columns]


def step_times(histories: pd.DataFrame) -> pd.DataFrame:
    """Per trained method: median milliseconds per optimiser step and seconds per epoch.

    Uses the ``steps_per_second`` and ``seconds`` columns of the training histories.
    """
    columns = ["method", "runs", "epochs", "ms_per_step", "seconds_per_epoch"]
    if histories.empty or "steps_per_second" not in histories:
        return pd.DataFrame(columns=columns)
    frame = histories.assign(
        ms_per_step=1000.0
        / pd.to_numeric(histories["steps_per_second"], errors="coerce").replace(0, np.nan),
        seconds_per_epoch=pd.to_numeric(
            histories.get("seconds", pd.Series(np.nan, index=histories.index)), errors="coerce"
        ),
    )
    frame = frame.dropna(subset=["ms_per_step"])
    if frame.empty:
        return pd.DataFrame(columns=columns)
    summary = (
        frame.groupby("method", sort=True)
        .agg(
            runs=(
                "n_genes",
                lambda s: int(frame.loc[s.index, ["n_genes", "seed"]].drop_duplicates().shape[0]),
            ),
            epochs=("epoch", "size"),
            ms_per_step=("ms_per_step", "median"),
            seconds_per_epoch=("seconds_per_epoch", "median"),
        )
        .reset_index()
    )
    return summary[columns]
