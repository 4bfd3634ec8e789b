"""The report's transfer section: panels designed on one data set, imputing another.

:func:`transfer_curve` fits the linear decoder (validated ridge) on the run's store for each
panel, scores it on the run's test split and on another store's (genes matched by id, then
symbol; see :func:`genesel.evaluate.evaluate_model`), and adds the other store's own
landmark panel, fitted and scored on that store, as the reference a lab would otherwise use.
The workflow's ``transfer`` rule writes the table; ``genesel report --transfer`` draws it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from genesel.errors import InputFileError
from genesel.evaluate import DEFAULT_STANDARDIZE, HEADLINE_METRIC, evaluate_model
from genesel.impute import fit_imputer
from genesel.report.figures import curve_line, figure_png
from genesel.report.html import ReportSection
from genesel.report.layout import PANEL_PATTERN
from genesel.store import Store

logger = logging.getLogger(__name__)

#: ``method`` of the reference row: the other data set's landmark panel, fitted on that data set.
OWN_LANDMARKS = "landmarks (own)"
#: Columns of the transfer table.
TRANSFER_COLUMNS = (
    "method", "n_genes", "seed", "mse_imputed", "mse_imputed_low", "mse_imputed_high", "mse_imputed_source",
    "mse_mean_predictor", "n_matched", "n_missing_targets", "matched_by", "standardize", "missing_panel_genes",
)  # fmt: skip


def transfer_curve(
    source: Store,
    target: Store,
    panels: Sequence[str | os.PathLike[str]],
    *,
    standardize: str = DEFAULT_STANDARDIZE,
    split: str = "test",
    own_landmarks: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """Score panels designed on ``source`` on ``target``, with the linear decoder fitted on ``source``.

    Parameters
    ----------
    source
        The store the panels were selected on (the run's store); the decoders are fitted on its train split.
    target
        The other data set, a store with its own splits.
    panels
        ``panel.tsv`` files; method, size and seed are read from their paths
        (``panels/<method>/k<n>/seed<s>/panel.tsv``), else from their position.
    standardize
        ``"model"``: the source's train statistics; ``"data"``: the target's.
    split
        Split of both stores that is scored.
    own_landmarks
        Add the target's landmark panel, fitted on the target's train split (skipped when the
        target flags no landmark genes), scored on the genes the target shares with the
        source (the genes the transferred panels are scored on; no interval when that is a
        subset of the target's genes).
    progress
        Show progress bars.

    Returns
    -------
    One row per panel (see :data:`TRANSFER_COLUMNS`): the imputed-gene MSE on the target
    with its bootstrap interval, on the source's own split (``mse_imputed_source``), and
    how the genes were matched. A panel with genes the target lacks gets no error on the
    target and names them in ``missing_panel_genes`` (the curve goes on without it).
    """
    rows = []
    for position, panel in enumerate(panels):
        match = PANEL_PATTERN.search(Path(panel).as_posix())
        keys = (
            {
                "method": match["method"],
                "n_genes": int(match["n_genes"]),
                "seed": int(match["seed"]),
            }
            if match
            else {"method": f"panel{position}", "n_genes": None, "seed": 0}
        )
        model = fit_imputer(source, panel, decoder="linear", progress=progress)
        on_source = evaluate_model(source, model, split=split, progress=progress).metrics
        try:
            on_target = evaluate_model(
                target, model, split=split, standardize=standardize, progress=progress
            ).metrics
        except InputFileError as error:
            # a panel gene the other data set lacks: recorded, not fatal to the curve
            if "panel genes" not in error.problem:
                raise
            logger.warning("%s: cannot transfer: %s", panel, error.problem)
            rows.append(
                keys
                | {
                    "n_genes": model.n_genes,
                    "mse_imputed_source": on_source[HEADLINE_METRIC],
                    "standardize": standardize,
                    "missing_panel_genes": error.problem,
                }
            )
            continue
        rows.append(
            _row(
                keys | {"n_genes": model.n_genes},
                on_target,
                standardize,
                source=on_source[HEADLINE_METRIC],
            )
        )
        logger.info(
            "%s k=%d seed %d: %s %.4g on the source, %.4g on the target",
            keys["method"],
            model.n_genes,
            keys["seed"],
            HEADLINE_METRIC,
            on_source[HEADLINE_METRIC],
            on_target[HEADLINE_METRIC],
        )
    landmarks = target.gene_ids[target.landmark_mask]
    if own_landmarks and landmarks.size:
        model = fit_imputer(
            target, landmarks.astype(str).tolist(), decoder="linear", progress=progress
        )
        evaluation = evaluate_model(
            target, model, split=split, standardize=standardize, progress=progress
        )
        own = _row(
            {"method": OWN_LANDMARKS, "n_genes": model.n_genes, "seed": 0},
            evaluation.metrics,
            standardize,
            source=np.nan,
        )
        shared = evaluation.per_gene.index.isin(source.gene_ids)
        if (
            not shared.all()
        ):  # score it on the genes the transferred panels are scored on: those both data sets have
            imputed = shared & ~evaluation.per_gene["measured"].to_numpy(bool)
            own |= {
                "mse_imputed": float(evaluation.per_gene.loc[imputed, "mse"].mean()),
                "mse_imputed_low": np.nan,
                "mse_imputed_high": np.nan,
            }
            own |= {"n_matched": int(shared.sum()), "n_missing_targets": int((~shared).sum())}
        rows.append(own)
    return pd.DataFrame(rows, columns=list(TRANSFER_COLUMNS))


def _row(keys: dict, metrics: dict, standardize: str, *, source: float) -> dict:
    record = metrics.get("transfer") or {}
    low, high = metrics["mse_imputed_ci"]
    return keys | {
        "mse_imputed": metrics[HEADLINE_METRIC],
        "mse_imputed_low": low,
        "mse_imputed_high": high,
        "mse_imputed_source": source,
        "mse_mean_predictor": metrics["mse_mean_predictor"],
        # genes scored; metrics written before n_vars existed called them n_genes
        "n_matched": record.get("n_matched", metrics.get("n_vars", metrics.get("n_genes"))),
        "n_missing_targets": record.get("n_missing_targets", 0),
        "matched_by": record.get("matched_by", "gene_id"),
        "standardize": standardize,
        "missing_panel_genes": "",
    }


def read_transfer(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a table written from :func:`transfer_curve`."""
    return pd.read_csv(path, sep="\t")


def transfer_section(table: pd.DataFrame, *, name: str | None = None) -> ReportSection:
    """The report section: the curve on the other data set, against its own landmark panel."""
    missing = (
        table["missing_panel_genes"].fillna("").astype(str)
        if "missing_panel_genes" in table
        else pd.Series("", index=table.index)
    )
    lacking = table[missing != ""]
    table = table[missing == ""]
    designed = table[table["method"] != OWN_LANDMARKS]
    curve = (
        designed.groupby(["method", "n_genes"])
        .agg(mean=("mse_imputed", "mean"), low=("mse_imputed_low", "mean"), high=("mse_imputed_high", "mean"),
             source=("mse_imputed_source", "mean"), seeds=("seed", "nunique"))
        .reset_index()
    )  # fmt: skip
    own = table[table["method"] == OWN_LANDMARKS]
    figure = Figure(figsize=(7.5, 4.4), layout="constrained")
    ax = figure.subplots()
    for method, line in curve.groupby("method"):
        curve_line(ax, line.sort_values("n_genes"), str(method))
    if len(own):
        reference = own.iloc[0]
        ax.axhline(reference["mse_imputed"], color="black", linestyle="--", linewidth=1)
        ax.plot(
            [reference["n_genes"]],
            [reference["mse_imputed"]],
            marker="*",
            markersize=12,
            color="black",
            linestyle="none",
            label=f"its own landmarks (k={int(reference['n_genes'])})",
        )
    ax.set_xlabel("panel size (genes)")
    ax.set_ylabel("imputed-gene test MSE on the other data set")
    if len(curve) or len(own):
        ax.legend(frameon=False, fontsize="small")
    first = (
        table.iloc[0]
        if len(table)
        else pd.Series(
            {"matched_by": "-", "n_matched": 0, "n_missing_targets": 0, "standardize": "model"}
        )
    )
    where = f" ({name})" if name else ""
    paragraphs = [
        (
            f"The panels of this run, each with a linear decoder fitted on this run's train split, imputing the test split of "
            f"another data set{where}. Genes are matched by {first['matched_by']}; {int(first['n_matched'])} of the model's "
            f"genes were found there ({int(first['n_missing_targets'])} target genes missing, left out of the scores). "
            f"Standardised with {'this run' if first['standardize'] == 'model' else 'the other data set'}'s train statistics. "
            "Bars: 95% bootstrap intervals over the other data set's test samples (mean over seeds)."
        ),
    ]
    if len(own):
        paragraphs.append(
            "The star and dashed line: the other data set's own landmark panel with a decoder fitted on its own train split, "
            "what a lab measuring the landmarks would get without this run's data."
        )
    table_shown = curve.rename(
        columns={
            "mean": "on the other data",
            "source": "on this run's data",
            "low": "low",
            "high": "high",
        }
    )
    if len(own):
        table_shown = pd.concat(
            [table_shown, pd.DataFrame([{"method": OWN_LANDMARKS, "n_genes": int(own.iloc[0]["n_genes"]), "on the other data": own.iloc[0]["mse_imputed"],
                                         "low": own.iloc[0]["mse_imputed_low"], "high": own.iloc[0]["mse_imputed_high"], "seeds": 1}])],
            ignore_index=True,
        )  # fmt: skip
    tables = {"Imputed-gene test MSE, mean over seeds [95% interval]:": table_shown}
    if len(lacking):
        tables["Panels that could not be transferred (the other data set lacks panel genes):"] = (
            lacking[["method", "n_genes", "seed", "missing_panel_genes"]]
        )
    return ReportSection(
        "Transfer to another data set",
        paragraphs=paragraphs,
        figures={"transfer": figure_png(figure)},
        tables=tables,
    )
