"""Panel-size curves: error against panel size per method and decoder, with intervals.

Each point is the mean over seeds (or random panels) of a metric, by default the
imputed-gene test MSE; its interval comes from the bootstrap of
:mod:`genesel.report.uncertainty` (test samples, and seeds where there are several). The
``random`` method's panels also give the random-panel band: median and 10-90 % range over
the random panels of each size, the reference a selector must beat.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from genesel.errors import ConfigError
from genesel.report.uncertainty import group_replicates, groups_of, interval, run_replicates
from genesel.sweep_plan import LANDMARK_METHOD, RANDOM_METHOD

#: Quantiles of the random-panel band.
BAND_QUANTILES = (0.1, 0.5, 0.9)

CURVE_COLUMNS = (
    "method",
    "decoder",
    "n_genes",
    "n_seeds",
    "mean",
    "low",
    "high",
    "std",
    "min",
    "max",
    "band_low",
    "band_median",
    "band_high",
    "mean_predictor",
    "landmark_overlap",
)


@dataclass
class Curves:
    """The summarised curves and the bootstrap replicates behind each point.

    Attributes
    ----------
    table
        One row per (method, decoder, n_genes), columns :data:`CURVE_COLUMNS`.
    replicates
        ``(method, decoder, n_genes) -> array`` of bootstrap replicates of the point (paired
        across points: the same resampled test samples).
    """

    table: pd.DataFrame
    replicates: dict[tuple[str, str, int], np.ndarray] = field(default_factory=dict)


def summarize_curves(
    runs: pd.DataFrame, *, metric: str, per_sample: Sequence[pd.Series | None] | None = None
) -> Curves:
    """Mean over seeds, bootstrap interval and spread of ``metric`` per method, decoder and size.

    Parameters
    ----------
    runs
        One row per evaluated model with ``method``, ``decoder``, ``n_genes``, ``seed`` and
        the ``metric`` column (and optionally ``landmark_overlap``, ``mse_mean_predictor``).
    metric
        Column to summarise.
    per_sample
        Each run's per-sample errors of ``metric`` (aligned with ``runs``; ``None`` for a run
        without them), bootstrapped by :func:`genesel.report.uncertainty.run_replicates`;
        without them the interval is the range over seeds.

    Returns
    -------
    :class:`Curves`; ``table`` has ``n_seeds``, ``mean``, ``low``/``high`` (95 % interval),
    ``std`` (ddof=1 over seeds, 0 for one), ``min``/``max`` over seeds, the random band
    (``band_*``, random rows only), the mean predictor's error and the mean ``landmark_overlap``.
    """
    if metric not in runs:
        numeric = [
            c
            for c in runs.columns
            if pd.api.types.is_numeric_dtype(runs[c]) and c not in ("n_genes", "seed")
        ]
        raise ConfigError(
            f"metric {metric!r} is not in the results; available: {', '.join(numeric)}"
        )
    runs = runs.reset_index(drop=True)
    values = pd.to_numeric(runs[metric], errors="coerce").to_numpy(np.float64)
    replicates = None
    if per_sample is not None:
        n_split = (
            pd.to_numeric(runs.get("n_samples", pd.Series(0, index=runs.index)), errors="coerce")
            .fillna(0)
            .astype(int)
        )
        replicates = run_replicates(values, per_sample, n_split.to_numpy())
    overlap = pd.to_numeric(
        runs.get("landmark_overlap", pd.Series(math.nan, index=runs.index)), errors="coerce"
    ).to_numpy()
    predictor = pd.to_numeric(
        runs.get("mse_mean_predictor", pd.Series(math.nan, index=runs.index)), errors="coerce"
    ).to_numpy()
    rows: list[dict[str, Any]] = []
    stored: dict[tuple[str, str, int], np.ndarray] = {}
    for key, members in groups_of(runs, ["method", "decoder", "n_genes"]).items():
        # grouped by three columns: each key is a (method, decoder, n_genes) tuple
        method, decoder, n_genes = cast(tuple[str, str, int], key)
        point = values[members]
        row = {
            "method": method,
            "decoder": decoder,
            "n_genes": int(n_genes),
            "n_seeds": int(np.isfinite(point).sum()),
            "mean": float(np.nanmean(point)),
            "std": float(np.nanstd(point, ddof=1)) if len(members) > 1 else 0.0,
            "min": float(np.nanmin(point)),
            "max": float(np.nanmax(point)),
            "mean_predictor": float(np.nanmean(predictor[members]))
            if np.isfinite(predictor[members]).any()
            else math.nan,
            "landmark_overlap": float(np.nanmean(overlap[members]))
            if np.isfinite(overlap[members]).any()
            else math.nan,
            "band_low": math.nan,
            "band_median": math.nan,
            "band_high": math.nan,
        }
        if replicates is not None:
            # the same seed resample at every size of a method: a replicate curve keeps its seeds
            reps = group_replicates(
                replicates, members, seed=zlib.crc32(f"{method}|{decoder}".encode())
            )
            stored[(method, decoder, int(n_genes))] = reps
            row["low"], row["high"] = interval(reps)
        else:
            row["low"], row["high"] = row["min"], row["max"]
        if method == RANDOM_METHOD and len(members) >= 3:
            row["band_low"], row["band_median"], row["band_high"] = (
                float(q) for q in np.nanquantile(point, BAND_QUANTILES)
            )
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(CURVE_COLUMNS))
    table = table.sort_values(["method", "decoder", "n_genes"], kind="stable").reset_index(
        drop=True
    )
    return Curves(table, stored)


def landmark_reference(curves: pd.DataFrame, decoder: str) -> tuple[int, float] | None:
    """Panel size and mean error of the landmark panel for ``decoder`` (``None`` if not run)."""
    rows = curves[(curves["method"] == LANDMARK_METHOD) & (curves["decoder"] == decoder)]
    if not len(rows):
        return None
    row = rows.sort_values("n_genes").iloc[-1]
    return int(row["n_genes"]), float(row["mean"])
