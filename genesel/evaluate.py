"""Metrics of an imputation model on a split of a store.

The headline number is the **imputed-gene MSE** (``mse_imputed``): the mean squared error
over the genes outside the panel, in standardised units (each gene scaled by its train
standard deviation, the D-GEX / CAE convention), averaged over samples and genes. Panel
genes are measured, not imputed, so they are left out of it (the all-gene ``mse`` counts
them as zero error and equals ``mse_imputed * (1 - K/D)``). Also reported: MAE, the same
in the store's original units, per-gene MSE/MAE/Pearson r, the error of predicting every
gene's train mean (``mse_mean_predictor``, the bar any panel must clear), and each
sample's imputed-gene MSE, from which intervals are bootstrapped.
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

from genesel.blocks import DEFAULT_BLOCK_ROWS, iter_row_blocks
from genesel.errors import ConfigError
from genesel.impute.genes import MAX_LISTED
from genesel.impute.model import ImputationModel
from genesel.io.atomic import atomic_output, removing_on_error, write_json
from genesel.model_match import GeneMatch, match_model_genes
from genesel.store import Store

logger = logging.getLogger(__name__)

#: The metric of curves, headlines and ``genesel evaluate``'s printed line.
HEADLINE_METRIC = "mse_imputed"
#: Bootstrap resamples behind the interval ``genesel evaluate`` prints.
BOOTSTRAP_RESAMPLES = 2000
#: Coverage of the intervals.
INTERVAL_LEVEL = 0.95
#: Whose train mean and standard deviation define the standardised units of an evaluation:
#: the model's (its training store's; the default) or the evaluated data's own.
STANDARDIZE_CHOICES = ("model", "data")
DEFAULT_STANDARDIZE = "model"


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
    per_sample
        One row per evaluated sample (index: sample id): ``mse_imputed``, the sample's
        mean squared error over the imputed genes (standardised).
    """

    metrics: dict[str, Any]
    per_gene: pd.DataFrame
    per_sample: pd.DataFrame

    def write(self, out: str | os.PathLike[str]) -> Path:
        """Write the metrics JSON to ``out`` and the per-gene and per-sample tables beside it.

        ``out`` is a ``.json`` file (or a directory, meaning ``DIR/metrics.json``). The
        tables are ``per_gene.tsv`` and ``per_sample.tsv`` beside ``metrics.json``, or
        ``<stem>.per_gene.tsv`` and ``<stem>.per_sample.tsv`` beside any other name.
        """
        out = Path(out)
        if out.suffix != ".json":
            out = out / "metrics.json"
        tables = {
            name: out.with_name(
                f"{name}.tsv" if out.name == "metrics.json" else f"{out.stem}.{name}.tsv"
            )
            for name in ("per_gene", "per_sample")
        }
        with removing_on_error(*tables.values(), out):  # all three or none (a full disk)
            for name, frame in (("per_gene", self.per_gene), ("per_sample", self.per_sample)):
                with atomic_output(tables[name]) as tmp:
                    frame.to_csv(tmp, sep="\t", float_format="%.8g")
            write_json(out, self.metrics)
        logger.info("wrote metrics to %s, per-gene and per-sample errors beside it", out)
        return out


