"""The report's tables: runs and curves as text cells, one column per panel size."""

from __future__ import annotations

import pandas as pd

from genesel.report.headline import genes_text


def match_table(matches: pd.DataFrame) -> pd.DataFrame:
    """Each method's panel size matching the landmark panel, in words and numbers."""
    rows = []
    for _, row in matches.iterrows():
        rows.append(
            {
                "decoder": row["decoder"],
                "method": row["method"],
                "genes to reach the landmarks": genes_text(row),
                "in words": row["verdict"] + ("" if row["monotone"] else " (curve not monotone)"),
                "landmarks": f"{int(row['landmark_genes'])} genes, {row['landmark_error']:.4g} [{row['landmark_low']:.4g}, {row['landmark_high']:.4g}]",
            }
        )
    return pd.DataFrame(rows)


def by_size(
    frame: pd.DataFrame, values: str, *, aggfunc: str = "first", index: list[str] | None = None
) -> pd.DataFrame:
    """``values`` with one row per (decoder,) method and one column ``K=<size>`` per panel size."""
    table = frame.pivot_table(
        index=index or ["decoder", "method"], columns="n_genes", values=values, aggfunc=aggfunc
    )
    table.columns = [f"K={k}" for k in table.columns]
    return table


def random_table(versus_random: pd.DataFrame) -> pd.DataFrame:
    """Each method against the random panels of its size: verdict, difference and interval."""
    cells = versus_random.assign(
        cell=[
            f"{v}: {d:+.3g} [{lo:+.3g}, {hi:+.3g}]"
            for v, d, lo, hi in zip(
                versus_random["verdict"],
                versus_random["difference"],
                versus_random["low"],
                versus_random["high"],
                strict=True,
            )
        ]
    )
    return by_size(cells, "cell").fillna("")


def unconverged_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The (method, n_genes, seed) of the runs whose selector did not converge."""
    if "converged" not in runs:
        return pd.DataFrame()
    flagged = runs[runs["converged"].astype(str).str.lower().isin(["false", "0"])]
    return flagged[["method", "n_genes", "seed"]].drop_duplicates().reset_index(drop=True)


def curve_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Each curve point's mean and interval, by panel size."""
    cells = curves.assign(
        cell=[
            f"{m:.4g} [{lo:.4g}, {hi:.4g}]"
            for m, lo, hi in zip(curves["mean"], curves["low"], curves["high"], strict=True)
        ]
    )
    return by_size(cells, "cell").fillna("")


def ridge_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The linear decoder's ridge penalty (median over seeds), by panel size."""
    if "ridge" not in runs:
        return pd.DataFrame()
    linear = runs[(runs["decoder"] == "linear") & runs["ridge"].notna()]
    return by_size(linear, "ridge", aggfunc="median", index=["method"])


def all_gene_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The MSE over all genes (mean over seeds), by panel size."""
    if "mse" not in runs:
        return pd.DataFrame()
    return by_size(runs, "mse", aggfunc="mean").round(4)


def overlap_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Landmark genes in the panels (first decoder's curves), by panel size."""
    first_decoder = sorted(curves["decoder"].unique())[0]
    subset = curves[curves["decoder"] == first_decoder]
    return by_size(subset, "landmark_overlap", index=["method"]).round(1)
