"""Panel-size curves: error against panel size per method and decoder, and the landmark match.

The CAE paper's headline compares every method with the L1000 landmark panel: the
smallest panel whose test error matches the landmarks' tells how many genes a method
saves. :func:`match_landmarks` finds it on the mean curve, interpolating linearly
between the panel sizes that were run.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from genesel.errors import ConfigError

#: The method whose panel is the reference point.
REFERENCE_METHOD = "landmarks"

CURVE_COLUMNS = (
    "method",
    "decoder",
    "n_genes",
    "n_seeds",
    "mean",
    "std",
    "min",
    "max",
    "landmark_overlap",
)


def summarize_curves(runs: pd.DataFrame, *, metric: str) -> pd.DataFrame:
    """Mean and spread over seeds of ``metric`` for every method, decoder and panel size.

    Parameters
    ----------
    runs
        One row per evaluated model with ``method``, ``decoder``, ``n_genes``, ``seed`` and
        the ``metric`` column (and optionally ``landmark_overlap``).
    metric
        Column to summarise, e.g. the test MSE in standardised units.

    Returns
    -------
    One row per (method, decoder, n_genes) with ``n_seeds``, ``mean``, ``std`` (ddof=1, 0
    for a single seed), ``min``, ``max`` and the mean ``landmark_overlap``, sorted.
    """
    if metric not in runs:
        numeric = [c for c in runs.columns if pd.api.types.is_numeric_dtype(runs[c]) and c not in ("n_genes", "seed")]
        raise ConfigError(f"metric {metric!r} is not in the results; available: {', '.join(numeric)}")
    frame = runs.assign(_value=pd.to_numeric(runs[metric], errors="coerce"))
    if "landmark_overlap" not in frame:
        frame["landmark_overlap"] = math.nan
    grouped = frame.groupby(["method", "decoder", "n_genes"], sort=True)
    summary = grouped.agg(
        n_seeds=("_value", "count"),
        mean=("_value", "mean"),
        std=("_value", "std"),
        min=("_value", "min"),
        max=("_value", "max"),
        landmark_overlap=("landmark_overlap", "mean"),
    ).reset_index()
    summary["std"] = summary["std"].fillna(0.0)
    return summary[list(CURVE_COLUMNS)]


def landmark_reference(curves: pd.DataFrame, decoder: str) -> tuple[int, float] | None:
    """Panel size and mean error of the landmark panel for ``decoder`` (``None`` if not run)."""
    rows = curves[(curves["method"] == REFERENCE_METHOD) & (curves["decoder"] == decoder)]
    if not len(rows):
        return None
    row = rows.sort_values("n_genes").iloc[-1]
    return int(row["n_genes"]), float(row["mean"])


def matching_size(sizes: np.ndarray, errors: np.ndarray, target: float) -> tuple[float | None, str]:
    """Smallest panel size whose (interpolated) error is at most ``target``.

    Parameters
    ----------
    sizes
        Panel sizes, ascending.
    errors
        Mean error at each size.
    target
        The error to match.

    Returns
    -------
    The size (``None`` when no size reaches ``target``) and how it was found:
    ``"interpolated"``, ``"at or below the smallest size run"`` or ``"not reached"``.
    """
    sizes = np.asarray(sizes, dtype=float)
    errors = np.asarray(errors, dtype=float)
    reached = np.flatnonzero(errors <= target)
    if reached.size == 0:
        return None, "not reached"
    first = int(reached[0])
    if first == 0:
        return float(sizes[0]), "at or below the smallest size run"
    k0, k1, e0, e1 = sizes[first - 1], sizes[first], errors[first - 1], errors[first]
    return float(k0 + (e0 - target) * (k1 - k0) / (e0 - e1)), "interpolated"


def match_landmarks(curves: pd.DataFrame) -> pd.DataFrame:
    """For each method and decoder, the smallest panel matching the landmarks' error.

    Returns
    -------
    One row per (decoder, method) other than the landmarks: ``landmark_genes``,
    ``landmark_error``, ``matching_genes`` (interpolated, NaN when not reached),
    ``saving_pct`` (100 * (1 - matching / landmark genes)), ``how`` and ``largest_size``.
    Empty when the landmark panel was not evaluated.
    """
    rows = []
    for decoder in sorted(curves["decoder"].unique()):
        reference = landmark_reference(curves, decoder)
        if reference is None:
            continue
        landmark_genes, landmark_error = reference
        subset = curves[(curves["decoder"] == decoder) & (curves["method"] != REFERENCE_METHOD)]
        for method, curve in subset.groupby("method", sort=True):
            curve = curve.sort_values("n_genes")
            size, how = matching_size(curve["n_genes"].to_numpy(), curve["mean"].to_numpy(), landmark_error)
            rows.append(
                {
                    "decoder": decoder,
                    "method": method,
                    "landmark_genes": landmark_genes,
                    "landmark_error": landmark_error,
                    "matching_genes": math.nan if size is None else size,
                    "saving_pct": math.nan if size is None else 100.0 * (1.0 - size / landmark_genes),
                    "how": how,
                    "largest_size": int(curve["n_genes"].max()),
                }
            )
    columns = ["decoder", "method", "landmark_genes", "landmark_error", "matching_genes", "saving_pct", "how", "largest_size"]
    return pd.DataFrame(rows, columns=columns)


def describe_match(row: pd.Series) -> str:
    """One sentence describing a row of :func:`match_landmarks`."""
    method, decoder, landmarks = row["method"], row["decoder"], int(row["landmark_genes"])
    if row["how"] == "not reached":
        return f"{method} ({decoder} decoder) does not reach the {landmarks} landmarks' error up to {int(row['largest_size'])} genes."
    size = float(row["matching_genes"])
    prefix = "at most " if row["how"] != "interpolated" else "about "
    saving = float(row["saving_pct"])
    change = f"{saving:.0f}% fewer genes" if saving >= 0 else f"{-saving:.0f}% more genes"
    return f"{method} ({decoder} decoder) matches the {landmarks} landmarks' error with {prefix}{size:.0f} genes ({change})."


def summarize_matches(matches: pd.DataFrame) -> list[str]:
    """Headline sentences: per decoder, the methods that match the landmarks (fewest genes
    first), then one sentence naming those that do not within the sizes run."""
    sentences = []
    for decoder, rows in matches.groupby("decoder", sort=True):
        reached = rows[rows["how"] != "not reached"].sort_values("matching_genes")
        sentences += [describe_match(row) for _, row in reached.iterrows()]
        missing = rows[rows["how"] == "not reached"]
        if len(missing):
            landmarks = int(missing["landmark_genes"].iloc[0])
            largest = int(missing["largest_size"].max())
            verb = "does" if len(missing) == 1 else "do"
            sentences.append(
                f"With the {decoder} decoder, {', '.join(missing['method'])} {verb} not reach the {landmarks} landmarks' "
                f"error within the panel sizes run (up to {largest} genes)."
            )
    return sentences