class _GeneSums:
    """Per-gene float64 sums of errors and of the products a Pearson r needs."""

    def __init__(self, n_vars: int, imputed: np.ndarray) -> None:
        self.n = 0
        names = ("squared", "absolute", "truth", "truth2", "pred", "pred2", "cross")
        self.sums = {name: np.zeros(n_vars, dtype=np.float64) for name in names}
        self.imputed = imputed
        self.per_sample: list[np.ndarray] = []

    def update(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        error = predicted - truth
        self.per_sample.append(
            np.einsum("ij,ij->i", error[:, self.imputed], error[:, self.imputed])
            / max(self.imputed.sum(), 1)
        )
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
        s = self.sums
        return pearson_from_sums(
            self.n, s["truth"], s["truth2"], s["pred"], s["pred2"], s["cross"]
        )


def pearson_from_sums(
    n: int,
    truth: np.ndarray,
    truth2: np.ndarray,
    pred: np.ndarray,
    pred2: np.ndarray,
    cross: np.ndarray,
) -> np.ndarray:
    """Per-gene Pearson r from sums of truth, prediction, their squares and products (NaN when constant)."""
    covariance = cross - truth * pred / n
    var_truth = truth2 - truth**2 / n
    var_pred = pred2 - pred**2 / n
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
    standardize: str = DEFAULT_STANDARDIZE,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    device: str = "cpu",
    progress: bool = True,
) -> Evaluation:
    """Impute one split of ``store`` from its panel genes and measure the errors.

    ``store`` may be another data set than the one the model was fitted on (a transfer):
    its genes are matched to the model's by gene id, then by symbol, in any order. A panel
    gene it lacks is an error naming every missing one; target genes it lacks are left out
    of the scores (with a warning giving their count).

    Parameters
    ----------
    store
        Data holding the model's panel genes and (ideally) all its other genes.
    model
        The imputation model.
    split
        ``"test"`` (default), ``"validation"`` or ``"train"``.
    standardize
        ``"model"`` (default): standardise with the model's train mean and standard deviation
        (those of the store it was fitted on); ``"data"``: with ``store``'s own train
        statistics, which removes per-gene shifts and scalings between the two data sets.
        Errors are in the chosen units; so is ``mse_mean_predictor``, the error of
        predicting the chosen means.
    block_rows
        Samples per block.
    device
        Where the decoder runs.
    progress
        Show a progress bar.

    Returns
    -------
    :class:`Evaluation`; its ``metrics`` are described by :func:`summary_metrics`, plus a
    ``transfer`` record (see :func:`transfer_record`) when ``store`` is not the model's
    training store, its genes differ, or ``standardize="data"``.
    """
    if standardize not in STANDARDIZE_CHOICES:
        raise ConfigError(
            f"standardize={standardize!r} must be one of {', '.join(STANDARDIZE_CHOICES)}"
        )
    rows = store.require_split(split)
    match = match_model_genes(store, model)
    kept = match.kept
    columns = match.columns[kept]
    identity = bool(kept.all()) and np.array_equal(columns, np.arange(store.n_vars))
    if standardize == "model":
        mean, std = model.mean[kept], model.std[kept]
    else:
        mean = store.var["mean"].to_numpy(np.float64)[columns]
        std = store.var["std"].to_numpy(np.float64)[columns]
    measured = model.measured_mask[kept]
    panel = (
        np.cumsum(kept)[model.panel_indices] - 1
    )  # panel genes among the kept genes, in panel order
    sums = _GeneSums(int(kept.sum()), ~measured)
    with tqdm(
        total=rows.size, desc=f"evaluate {split}", unit="rows", disable=not progress, leave=False
    ) as bar:
        for _, block in iter_row_blocks(store, rows, block_rows=block_rows):
            values = block if identity else block[:, columns]
            truth = (values.astype(np.float64) - mean) / std
            panel_values = truth[:, panel]
            predicted = model.predict_standardized(
                panel_values, batch_rows=block_rows, device=device
            ).astype(np.float64)
            if not identity:
                predicted = predicted[:, kept]
            predicted[:, panel] = panel_values  # measured genes: exact, not rounded to float32
            sums.update(truth, predicted)
            bar.update(block.shape[0])
    n = sums.n
    per_gene = gene_table(
        model.symbols[kept],
        measured,
        mse=sums.sums["squared"] / n,
        mae=sums.sums["absolute"] / n,
        std=std,
        pearson=sums.pearson(),
        index=model.gene_ids[kept],
    )
    per_sample = pd.DataFrame(
        {HEADLINE_METRIC: np.concatenate(sums.per_sample)},
        index=pd.Index(store.obs.index[rows].astype(str), name="sample_id"),
    )
    metrics = summary_metrics(
        per_gene,
        per_sample[HEADLINE_METRIC].to_numpy(),
        mean_predictor=sums.sums["truth2"] / n,
        split=split,
        decoder=model.decoder,
    )
    if store.noise_floor is not None:
        metrics["noise_floor"] = store.noise_floor
    if store.path is not None:
        metrics["store"] = str(store.path)
    record = transfer_record(store, model, match, standardize=standardize)
    if record is not None:
        metrics["transfer"] = record
        logger.info(
            "%s: not the model's training store (%s): %d of its %d genes matched by %s, %d target genes missing; "
            "standardised with the %s's train statistics",
            store.path or "<store>",
            record["source_store"] or "unknown",
            record["n_matched"],
            model.n_vars,
            record["matched_by"],
            record["n_missing_targets"],
            "model" if standardize == "model" else "data",
        )
    logger.info("%s split: %s", split, describe_metrics(metrics))
    return Evaluation(metrics, per_gene, per_sample)


