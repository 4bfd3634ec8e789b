"""Panels chosen without training: ``landmarks``, ``random``, ``hvg`` and ``qr``.

- ``landmarks``: the genes flagged ``var["landmark"]`` (the L1000 landmarks), ranked by
  their train-split standard deviation.
- ``random``: a seeded uniform draw.
- ``hvg``: scanpy's highly variable genes (``flavor="seurat"`` on log data) computed on the
  train split, top ``K`` by normalised dispersion.
- ``qr``: Q-DEIM sensor placement, a pivoted QR of the leading principal directions of the
  standardised train split; the pivots are the genes that best pin down those directions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.linalg

from genesel.errors import ConfigError
from genesel.loader import LoaderConfig
from genesel.selectors.base import PanelResult, PanelSelector, register_selector
from genesel.store import Store
from genesel.training import TrainerConfig

logger = logging.getLogger(__name__)

#: scanpy flavors that work on log-scale data (``seurat_v3`` needs counts).
HVG_FLAVORS = ("seurat", "cell_ranger")


def _ranked(scores: np.ndarray, n_genes: int) -> np.ndarray:
    """Indices of the ``n_genes`` highest scores (NaN last, ties by index)."""
    key = np.where(np.isnan(scores), -np.inf, scores)
    return np.lexsort((np.arange(key.size), -key))[:n_genes]


def _result(selector: PanelSelector, store: Store, genes: np.ndarray, scores: np.ndarray, **extra: object) -> PanelResult:
    return PanelResult(
        method=selector.method,
        n_genes=selector.n_genes,
        seed=selector.seed,
        gene_indices=genes,
        var=store.var,
        scores=np.asarray(scores, dtype=float),
        extra=dict(extra),
    )


@register_selector
class LandmarkSelector(PanelSelector):
    """The genes marked ``var["landmark"]`` (method ``"landmarks"``); ``K`` must equal their number.

    Panel genes are ranked by their train-split standard deviation (``score``).
    """

    method: ClassVar[str] = "landmarks"

    def select(
        self,
        store: Store,
        *,
        trainer: TrainerConfig | None = None,
        loader: LoaderConfig | None = None,
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> PanelResult:
        """Return the landmark genes."""
        landmarks = np.flatnonzero(store.landmark_mask)
        if landmarks.size == 0:
            raise ConfigError("landmarks: the data has no landmark genes (var['landmark'] is all False); choose another method")
        if landmarks.size != self.n_genes:
            raise ConfigError(
                f"landmarks: the data has {landmarks.size} landmark genes (var['landmark']) but n_genes={self.n_genes}; "
                f"use --n-genes {landmarks.size}"
            )
        spread = store.std[landmarks].astype(float)
        order = np.lexsort((landmarks, -spread))
        return _result(self, store, landmarks[order], spread[order], ranking="train standard deviation, descending")


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
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> PanelResult:
        """Draw ``n_genes`` distinct genes."""
        self.check_panel_size(store)
        priority = np.random.default_rng(self.seed).random(store.n_vars)
        genes = _ranked(priority, self.n_genes)
        return _result(self, store, genes, priority[genes], ranking="seeded uniform priority")


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
        self, *, n_genes: int, seed: int = 0, flavor: str = "seurat", log_base: float | None = 2.0, n_bins: int = 20, max_rows: int = 10_000
    ) -> None:
        super().__init__(n_genes=n_genes, seed=seed)
        if flavor not in HVG_FLAVORS:
            raise ConfigError(f"hvg: flavor must be one of {HVG_FLAVORS} (log data), got {flavor!r}")
        if log_base is not None and not float(log_base) > 1:
            raise ConfigError(f"hvg: log_base must be > 1 or null, got {log_base}")
        if int(max_rows) < 2:
            raise ConfigError(f"hvg: max_rows must be at least 2, got {max_rows}")
        self.flavor = flavor
        self.log_base = None if log_base is None else float(log_base)
        self.n_bins = int(n_bins)
        self.max_rows = int(max_rows)

    def train_rows(self, store: Store) -> np.ndarray:
        """The train rows used: all of them, or a seeded sorted subsample of ``max_rows``."""
        rows = store.require_split("train")
        if rows.size > self.max_rows:
            rows = np.sort(np.random.default_rng(self.seed).choice(rows, size=self.max_rows, replace=False))
        return rows

    def select(
        self,
        store: Store,
        *,
        trainer: TrainerConfig | None = None,
        loader: LoaderConfig | None = None,
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> PanelResult:
        """Return the ``n_genes`` genes of highest normalised dispersion."""
        import anndata
        import scanpy as sc

        self.check_panel_size(store)
        rows = self.train_rows(store)
        block = (loader or LoaderConfig()).block_rows
        values = np.empty((rows.size, store.n_vars), dtype=np.float32)
        for start in range(0, rows.size, block):
            chunk = rows[start : start + block]
            values[start : start + chunk.size] = store.read_rows(chunk, standardize=False)
        adata = anndata.AnnData(values, var=pd.DataFrame(index=store.gene_ids.astype(str)))
        if self.log_base is not None:
            adata.uns["log1p"] = {"base": self.log_base}
        table = sc.pp.highly_variable_genes(adata, flavor=self.flavor, n_bins=self.n_bins, n_top_genes=self.n_genes, inplace=False)
        dispersion = np.asarray(table["dispersions_norm"], dtype=float)
        genes = _ranked(dispersion, self.n_genes)
        return _result(
            self,
            store,
            genes,
            dispersion[genes],
            ranking=f"scanpy highly_variable_genes(flavor={self.flavor!r}) normalised dispersion, descending",
            n_rows=int(rows.size),
        )


@register_selector
class QRSelector(PanelSelector):
    """Q-DEIM: pivoted QR on the leading principal directions (method ``"qr"``).

    The covariance of the standardised train split is accumulated out-of-core in row
    blocks (``D x D``, exact eigendecomposition) when ``D <= exact_max_genes``; larger data
    use a randomized subspace iteration whose every step is one pass over the blocks.
    ``score`` is ``|R_ii|``, the part of a pivot's loading not explained by earlier pivots.

    Parameters
    ----------
    n_genes
        Panel size ``K``.
    seed
        Seed of the randomized start.
    n_components
        ``r``, principal directions used (``None``: ``K``; must be at least ``K``).
    exact_max_genes
        Largest ``D`` handled with the exact covariance.
    power_iterations, oversampling
        Randomized method: subspace iterations and extra directions.
    """

    method: ClassVar[str] = "qr"

    def __init__(
        self,
        *,
        n_genes: int,
        seed: int = 0,
        n_components: int | None = None,
        exact_max_genes: int = 4000,
        power_iterations: int = 6,
        oversampling: int = 20,
    ) -> None:
        super().__init__(n_genes=n_genes, seed=seed)
        self.n_components = None if n_components is None else int(n_components)
        self.exact_max_genes = int(exact_max_genes)
        self.power_iterations = int(power_iterations)
        self.oversampling = int(oversampling)
        if self.n_components is not None and self.n_components < self.n_genes:
            raise ConfigError(f"qr: n_components={n_components} must be at least n_genes={n_genes} (Q-DEIM picks one gene per direction)")

    def select(
        self,
        store: Store,
        *,
        trainer: TrainerConfig | None = None,
        loader: LoaderConfig | None = None,
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> PanelResult:
        """Return the first ``n_genes`` QR pivots of the leading principal directions."""
        self.check_panel_size(store)
        rows = store.require_split("train")
        rank = self.n_components or self.n_genes
        if rank > min(rows.size, store.n_vars):
            raise ConfigError(f"qr: {rank} principal directions need at least as many train rows ({rows.size}) and genes ({store.n_vars})")
        block = (loader or LoaderConfig()).block_rows
        if store.n_vars <= self.exact_max_genes:
            directions = leading_directions_exact(store, rows, rank, block_rows=block)
            how = "exact covariance"
        else:
            directions = leading_directions_randomized(
                store, rows, rank, block_rows=block, seed=self.seed, power_iterations=self.power_iterations, oversampling=self.oversampling
            )
            how = "randomized subspace iteration"
        _, r_factor, pivots = scipy.linalg.qr(directions.T, mode="economic", pivoting=True)
        genes = pivots[: self.n_genes]
        scores = np.abs(np.diag(r_factor))[: self.n_genes]
        return _result(self, store, genes, scores, ranking="pivot order of Q-DEIM (|R_ii| descending)", n_components=rank, pca=how)


def covariance_times(store: Store, rows: np.ndarray, matrix: np.ndarray, *, block_rows: int = 4096) -> np.ndarray:
    """``C @ matrix`` for the covariance ``C = X^T X / n`` of the standardised ``rows``, one pass."""
    out = np.zeros((store.n_vars, matrix.shape[1]), dtype=np.float64)
    for start in range(0, rows.size, block_rows):
        values = store.read_rows(rows[start : start + block_rows]).astype(np.float64)
        out += values.T @ (values @ matrix)
    return out / rows.size


def leading_directions_exact(store: Store, rows: np.ndarray, rank: int, *, block_rows: int = 4096) -> np.ndarray:
    """Top ``rank`` eigenvectors (genes x rank) of the standardised covariance, accumulated in blocks."""
    covariance = np.zeros((store.n_vars, store.n_vars), dtype=np.float64)
    for start in range(0, rows.size, block_rows):
        values = store.read_rows(rows[start : start + block_rows]).astype(np.float64)
        covariance += values.T @ values
    covariance /= rows.size
    _, vectors = scipy.linalg.eigh(covariance, subset_by_index=[store.n_vars - rank, store.n_vars - 1])
    return vectors[:, ::-1]


def leading_directions_randomized(
    store: Store, rows: np.ndarray, rank: int, *, block_rows: int = 4096, seed: int = 0, power_iterations: int = 6, oversampling: int = 20
) -> np.ndarray:
    """Top ``rank`` eigenvectors by randomized subspace iteration (Halko et al. 2011), out-of-core."""
    width = min(rank + oversampling, store.n_vars)
    basis = np.random.default_rng(seed).standard_normal((store.n_vars, width))
    basis, _ = np.linalg.qr(basis)
    for _ in range(max(power_iterations, 1)):
        basis, _ = np.linalg.qr(covariance_times(store, rows, basis, block_rows=block_rows))
    projected = basis.T @ covariance_times(store, rows, basis, block_rows=block_rows)
    values, vectors = np.linalg.eigh((projected + projected.T) / 2)
    order = np.argsort(values)[::-1][:rank]
    return basis @ vectors[:, order]
