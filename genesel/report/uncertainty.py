"""Intervals for every point of the curves: a bootstrap over test samples (and seeds).

Each evaluated model leaves its per-sample imputed-gene errors (``per_sample.tsv``). One
set of bootstrap resamples of the *shared* test samples is applied to every model at
once, so the replicates of two methods are paired (they see the same resampled samples)
and differences between methods get the narrower intervals they deserve. Where a point
is a mean over several seeds (or random panels), each replicate also resamples the seeds.
When a model's per-sample errors cover only a subset of the split (the linear curve at
GEO scale, see :mod:`genesel.impute.sweep`), its replicates are centred on the exact
value and their spread rescaled by ``sqrt(m / n)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: Bootstrap resamples of the report.
RESAMPLES = 1000
#: Coverage of the report's intervals.
LEVEL = 0.95


def run_replicates(
    exact: Sequence[float],
    per_sample: Sequence[pd.Series | None],
    n_split: Sequence[int],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """Bootstrap replicates of each run's mean error (runs x resamples).

    Parameters
    ----------
    exact
        Each run's error over the whole split.
    per_sample
        Each run's per-sample errors indexed by sample id (``None`` when missing: that
        run's replicates all equal ``exact``).
    n_split
        Rows of the split behind ``exact``.
    resamples
        Number of replicates.
    seed
        Seed of the resampling.
    """
    errors = np.asarray(exact, dtype=np.float64)
    replicates = np.repeat(errors[:, None], resamples, axis=1)
    present = {
        i: series for i, series in enumerate(per_sample) if series is not None and len(series) > 1
    }
    if not present:
        return replicates
    first, *others = present.values()
    shared = first.index
    for series in others:
        shared = shared.intersection(series.index, sort=False)
    shared = shared.sort_values()  # the same resamples whatever order the runs come in
    missing = len(per_sample) - len(present)
    if missing:
        logger.warning(
            "%d of %d runs have no per-sample errors: their intervals show no sampling noise",
            missing,
            len(per_sample),
        )
    if len(shared) < 2:
        return replicates
    smallest = min(len(series) for series in present.values())
    if len(shared) < smallest:
        logger.warning(
            "only %d test samples are shared by every run (the smallest run has %d): intervals use those",
            len(shared),
            smallest,
        )
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(
        len(shared), np.full(len(shared), 1.0 / len(shared)), size=resamples
    ).T  # samples x B
    for i, series in present.items():
        values = series.reindex(shared).to_numpy(np.float64)
        means = values @ counts / len(shared)
        factor = math.sqrt(len(shared) / max(int(n_split[i]), len(shared)))
        replicates[i] = errors[i] + (means - values.mean()) * factor
    return replicates


def group_replicates(
    replicates: np.ndarray, members: Sequence[int], *, seed: int = 0
) -> np.ndarray:
    """Replicates of the mean over ``members`` (runs), resampling the members too when several."""
    rows = np.asarray(members, dtype=np.int64)
    if rows.size == 1:
        return replicates[rows[0]]
    rng = np.random.default_rng(seed)
    picks = rows[rng.integers(0, rows.size, size=(replicates.shape[1], rows.size))]  # B x s
    return replicates[picks, np.arange(replicates.shape[1])[:, None]].mean(axis=1)


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap ``values`` (``inf`` entries count as larger than all)."""
    tail = 100 * (1 - level) / 2
    draws = np.asarray(values, dtype=np.float64)
    # no interpolation towards inf
    method: Literal["linear", "inverted_cdf"] = (
        "linear" if np.isfinite(draws).all() else "inverted_cdf"
    )
    low, high = np.percentile(draws, [tail, 100 - tail], method=method)
    return float(low), float(high)


def groups_of(runs: pd.DataFrame, columns: Sequence[str]) -> Mapping[Hashable, list[int]]:
    """Row positions of ``runs`` grouped by ``columns``."""
    positions = pd.Series(
        np.arange(len(runs)), index=pd.MultiIndex.from_frame(runs[list(columns)])
    )
    return {
        key: group.tolist()
        for key, group in positions.groupby(level=list(range(len(columns))), sort=True)
    }
