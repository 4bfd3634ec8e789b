"""``linear_curve``: the linear decoder's whole panel-size curve from a store's moments.

The one function behind ``genesel curve`` and the workflow's ``linear_curve`` rule: read
the panels (and draw the random-panel band), fit and score each from the moments
(:func:`genesel.impute.sweep.evaluate_linear_panels`), and write each evaluation where
``genesel evaluate`` would, plus a table listing them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from genesel.errors import InputFileError
from genesel.impute.genes import resolve_panel
from genesel.impute.ridge import DEFAULT_RIDGE
from genesel.impute.sweep import evaluate_linear_panels
from genesel.io.atomic import atomic_output
from genesel.moments import open_moments
from genesel.report.layout import RunKey, parse_panel_path
from genesel.store import Store

logger = logging.getLogger(__name__)

#: The decoder name of this path's runs.
DECODER = "linear"
#: The table ``linear_curve`` writes into its output folder.
TABLE_NAME = "linear_runs.tsv"
#: Seeded random panels per size behind the report's random-panel band.
DEFAULT_RANDOM_PANELS = 10


def panel_key(path: str | os.PathLike[str]) -> tuple[str, int, int]:
    """``(method, n_genes, seed)`` of a panel, from the ``config.json`` beside it or its path."""
    from genesel.panel import read_panel_config

    config = read_panel_config(path)
    if {"method", "n_genes", "seed"} <= set(config):
        return str(config["method"]), int(config["n_genes"]), int(config["seed"])
    key = parse_panel_path(path)
    if key is None:
        raise InputFileError(
            path,
            "cannot tell the panel's method, size and seed",
            "keep the config.json genesel select writes beside it",
        )
    return key


def linear_curve(
    data: str | os.PathLike[str],
    moments: str | os.PathLike[str],
    *,
    panels: Sequence[str | os.PathLike[str]] = (),
    random_panels: int = 0,
    random_sizes: Sequence[int] = (),
    out: str | os.PathLike[str],
    ridge: float | str = DEFAULT_RIDGE,
    split: str = "test",
    progress: bool = True,
) -> pd.DataFrame:
    """Fit and score the linear decoder of every panel; write the evaluations under ``out``.

    Parameters
    ----------
    data
        The preprocessed store.
    moments
        Its moments file (``genesel moments``).
    panels
        ``panel.tsv`` files (their ``config.json`` names method, size and seed).
    random_panels
        Number of seeded random panels (seeds ``0 .. random_panels - 1``) per size of
        ``random_sizes``: the random-panel band of the report.
    random_sizes
        Sizes of the random band.
    out
        Folder receiving ``<method>/k<K>/seed<S>/linear/metrics.json`` (+ ``per_gene.tsv``,
        ``per_sample.tsv``) and :data:`TABLE_NAME`.
    ridge
        ``"auto"`` (validated per panel) or a fixed penalty.
    split
        Split the errors are measured on.
    progress
        Show a progress bar.

    Returns
    -------
    The table written to ``out/linear_runs.tsv``: one row per panel with its key, the
    imputed-gene MSE and interval, the ridge used and the metrics path.
    """
    from genesel.selectors.base import make_selector

    out = Path(out)
    with Store.open(data) as store, open_moments(moments, store) as handle:
        chosen: dict[RunKey, np.ndarray] = {}
        for path in panels:
            method, n_genes, seed = panel_key(path)
            chosen[RunKey(method, n_genes, seed, DECODER)] = resolve_panel(path, store.var)
        for n_genes in random_sizes:
            for seed in range(int(random_panels)):
                key = RunKey("random", int(n_genes), seed, DECODER)
                if key not in chosen:
                    chosen[key] = (
                        make_selector("random", n_genes=int(n_genes), seed=seed)
                        .select(store)
                        .gene_indices
                    )
        results = evaluate_linear_panels(
            store, handle, chosen, ridge=ridge, split=split, progress=progress
        )
    rows = []
    for key, result in sorted(
        results.items(), key=lambda item: (item[0].method, item[0].n_genes, item[0].seed)
    ):
        path = (
            out / key.method / f"k{key.n_genes}" / f"seed{key.seed}" / key.decoder / "metrics.json"
        )
        result.evaluation.write(path)
        metrics = result.evaluation.metrics
        rows.append(
            {
                "method": key.method,
                "n_genes": key.n_genes,
                "seed": key.seed,
                "decoder": key.decoder,
                "mse_imputed": metrics["mse_imputed"],
                "mse_imputed_low": metrics["mse_imputed_ci"][0],
                "mse_imputed_high": metrics["mse_imputed_ci"][1],
                "ridge": metrics["ridge"],
                "metrics": str(path.relative_to(out)),
            }
        )
    table = pd.DataFrame(rows)
    with atomic_output(out / TABLE_NAME) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    logger.info(
        "linear decoder of %d panels scored on the %s split; written under %s",
        len(table),
        split,
        out,
    )
    return table
