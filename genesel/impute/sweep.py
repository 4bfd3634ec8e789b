"""Many linear panels in one process, from the gene-by-gene moments: fits and test errors.

Every panel's ridge decoder is solved (its penalty validated, see
:mod:`genesel.impute.ridge`) and scored on the test split from slices of the moments
(:mod:`genesel.moments`), with no pass over the data: the imputed-gene and all-gene MSE,
per-gene MSE and Pearson r are exact. What the moments cannot give is each sample's error,
which the report's bootstrap intervals need; those come from one read of the test rows,
all of them up to ``max_interval_rows`` (default 1,000, so every small data set is
covered exactly) and an evenly spaced subset beyond, whose bootstrap spread is rescaled
to the full test split (``sqrt(m / n)``; 1,000 rows pin the interval's width to a few per
cent). MAE needs every row and is left out of this path.

Per panel the cost is about ``6 K^2 D`` (the validation grid from ``K x K`` products, the
weights, the test sums; see :class:`~genesel.impute.ridge.RidgeProblem`) plus ``2 m K D``
for the per-sample errors of ``m`` rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from genesel.evaluate import (
    HEADLINE_METRIC,
    Evaluation,
    gene_table,
    pearson_from_sums,
    summary_metrics,
)
from genesel.impute.lstsq import solve_validated
from genesel.impute.ridge import DEFAULT_RIDGE, RidgeChoice, prediction_sums
from genesel.moments import Moments
from genesel.store import Store

logger = logging.getLogger(__name__)

#: Test rows whose per-sample errors are computed (all of them up to this many).
DEFAULT_INTERVAL_ROWS = 1000


@dataclass
class LinearPanelResult:
    """The evaluation of one panel's linear decoder and the penalty it used.

    The decoder's weights (``K x D`` each) are not kept: a sweep over many panels would hold
    all of them; :func:`genesel.impute.fit.fit_imputer` writes a panel's model.
    """

    ridge: float
    ridge_choice: RidgeChoice | None
    evaluation: Evaluation


def interval_rows(store: Store, split: str, max_rows: int = DEFAULT_INTERVAL_ROWS) -> np.ndarray:
    """Rows of ``split`` with per-sample errors: all, or ``max_rows`` evenly spaced ones."""
    rows = store.require_split(split)
    if rows.size <= max_rows:
        return rows
    return rows[np.unique(np.linspace(0, rows.size - 1, max_rows).round().astype(np.int64))]


def evaluate_linear_panels(
    store: Store,
    moments: Moments,
    panels: Mapping[Any, np.ndarray],
    *,
    ridge: float | str = DEFAULT_RIDGE,
    split: str = "test",
    max_interval_rows: int = DEFAULT_INTERVAL_ROWS,
    progress: bool = True,
) -> dict[Any, LinearPanelResult]:
    """Fit and score the linear decoder of every panel from ``moments``.

    Parameters
    ----------
    store
        The store the moments were computed from (gene annotation, test rows).
    moments
        Its moments (:func:`genesel.moments.open_moments`).
    panels
        Any keys mapped to column indices of panel genes.
    ridge
        ``"auto"`` (validated per panel) or a fixed penalty.
    split
        Split the errors are measured on.
    max_interval_rows
        Cap on the rows with per-sample errors (see the module docstring).
    progress
        Show a progress bar.

    Returns
    -------
    The same keys mapped to :class:`LinearPanelResult`.
    """
    if split == "validation" and ridge == "auto":
        logger.warning(
            "scoring on the validation split, which also chose each panel's ridge penalty: the errors are optimistic"
        )
    rows = interval_rows(store, split, max_interval_rows)
    n_split = moments.n(split)
    values = (
        store.read_rows(rows, standardize=False).astype(np.float64)
        - store.var["mean"].to_numpy(np.float64)
    ) / store.var["std"].to_numpy(np.float64)
    sample_ids = pd.Index(store.obs.index[rows].astype(str), name="sample_id")
    symbols = (
        store.var["symbol"].astype(str).to_numpy()
        if "symbol" in store.var
        else store.gene_ids.astype(str).to_numpy()
    )
    std = store.var["std"].to_numpy(np.float64)
    validation_rows = moments.n("validation")
    train_mean = moments.mean("train")  # of z: about 0, as z is standardised with the train means
    centred = values - train_mean  # the rows about the train means of z
    del values
    results: dict[Any, LinearPanelResult] = {}
    for key, panel in tqdm(
        panels.items(), desc="linear panels", unit="panel", disable=not progress, leave=False
    ):
        panel = np.asarray(panel, dtype=np.int64)
        train = moments.panel_statistics("train", panel)
        validation = moments.panel_statistics("validation", panel) if validation_rows else None
        # both are read fresh for this panel and only their n and totals are used after: centre in place
        solution = solve_validated(train, validation, ridge=ridge, overwrite=True)
        del train, validation
        test = moments.panel_statistics(split, panel)
        sums = prediction_sums(solution.coef, solution.intercept, test)
        measured = np.zeros(store.n_vars, dtype=bool)
        measured[panel] = True
        per_gene = gene_table(
            symbols,
            measured,
            mse=sums["squared_error"] / test.n,
            mae=None,
            std=std,
            pearson=pearson_from_sums(
                test.n,
                test.total,
                test.squares,
                sums["predicted"],
                sums["predicted2"],
                sums["cross"],
            ),
            index=store.gene_ids.astype(str),
        )
        mean_predictor = (
            test.squares - 2.0 * train_mean * test.total + test.n * train_mean**2
        ) / test.n
        # z_hat - z = W^T (z_p - m_p) - (z - m); panel genes are measured (no error)
        residual = centred[:, panel] @ solution.coef
        residual -= centred
        residual[:, panel] = 0.0
        per_sample_errors = np.einsum("ij,ij->i", residual, residual) / max((~measured).sum(), 1)
        del residual
        metrics = summary_metrics(
            per_gene,
            per_sample_errors,
            mean_predictor=mean_predictor,
            split=split,
            decoder="linear",
        )
        metrics["n_samples"] = int(test.n)
        metrics["n_interval_samples"] = int(rows.size)
        if rows.size < n_split:  # rescale the subset's bootstrap spread to the whole split
            subset_mean = float(per_sample_errors.mean())
            factor = math.sqrt(rows.size / n_split)
            metrics["mse_imputed_ci"] = [
                metrics[HEADLINE_METRIC] + (v - subset_mean) * factor
                for v in metrics["mse_imputed_ci"]
            ]
        metrics["ridge"] = solution.ridge
        if solution.ridge_choice is not None:
            metrics["ridge_choice"] = solution.ridge_choice.record()
        if store.noise_floor is not None:
            metrics["noise_floor"] = store.noise_floor
        per_sample = pd.DataFrame({HEADLINE_METRIC: per_sample_errors}, index=sample_ids)
        results[key] = LinearPanelResult(
            solution.ridge, solution.ridge_choice, Evaluation(metrics, per_gene, per_sample)
        )
        del solution
    return results
