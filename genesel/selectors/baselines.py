"""Panels chosen without training or moments: ``landmarks``, ``random`` and ``hvg``.

- ``landmarks``: the genes flagged ``var["landmark"]`` (the L1000 landmarks), ranked by
  their train-split standard deviation.
- ``random``: a seeded uniform draw.
- ``hvg``: scanpy's highly variable genes (``flavor="seurat"`` on log data) computed on the
  train split, top ``K`` by normalised dispersion.

``qr`` (Q-DEIM) lives in :mod:`genesel.selectors.qr`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from genesel.errors import ConfigError
from genesel.loader import LoaderConfig
from genesel.panel import PanelResult
from genesel.run import RunConfig
from genesel.selectors.base import PanelSelector, register_selector
from genesel.store import Store
from genesel.training import TrainerConfig

logger = logging.getLogger(__name__)

#: scanpy flavors that work on log-scale data (``seurat_v3`` needs counts).
HVG_FLAVORS = ("seurat", "cell_ranger")


def _ranked(scores: np.ndarray, n_genes: int) -> np.ndarray:
    """Indices of the ``n_genes`` highest scores (NaN last, ties by index)."""
    key = np.where(np.isnan(scores), -np.inf, scores)
    return np.lexsort((np.arange(key.size), -key))[:n_genes]


def _completed(selector: PanelSelector, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The included genes, then the candidates of highest score up to ``n_genes``; and their scores.

    Included genes score NaN (they were not ranked); excluded genes are never candidates.
    With a budget, candidates that do not fit are skipped (the panel may end shorter).
    """
    genes = selector.constraints.complete(_ranked(scores, scores.size), selector.n_genes)
    panel_scores = np.asarray(scores, dtype=float)[genes]
    panel_scores[: selector.constraints.include.size] = np.nan
    return genes, panel_scores


def baseline_result(
    selector: PanelSelector,
    store: Store,
    genes: np.ndarray,
    scores: np.ndarray,
    *,
    seed: int,
    **extra: object,
) -> PanelResult:
    """The panel of a method that ranks genes: ``genes`` with their ``scores``, ``extra`` recorded."""
    return PanelResult(
        method=selector.method,
        n_genes=int(np.asarray(genes).size),
        seed=seed,
        gene_indices=genes,
        var=store.var,
        scores=np.asarray(scores, dtype=float),
        extra=dict(extra),
    )


