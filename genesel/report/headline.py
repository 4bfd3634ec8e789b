"""The answer of a run: how many genes match the landmark panel, with intervals, in words.

For each method the matching size is where its curve first crosses the landmark panel's
error going down (linear interpolation between the sizes run), and only where the curve is
below the mean predictor's error there: a curve that is above the target, or that only
touches it while rising, matches nothing. The same rule applied to every bootstrap
replicate of the curves (paired: the same resampled test samples for all methods and the
landmarks) gives the matching size's interval. A method *needs fewer genes* than the
landmarks only when the whole interval lies below the landmark count, *more* when it lies
above, and ties otherwise; two methods tie when their intervals overlap.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from genesel.report.curves import Curves
from genesel.report.uncertainty import interval
from genesel.sweep_plan import LANDMARK_METHOD, RANDOM_METHOD

#: ``how`` values of :func:`matching_size`.
HOW_INTERPOLATED = "interpolated"
HOW_BELOW_SMALLEST = "at or below the smallest size run"
HOW_NOT_REACHED = "not reached"

MATCH_COLUMNS = (
    "decoder",
    "method",
    "landmark_genes",
    "landmark_error",
    "landmark_low",
    "landmark_high",
    "matching_genes",
    "genes_low",
    "genes_high",
    "how",
    "monotone",
    "verdict",
    "largest_size",
)


def matching_size(
    sizes: ArrayLike, errors: ArrayLike, target: float, *, ceiling: float = math.inf
) -> tuple[float | None, str]:
    """Smallest panel size whose error reaches ``target`` while the curve goes down.

    Parameters
    ----------
    sizes
        Panel sizes, ascending.
    errors
        Error at each size.
    target
        The error to match (the landmark panel's).
    ceiling
        Errors at or above this (the mean predictor's) never count as a match.

    Returns
    -------
    The size (``None`` when not reached) and how it was found: :data:`HOW_INTERPOLATED`,
    :data:`HOW_BELOW_SMALLEST` or :data:`HOW_NOT_REACHED`.
    """
    all_sizes = np.asarray(sizes, dtype=float)
    all_errors = np.asarray(errors, dtype=float)
    known = np.isfinite(all_errors)  # a failed run leaves a gap, not a break in the curve
    size_at, error_at = all_sizes[known], all_errors[known]
    for i, error in enumerate(error_at):
        if not (error <= target and error < ceiling):
            continue
        if i == 0:
            return float(size_at[0]), HOW_BELOW_SMALLEST
        previous = error_at[i - 1]
        if previous > target:  # crossing downwards between sizes i-1 and i
            k0, k1 = size_at[i - 1], size_at[i]
            return float(
                k0 + (previous - target) * (k1 - k0) / (previous - error)
            ), HOW_INTERPOLATED
    return None, HOW_NOT_REACHED


def _landmark(curves: Curves, decoder: str) -> tuple[int, float, np.ndarray | None] | None:
    table = curves.table
    rows = table[(table["method"] == LANDMARK_METHOD) & (table["decoder"] == decoder)]
    if not len(rows):
        return None
    row = rows.sort_values("n_genes").iloc[-1]
    return (
        int(row["n_genes"]),
        float(row["mean"]),
        curves.replicates.get((LANDMARK_METHOD, decoder, int(row["n_genes"]))),
    )


def verdict(
    genes: float | None, low: float, high: float, landmark_genes: int, largest: int, how: str
) -> str:
    """Plain words for a matching size and its interval."""
    if genes is None:
        return f"not reached within {largest} genes"
    prefix = (
        "at least " if how == HOW_BELOW_SMALLEST else ""
    )  # the match is at or below the smallest size
    if high < landmark_genes:
        saving = landmark_genes - genes
        return (
            f"{prefix}{saving:.0f} fewer genes than the landmarks"
            if saving > 0
            else "fewer genes than the landmarks"
        )
    if low > landmark_genes:
        extra = genes - landmark_genes
        return (
            f"needs {extra:.0f} more genes than the landmarks"
            if extra > 0
            else "needs more genes than the landmarks"
        )
    return "tie with the landmarks (the interval includes their size)"


def match_landmarks(curves: Curves) -> pd.DataFrame:
    """For each decoder and method, the panel size matching the landmarks' error, with its interval.

    Returns
    -------
    One row per (decoder, method) other than the landmarks, columns :data:`MATCH_COLUMNS`;
    ``genes_high`` is ``inf`` when more than 2.5 % of the replicates do not reach the
    landmarks within the sizes run. Empty when the landmark panel was not evaluated.
    """
    rows = []
    table = curves.table
    for decoder in sorted(table["decoder"].unique()):
        reference = _landmark(curves, decoder)
        if reference is None:
            continue
        landmark_genes, landmark_error, landmark_reps = reference
        lm_low, lm_high = (
            interval(landmark_reps)
            if landmark_reps is not None
            else (landmark_error, landmark_error)
        )
        subset = table[(table["decoder"] == decoder) & (table["method"] != LANDMARK_METHOD)]
        for method, curve in subset.groupby("method", sort=True):
            curve = curve.sort_values("n_genes")
            sizes = curve["n_genes"].to_numpy()
            ceiling = (
                float(np.nanmin(curve["mean_predictor"]))
                if curve["mean_predictor"].notna().any()
                else math.inf
            )
            genes, how = matching_size(
                sizes, curve["mean"].to_numpy(), landmark_error, ceiling=ceiling
            )
            low = high = math.nan if genes is None else genes
            reps = [curves.replicates.get((method, decoder, int(k))) for k in sizes]
            known_reps = [r for r in reps if r is not None]
            if landmark_reps is not None and len(known_reps) == len(reps):
                stacked = np.vstack(known_reps)  # sizes x B
                found = [
                    matching_size(sizes, stacked[:, b], landmark_reps[b], ceiling=ceiling)[0]
                    for b in range(stacked.shape[1])
                ]
                low, high = interval(np.array([math.inf if f is None else f for f in found]))
            monotone = bool(np.all(np.diff(curve["mean"].to_numpy()) <= 0))
            rows.append(
                {
                    "decoder": decoder,
                    "method": method,
                    "landmark_genes": landmark_genes,
                    "landmark_error": landmark_error,
                    "landmark_low": lm_low,
                    "landmark_high": lm_high,
                    "matching_genes": math.nan if genes is None else genes,
                    "genes_low": low,
                    "genes_high": high,
                    "how": how,
                    "monotone": monotone,
                    "verdict": verdict(genes, low, high, landmark_genes, int(sizes.max()), how),
                    "largest_size": int(sizes.max()),
                }
            )
    return pd.DataFrame(rows, columns=list(MATCH_COLUMNS))


def genes_text(row: pd.Series) -> str:
    """``"about 91 genes (95% interval 80-103)"`` for a row of :func:`match_landmarks`."""
    genes = row["matching_genes"]
    if not np.isfinite(genes):
        return "not reached"
    prefix = "at most " if row["how"] == HOW_BELOW_SMALLEST else "about "
    high = (
        "more than the sizes run"
        if not np.isfinite(row["genes_high"])
        else f"{row['genes_high']:.0f}"
    )
    low = "" if not np.isfinite(row["genes_low"]) else f"{row['genes_low']:.0f}"
    return f"{prefix}{genes:.0f} genes (95% interval {low}-{high})"


def headline(matches: pd.DataFrame, curves: Curves, *, decoder: str) -> str:
    """The one sentence of the report for ``decoder``: who reaches the landmarks with fewest genes."""
    rows = matches[matches["decoder"] == decoder]
    if rows.empty:
        return f"With the {decoder} decoder, the landmark panel was not evaluated, so no method is compared with it."
    first = rows.iloc[0]
    landmarks = int(first["landmark_genes"])
    target = (
        f"the {landmarks} L1000 landmarks' imputed-gene test MSE ({first['landmark_error']:.3g}, "
        f"95% interval {first['landmark_low']:.3g}-{first['landmark_high']:.3g})"
    )
    reached = rows[rows["matching_genes"].notna()].sort_values("matching_genes")
    if reached.empty:
        table = curves.table
        largest = table[(table["decoder"] == decoder) & (table["method"] != LANDMARK_METHOD)]
        best = (
            largest.sort_values(["n_genes", "mean"], ascending=[False, True]).iloc[0]
            if len(largest)
            else None
        )
        closest = (
            ""
            if best is None
            else f"; the closest is {best['method']} with {best['mean']:.3g} at {int(best['n_genes'])} genes"
        )
        return f"With the {decoder} decoder, no method reaches {target} within the panel sizes run (up to {int(rows['largest_size'].max())} genes){closest}."
    best = reached.iloc[0]
    tied = [
        row["method"]
        for _, row in reached.iloc[1:].iterrows()
        if _overlap((best["genes_low"], best["genes_high"]), (row["genes_low"], row["genes_high"]))
    ]
    sentence = f"With the {decoder} decoder, {best['method']} reaches {target} with {genes_text(best)}: {best['verdict']}"
    if tied:
        sentence += f"; tied with {', '.join(tied)} (overlapping intervals)"
    if best["method"] == RANDOM_METHOD:
        sentence += "; no selector needs fewer genes than random panels"
    return sentence + "."


def random_comparison(curves: Curves) -> pd.DataFrame:
    """Each method against the random panels of the same size: difference in error with its interval.

    Returns
    -------
    One row per (decoder, method, n_genes) where random panels of that size were run:
    ``difference`` (method minus random, negative = better), ``low``, ``high`` and
    ``verdict`` (``better``, ``worse`` or ``no clear difference``).
    """
    table = curves.table
    rows = []
    for (decoder, k), group in table.groupby(["decoder", "n_genes"], sort=True):
        random_rows = group[group["method"] == RANDOM_METHOD]
        if random_rows.empty:
            continue
        random_point = float(random_rows["mean"].iloc[0])
        random_reps = curves.replicates.get((RANDOM_METHOD, decoder, int(k)))
        for _, row in group[~group["method"].isin([RANDOM_METHOD, LANDMARK_METHOD])].iterrows():
            difference = float(row["mean"]) - random_point
            reps = curves.replicates.get((row["method"], decoder, int(k)))
            low, high = (
                (difference, difference)
                if reps is None or random_reps is None
                else interval(reps - random_reps)
            )
            word = "better" if high < 0 else "worse" if low > 0 else "no clear difference"
            rows.append(
                {
                    "decoder": decoder,
                    "method": row["method"],
                    "n_genes": int(k),
                    "difference": difference,
                    "low": low,
                    "high": high,
                    "verdict": word,
                }
            )
    return pd.DataFrame(
        rows, columns=["decoder", "method", "n_genes", "difference", "low", "high", "verdict"]
    )


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return bool(a[0] <= b[1] and b[0] <= a[1])
