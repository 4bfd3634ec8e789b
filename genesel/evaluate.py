"""Metrics of an imputation model on a split of a store, computed in one streaming pass.

Errors are reported in standardised units (the D-GEX / CAE convention: each gene scaled
by its train standard deviation) and in the store's original units, over all genes and
over the genes outside the panel (the ones actually imputed), plus per-gene MSE, MAE and
Pearson correlation.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from genesel.errors import InputFileError
from genesel.impute.blocks import DEFAULT_BLOCK_ROWS, iter_row_blocks
from genesel.impute.model import ImputationModel
from genesel.io.atomic import atomic_output, write_json
from genesel.store import Store

logger = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """Result of :func:`evaluate_model`.

    Attributes
    ----------
    metrics
        Summary numbers (see :func:`evaluate_model`).
    per_gene
        One row per gene: ``gene_id`` (index), ``symbol``, ``measured``, ``mse``, ``mae``
        (standardised), ``mse_original``, ``mae_original`` and ``pearson_r``.
    """

    metrics: dict[str, Any]
    per_gene: pd.DataFrame

    def write(self, out: str | os.PathLike[str]) -> Path:
        """Write the metrics JSON to ``out`` and the per-gene table beside it.

        ``out`` is a ``.json`` file (or a directory, meaning ``DIR/metrics.json``). The
        table is ``per_gene.tsv`` beside ``metrics.json``, or ``<stem>.per_gene.tsv``
        beside any other name.
        """
        out = Path(out)
        if out.suffix != ".json":
            out = out / "metrics.json"
        table = out.with_name("per_gene.tsv" if out.name == "metrics.json" else f"{out.stem}.per_gene.tsv")
        with atomic_output(table) as tmp:
            self.per_gene.to_csv(tmp, sep="\t", float_format="%.6g")
        write_json(out, self.metrics)
        logger.info("wrote metrics to %s and per-gene errors to %s", out, table)
        return out


class _GeneSums:
    """Per-gene float64 sums of errors and of the products a Pearson r needs."""

    def __init__(self, n_genes: int) -> None:
        self.n = 0
        names = ("squared", "absolute", "truth", "truth2", "pred", "pred2", "cross")
        self.sums = {name: np.zeros(n_genes, dtype=np.float64) for name in names}

    def update(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        error = predicted - truth
        s = self.sums
        s["squared"] += np.einsum("ij,ij->j", error, error)
        s["absolute"] += np.abs(error).sum(axis=0)
        s["truth"] += truth.sum(axis=0)
        s["truth2"] += np.einsum("ij,ij->j", truth, truth)
        s["pred"] += predicted.sum(axis=0)
        s["pred2"] += np.einsum("ij,ij->j", predicted, predicted)
        s["cross"] += np.einsum("ij,ij->j", truth, predicted)
        self.n += truth.shape[0]

    def pearson(self) -> np.ndarray:
        s, n = self.sums, self.n
        covariance = s["cross"] - s["truth"] * s["pred"] / n
        var_truth = s["truth2"] - s["truth"] ** 2 / n
        var_pred = s["pred2"] - s["pred"] ** 2 / n
        with np.errstate(divide="ignore", invalid="ignore"):
            r = covariance / np.sqrt(var_truth * var_pred)
        tiny = 1e-12 * n
        r[(var_truth <= tiny) | (var_pred <= tiny)] = np.nan
        return np.clip(r, -1.0, 1.0)


def evaluate_model(
    store: Store,
    model: ImputationModel,
    *,
    split: str = "test",
    block_rows: int = DEFAULT_BLOCK_ROWS,
    device: str = "cpu",
    progress: bool = True,
) -> Evaluation:
    """Impute one split of ``store`` from its panel genes and measure the errors.

    Parameters
    ----------
    store
        Data holding every gene of the model (matched by gene id).
    model
        The imputation model; its own train mean/std define the standardised units.
    split
        ``"test"`` (default), ``"validation"`` or ``"train"``.
    block_rows
        Samples per block.
    device
        Where the decoder runs.
    progress
        Show a progress bar.

    Returns
    -------
    :class:`Evaluation` whose ``metrics`` hold ``mse``/``mae`` (standardised, all genes),
    ``mse_unmeasured``/``mae_unmeasured`` (standardised, genes outside the panel), the same
    four with an ``_original`` suffix in the store's units, ``pearson_r_mean`` and
    ``pearson_r_median`` over the genes outside the panel, sizes, and ``noise_floor`` when
    the store records one (simulated data; standardised MSE of a perfect predictor).
    """
    rows = store.require_split(split)
    columns = _model_columns(store, model)
    identity = np.array_equal(columns, np.arange(store.n_vars))
    mean, std = model.mean, model.std
    sums = _GeneSums(model.n_genes)
    with tqdm(total=rows.size, desc=f"evaluate {split}", unit="rows", disable=not progress, leave=False) as bar:
        for _, block in iter_row_blocks(store, rows, block_rows=block_rows):
            values = block if identity else block[:, columns]
            truth = (values.astype(np.float64) - mean) / std
            panel_values = truth[:, model.panel_indices]
            predicted = model.predict_standardized(panel_values, batch_rows=block_rows, device=device).astype(np.float64)
            predicted[:, model.panel_indices] = panel_values  # measured genes: exact, not rounded to float32
            sums.update(truth, predicted)
            bar.update(block.shape[0])
    n = sums.n
    mse = sums.sums["squared"] / n
    mae = sums.sums["absolute"] / n
    measured = model.measured_mask
    per_gene = pd.DataFrame(
        {
            "symbol": model.symbols,
            "measured": measured,
            "mse": mse,
            "mae": mae,
            "mse_original": mse * std**2,
            "mae_original": mae * std,
            "pearson_r": sums.pearson(),
        },
        index=model.gene_ids,
    )
    imputed = per_gene[~measured]
    metrics: dict[str, Any] = {
        "split": split,
        "decoder": model.decoder,
        "n_samples": int(n),
        "n_genes": model.n_genes,
        "n_panel": model.n_panel,
        "n_unmeasured": int((~measured).sum()),
        "mse": float(per_gene["mse"].mean()),
        "mae": float(per_gene["mae"].mean()),
        "mse_unmeasured": float(imputed["mse"].mean()),
        "mae_unmeasured": float(imputed["mae"].mean()),
        "mse_original": float(per_gene["mse_original"].mean()),
        "mae_original": float(per_gene["mae_original"].mean()),
        "mse_unmeasured_original": float(imputed["mse_original"].mean()),
        "mae_unmeasured_original": float(imputed["mae_original"].mean()),
        "pearson_r_mean": _nan_to_none(imputed["pearson_r"].mean()),
        "pearson_r_median": _nan_to_none(imputed["pearson_r"].median()),
    }
    if store.noise_floor is not None:
        metrics["noise_floor"] = store.noise_floor
    if store.path is not None:
        metrics["store"] = str(store.path)
    logger.info(
        "%s split: MSE %.4g, MAE %.4g on the %d imputed genes (standardised units)",
        split, metrics["mse_unmeasured"], metrics["mae_unmeasured"], metrics["n_unmeasured"],
    )
    return Evaluation(metrics, per_gene)


def _model_columns(store: Store, model: ImputationModel) -> np.ndarray:
    """Column of each model gene in the store, by gene id."""
    store_ids = pd.Index(store.var.index.astype(str))
    positions = store_ids.get_indexer(model.gene_ids)
    missing = np.flatnonzero(positions < 0)
    if missing.size:
        shown = model.gene_ids[missing[:10]].tolist()
        raise InputFileError(
            store.path or "<store>",
            f"{missing.size} of the model's {model.n_genes} genes are not in the store, e.g. {shown}",
            "evaluate on a store with the same gene universe as the training store",
        )
    return positions


def _nan_to_none(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)