@register_selector
class LandmarkSelector(PanelSelector):
    """The genes marked ``var["landmark"]`` (method ``"landmarks"``); ``K`` must equal their number.

    Panel genes are ranked by their train-split standard deviation (``score``). With
    ``include``/``exclude`` the panel is the included genes plus the landmarks neither
    included nor excluded, and ``K`` must equal that number.
    """

    method: ClassVar[str] = "landmarks"

    def select(
        self,
        store: Store,
        *,
        trainer: TrainerConfig | None = None,
        loader: LoaderConfig | None = None,
        run: RunConfig | None = None,
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> PanelResult:
        """Return the landmark genes."""
        landmarks = np.flatnonzero(store.landmark_mask)
        if landmarks.size == 0:
            raise ConfigError(
                "landmarks: the data has no landmark genes (var['landmark'] is all False); choose another method"
            )
        fixed = self.constraints
        landmarks = landmarks[fixed.candidate_mask(store.n_vars)[landmarks]]
        if fixed.include.size + landmarks.size != self.n_genes and (
            fixed.exact_size or not fixed.budgeted
        ):
            what = f"{landmarks.size} landmark genes (var['landmark'])"
            if not fixed.empty:
                what = f"{fixed.include.size} included genes and {landmarks.size} other landmark genes that are not excluded"
            raise ConfigError(
                f"landmarks: the data has {what} but n_genes={self.n_genes}; use n_genes={fixed.include.size + landmarks.size}",
                parameter="n_genes",
            )
        spread = store.std.astype(float)
        order = np.lexsort((landmarks, -spread[landmarks]))
        genes = np.concatenate([fixed.include, landmarks[order]])
        cost = fixed.panel_cost(genes)
        if fixed.budget is not None and cost is not None and cost > fixed.budget * (1.0 + 1e-9):
            raise ConfigError(
                f"landmarks: the landmark panel of {genes.size} genes costs {cost:g}, more than the budget "
                f"{fixed.budget:g}; raise the budget or use greedy, lassonet or logitnormal to choose within it",
                parameter="budget",
            )
        scores = spread[genes]
        scores[: fixed.include.size] = np.nan
        return baseline_result(
            self,
            store,
            genes,
            scores,
            seed=self.seed,  # deterministic: recorded, not used
            ranking="train standard deviation, descending",
        )


@register_selector
class RandomSelector(PanelSelector):
    """A uniform random panel drawn from ``seed`` (method ``"random"``); ``score`` is the draw's priority."""

    method: ClassVar[str] = "random"

    def select(
        self,
        store: Store,
        *,
        trainer: TrainerConfig | None = None,
        loader: LoaderConfig | None = None,
        run: RunConfig | None = None,
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> PanelResult:
        """Draw ``n_genes`` distinct genes."""
        self.check_panel_size(store)
        seed = self.run_config(run).seed
        priority = np.random.default_rng(seed).random(store.n_vars)
        genes, scores = _completed(self, priority)
        return baseline_result(
            self, store, genes, scores, seed=seed, ranking="seeded uniform priority"
        )


@register_selector
class HighlyVariableSelector(PanelSelector):
    """Scanpy's highly variable genes on the train split (method ``"hvg"``).

    Parameters
    ----------
    n_genes
        Panel size ``K``.
    seed
        Seed of the row subsample (only used when the train split exceeds ``max_rows``).
    flavor
        ``"seurat"`` (default) or ``"cell_ranger"``; both expect log data.
    log_base
        Base of the store's logarithm (2 for log2 expression) so scanpy undoes it correctly;
        ``None`` means natural log (``log1p`` data).
    n_bins
        Mean-expression bins in which dispersions are normalised.
    max_rows
        Use a seeded subsample of this many train rows when the split is larger (the
        dispersion statistics converge long before; this bounds memory).
    """

    method: ClassVar[str] = "hvg"

    def __init__(
        self,
        *,
        n_genes: int,
        seed: int = 0,
        flavor: str = "seurat",
        log_base: float | None = 2.0,
        n_bins: int = 20,
        max_rows: int = 10_000,
    ) -> None:
        super().__init__(n_genes=n_genes, seed=seed)
        if flavor not in HVG_FLAVORS:
            raise ConfigError(
                f"hvg: flavor must be one of {HVG_FLAVORS} (log data), got {flavor!r}",
                parameter="param:flavor",
            )
        if log_base is not None and not float(log_base) > 1:
            raise ConfigError(
                f"hvg: log_base must be > 1 or null, got {log_base}", parameter="param:log_base"
            )
        if int(max_rows) < 2:
            raise ConfigError(
                f"hvg: max_rows must be at least 2, got {max_rows}", parameter="param:max_rows"
            )
        self.flavor = flavor
        self.log_base = None if log_base is None else float(log_base)
        self.n_bins = int(n_bins)
        self.max_rows = int(max_rows)

    def train_rows(self, store: Store, *, seed: int) -> np.ndarray:
        """The train rows used: all of them, or a sorted subsample of ``max_rows`` drawn from ``seed``."""
        rows = store.require_split("train")
        if rows.size > self.max_rows:
            rows = np.sort(
                np.random.default_rng(seed).choice(rows, size=self.max_rows, replace=False)
            )
        return rows

    def select(
        self,
        store: Store,
        *,
        trainer: TrainerConfig | None = None,
        loader: LoaderConfig | None = None,
        run: RunConfig | None = None,
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> PanelResult:
        """Return the ``n_genes`` genes of highest normalised dispersion."""
        import anndata
        import scanpy as sc

        self.check_panel_size(store)
        seed = self.run_config(run).seed
        rows = self.train_rows(store, seed=seed)
        block = (loader or LoaderConfig()).block_rows
        values = np.empty((rows.size, store.n_vars), dtype=np.float32)
        for start in range(0, rows.size, block):
            chunk = rows[start : start + block]
            values[start : start + chunk.size] = store.read_rows(chunk, standardize=False)
        adata = anndata.AnnData(values, var=pd.DataFrame(index=store.gene_ids.astype(str)))
        if self.log_base is not None:
            adata.uns["log1p"] = {"base": self.log_base}
        table = sc.pp.highly_variable_genes(
            adata, flavor=self.flavor, n_bins=self.n_bins, n_top_genes=self.n_genes, inplace=False
        )
        dispersion = np.asarray(table["dispersions_norm"], dtype=float)
        genes, scores = _completed(self, dispersion)
        return baseline_result(
            self,
            store,
            genes,
            scores,
            seed=seed,
            ranking=f"scanpy highly_variable_genes(flavor={self.flavor!r}) normalised dispersion, descending",
            n_rows=int(rows.size),
        )