def transfer_record(
    store: Store, model: ImputationModel, match: GeneMatch, *, standardize: str
) -> dict[str, Any] | None:
    """What an evaluation on other data than the model's training store records, or ``None``.

    ``None`` when ``store`` is the model's training store (same fingerprint, or the model
    records none and every gene matched by id at its own position) and ``standardize`` is
    ``"model"``. Otherwise: the source store and its fingerprint (from the model), the
    evaluated data's, the standardisation, how genes were matched and the missing target genes.
    """
    from genesel.moments import store_fingerprint

    fingerprint = store_fingerprint(store)
    source_fingerprint = model.training.get("store_fingerprint")
    same_genes = match.by_id == model.n_vars and np.array_equal(
        match.columns, np.arange(store.n_vars)
    )
    same_store = (
        fingerprint == source_fingerprint if source_fingerprint is not None else same_genes
    )
    if same_store and same_genes and standardize == DEFAULT_STANDARDIZE:
        return None
    return {
        "source_store": model.training.get("store"),
        "source_fingerprint": source_fingerprint,
        "data": str(store.path) if store.path is not None else None,
        "data_fingerprint": fingerprint,
        "standardize": standardize,
        "matched_by": match.matched_by,
        "n_model_genes": model.n_vars,
        "n_matched": int(match.kept.sum()),
        "n_matched_by_id": match.by_id,
        "n_matched_by_symbol": match.by_symbol,
        "n_missing_targets": int(match.missing_targets.size),
        "missing_targets": match.missing_targets[:MAX_LISTED].tolist(),
    }


def gene_table(
    symbols: np.ndarray,
    measured: np.ndarray,
    *,
    mse: np.ndarray,
    mae: np.ndarray | None,
    std: np.ndarray,
    pearson: np.ndarray,
    index: pd.Index,
) -> pd.DataFrame:
    """The per-gene error table (standardised and original units)."""
    mae = np.full(mse.shape, np.nan) if mae is None else mae
    return pd.DataFrame(
        {
            "symbol": symbols,
            "measured": measured,
            "mse": mse,
            "mae": mae,
            "mse_original": mse * std**2,
            "mae_original": mae * std,
            "pearson_r": pearson,
        },
        index=index,
    )


def summary_metrics(
    per_gene: pd.DataFrame,
    per_sample: np.ndarray,
    *,
    mean_predictor: np.ndarray,
    split: str,
    decoder: str,
    seed: int = 0,
) -> dict[str, Any]:
    """The summary numbers of an evaluation, the same whichever path computed them.

    ``mse_imputed``/``mae_imputed`` (standardised, genes outside the panel: the headline),
    ``mse_imputed_ci`` (its 95 % interval, bootstrap over the samples of ``per_sample``),
    ``mse_imputed_original``/``mae_imputed_original`` (store units), ``mse``/``mae`` and
    their ``_original`` forms over all genes (panel genes count as zero error),
    ``mse_mean_predictor`` (imputed-gene MSE of predicting each gene's train mean),
    ``pearson_r_mean``/``pearson_r_median`` over the imputed genes, and sizes: ``n_samples``,
    ``n_vars`` (genes scored), ``n_genes`` (panel genes among them), ``n_imputed``.
    """
    measured = per_gene["measured"].to_numpy(bool)
    imputed = per_gene[~measured]
    metrics: dict[str, Any] = {
        "split": split,
        "decoder": decoder,
        "n_samples": int(per_sample.size),
        "n_vars": int(len(per_gene)),
        "n_genes": int(measured.sum()),
        "n_imputed": int((~measured).sum()),
        HEADLINE_METRIC: float(imputed["mse"].mean()),
        "mse_imputed_ci": bootstrap_interval(per_sample, seed=seed),
        "mae_imputed": _nan_to_none(imputed["mae"].mean()),
        "mse_imputed_original": float(imputed["mse_original"].mean()),
        "mae_imputed_original": _nan_to_none(imputed["mae_original"].mean()),
        "mse": float(per_gene["mse"].mean()),
        "mae": _nan_to_none(per_gene["mae"].mean()),
        "mse_original": float(per_gene["mse_original"].mean()),
        "mae_original": _nan_to_none(per_gene["mae_original"].mean()),
        "mse_mean_predictor": float(np.asarray(mean_predictor)[~measured].mean()),
        "pearson_r_mean": _nan_to_none(imputed["pearson_r"].mean()),
        "pearson_r_median": _nan_to_none(imputed["pearson_r"].median()),
    }
    return metrics


def bootstrap_interval(
    values: np.ndarray,
    *,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = INTERVAL_LEVEL,
) -> list[float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling its entries)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 200):
        stop = min(start + 200, resamples)
        picks = rng.integers(0, values.size, size=(stop - start, values.size))
        means[start:stop] = values[picks].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return [float(low), float(high)]


def describe_metrics(metrics: dict[str, Any]) -> str:
    """One line: the imputed-gene MSE with its interval, what it is over, and the mean predictor's."""
    low, high = metrics.get("mse_imputed_ci", [float("nan")] * 2)
    return (
        f"imputed-gene MSE {metrics[HEADLINE_METRIC]:.4g} (95% interval {low:.4g}-{high:.4g}, bootstrap over "
        f"{metrics['n_samples']} samples; standardised units, {metrics['n_imputed']} imputed genes; predicting each "
        f"gene's train mean gives {metrics['mse_mean_predictor']:.4g})"
    )


def _nan_to_none(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)
