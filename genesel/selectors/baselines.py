"""Panels chosen without training: ``landmarks``, ``random``, ``hvg`` and ``qr``.

- ``landmarks``: the genes flagged ``var["landmark"]`` (the L1000 landmarks), ranked by
  their train-split standard deviation.
- ``random``: a seeded uniform draw.
- ``hvg``: scanpy's highly variable genes (``flavor="seurat"`` on log data) computed on the
  train split, top ``K`` by normalised dispersion.
- ``qr``: Q-DEIM sensor placement, a pivoted QR of the leading principal directions of the
  standardised train split (by default only those above the Marchenko-Pastur noise edge,
  weighted by their singular values); the pivots are the genes that best pin down those
  directions, and panels larger than the directions used are completed by the exact
  greedy criterion of :mod:`genesel.selectors.greedy`.
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
from genesel.panel import PanelResult
from genesel.selectors.base import PanelSelector, register_selector
from genesel.selectors.constraints import GeneConstraints
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


def _result(
    selector: PanelSelector, store: Store, genes: np.ndarray, scores: np.ndarray, **extra: object
) -> PanelResult:
    return PanelResult(
        method=selector.method,
        n_genes=int(np.asarray(genes).size),
        seed=selector.seed,
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
                f"landmarks: the data has {what} but n_genes={self.n_genes}; use --n-genes {fixed.include.size + landmarks.size}"
            )
        spread = store.std.astype(float)
        order = np.lexsort((landmarks, -spread[landmarks]))
        genes = np.concatenate([fixed.include, landmarks[order]])
        if fixed.budgeted and fixed.panel_cost(genes) > fixed.budget * (1.0 + 1e-9):
            raise ConfigError(
                f"landmarks: the landmark panel of {genes.size} genes costs {fixed.panel_cost(genes):g}, more than the budget "
                f"{fixed.budget:g}; raise the budget or use greedy, lassonet or logitnormal to choose within it"
            )
        scores = spread[genes]
        scores[: fixed.include.size] = np.nan
        return _result(self, store, genes, scores, ranking="train standard deviation, descending")


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
        genes, scores = _completed(self, priority)
        return _result(self, store, genes, scores, ranking="seeded uniform priority")


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
                f"hvg: flavor must be one of {HVG_FLAVORS} (log data), got {flavor!r}"
            )
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
            rows = np.sort(
                np.random.default_rng(self.seed).choice(rows, size=self.max_rows, replace=False)
            )
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
        table = sc.pp.highly_variable_genes(
            adata, flavor=self.flavor, n_bins=self.n_bins, n_top_genes=self.n_genes, inplace=False
        )
        dispersion = np.asarray(table["dispersions_norm"], dtype=float)
        genes, scores = _completed(self, dispersion)
        return _result(
            self,
            store,
            genes,
            scores,
            ranking=f"scanpy highly_variable_genes(flavor={self.flavor!r}) normalised dispersion, descending",
            n_rows=int(rows.size),
        )


@register_selector
class QRSelector(PanelSelector):
    """Q-DEIM: pivoted QR on the leading principal directions (method ``"qr"``).

    The principal directions of the standardised train split come from the ``n x n`` Gram
    matrix when the train rows are fewer than the genes (and fit in memory), else from the
    ``D x D`` covariance accumulated out-of-core in row blocks when ``D <= exact_max_genes``,
    else from a randomized subspace iteration whose every step is one pass over the blocks.

    By default only the directions above the noise threshold count (``n_components="gd"``:
    the Gavish-Donoho optimal hard threshold for singular values with unknown noise,
    ``s > omega(beta) s_median``; ``"mp"``: the Marchenko-Pastur bulk edge
    ``sigma^2 (1 + sqrt(D / (n - 1)))^2`` with ``sigma^2`` estimated from the median
    eigenvalue; both fall back to the edge with ``sigma^2 = 1``, the largest possible, when
    only part of the spectrum is computed), each weighted by the square root of
    its eigenvalue (``weighted``), so the pivots are the greedy maximum-residual-variance
    genes of the denoised covariance rather than genes that pin down noise directions. When
    ``K`` exceeds the ``r`` directions used (or the train rank ``n - 1``), the first ``r``
    pivots are completed by exact greedy forward selection for the ridge imputation error
    (:mod:`genesel.selectors.greedy` with its default criterion, from the store's moments). ``score`` is ``|R_ii|``
    for pivots and minus the validation imputed-gene MSE for completed genes.

    Parameters
    ----------
    n_genes
        Panel size ``K``.
    seed
        Seed of the randomized start.
    n_components
        ``r``, principal directions used: ``"gd"`` (default) or ``"mp"`` (those above the
        noise threshold, at most ``K``), a number, or ``None`` (``K``, the unregularised Q-DEIM; with
        ``weighted=False`` this is the original method).
    weighted
        Scale each direction by the square root of its eigenvalue before the pivoted QR.
    ridge, moments, max_memory_gib
        Greedy completion (see :class:`genesel.selectors.greedy.GreedySelector`; ``ridge``
        ``None``: the greedy default).
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
        n_components: int | str | None = "gd",
        weighted: bool = True,
        ridge: float | None = None,
        moments: str | None = None,
        max_memory_gib: float | None = None,
        exact_max_genes: int = 4000,
        power_iterations: int = 6,
        oversampling: int = 20,
    ) -> None:
        super().__init__(n_genes=n_genes, seed=seed)
        if isinstance(n_components, str) and n_components.lower() not in NOISE_THRESHOLDS:
            raise ConfigError(
                f"qr: n_components must be 'gd', 'mp', a positive integer or null, got {n_components!r}"
            )
        if (
            n_components is not None
            and not isinstance(n_components, str)
            and int(n_components) < 1
        ):
            raise ConfigError(f"qr: n_components must be positive, got {n_components}")
        self.n_components = (
            n_components.lower()
            if isinstance(n_components, str)
            else (None if n_components is None else int(n_components))
        )
        self.weighted = bool(weighted)
        self.ridge = None if ridge is None else float(ridge)
        self.moments = None if moments is None else str(moments)
        self.max_memory_gib = None if max_memory_gib is None else float(max_memory_gib)
        self.exact_max_genes = int(exact_max_genes)
        self.power_iterations = int(power_iterations)
        self.oversampling = int(oversampling)

    def select(
        self,
        store: Store,
        *,
        trainer: TrainerConfig | None = None,
        loader: LoaderConfig | None = None,
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> PanelResult:
        """Return the Q-DEIM pivots of the leading directions, completed greedily beyond them."""
        self.check_panel_size(store)
        rows = store.require_split("train")
        max_rank = min(rows.size - 1, store.n_vars)
        if max_rank < 1:
            raise ConfigError(f"qr: needs at least 2 train rows, got {rows.size}")
        block = (loader or LoaderConfig()).block_rows
        wanted = (
            self.n_genes
            if self.n_components is None or self.n_components in NOISE_THRESHOLDS
            else self.n_components
        )
        if self.n_components in NOISE_THRESHOLDS:
            # the whole spectrum to place the edge, except on the randomized path (only K directions can count)
            randomized = (
                not gram_fits(rows.size, store.n_vars) and store.n_vars > self.exact_max_genes
            )
            wanted = self.n_genes if randomized else max_rank
        wanted = min(wanted, max_rank)
        values, directions, how = leading_directions(
            store,
            rows,
            wanted,
            block_rows=block,
            exact_max_genes=self.exact_max_genes,
            seed=self.seed,
            power_iterations=self.power_iterations,
            oversampling=self.oversampling,
        )
        info: dict[str, object] = {"pca": how}
        if self.n_components in NOISE_THRESHOLDS:
            rank, noise, edge = marchenko_pastur_rank(
                values, n_obs=rows.size - 1, n_vars=store.n_vars
            )
            info.update(noise_variance=noise, mp_edge=edge, n_above_mp_edge=rank)
            if self.n_components == "gd":
                rank, threshold = gavish_donoho_rank(
                    values, n_obs=rows.size - 1, n_vars=store.n_vars
                )
                info.update(gd_threshold=threshold, n_above_gd_threshold=rank)
            info["n_above_edge"] = rank
            rank = max(1, min(rank, self.n_genes))
        else:
            rank = min(wanted, self.n_genes)
        basis = directions[:, :rank].T
        if self.weighted:
            basis = basis * np.sqrt(np.clip(values[:rank], 0.0, None))[:, None]
        fixed = self.constraints
        if (
            fixed.budgeted
        ):  # the pivots in Q-DEIM order, skipping those that do not fit, up to rank genes
            pivots, pivot_scores = constrained_pivots(
                basis, fixed, basis.shape[0] + fixed.include.size
            )
            genes = fixed.complete_within_budget(
                pivots[fixed.include.size :], self.n_genes, stop_at=rank
            )
            scores = pd.Series(pivot_scores, index=pivots).reindex(genes).to_numpy(float)
        else:
            genes, scores = constrained_pivots(basis, fixed, rank)
        info.update(n_components=int(rank), weighted=self.weighted)
        if self.n_genes > genes.size:
            from genesel.selectors.greedy import greedy_path
            from genesel.selectors.greedy_scoring import DEFAULT_GREEDY_RIDGE
            from genesel.selectors.moments_file import store_moments

            progress = trainer.progress if trainer is not None else True
            with store_moments(
                store,
                self.moments,
                work_dir=work_dir,
                max_memory_gib=self.max_memory_gib,
                progress=progress,
            ) as moments:
                ridge = DEFAULT_GREEDY_RIDGE if self.ridge is None else self.ridge
                path = greedy_path(
                    moments,
                    self.n_genes,
                    ridge=ridge,
                    start=genes.tolist(),
                    exclude=self.constraints.exclude,
                    progress=progress,
                    limits=fixed if fixed.budgeted else None,
                )
            completed = path.genes.size - genes.size
            scores = np.concatenate([scores, -path.errors[genes.size :]])
            genes = path.genes
            info.update(
                completed=int(completed),
                completion="greedy (genesel.selectors.greedy defaults)",
                ridge=ridge,
            )
        ranking = "pivot order of Q-DEIM (|R_ii| descending)" + (
            ", then greedy completion" if info.get("completed") else ""
        )
        return _result(self, store, genes, scores, ranking=ranking, **info)


def constrained_pivots(
    basis: np.ndarray, constraints: GeneConstraints, rank: int
) -> tuple[np.ndarray, np.ndarray]:
    """Q-DEIM pivots of ``basis`` (directions x genes) after the included genes, never an excluded one.

    The included genes come first; the directions they already pin down are projected out
    of the basis (Gram-Schmidt against their columns), and a pivoted QR of the remaining
    candidate columns chooses ``rank`` minus the included genes more (none when the
    included genes are as many as ``rank``). Returns the genes and their scores: NaN for
    the included genes, ``|R_ii|`` for the pivots. Without constraints this is the plain
    pivoted QR's first ``rank`` pivots.
    """
    include = constraints.include
    candidates = np.flatnonzero(constraints.candidate_mask(basis.shape[1]))
    n_pivots = max(0, min(rank, candidates.size) - include.size)
    residual = basis
    if include.size:
        fixed, _ = np.linalg.qr(basis[:, include])
        residual = basis - fixed @ (fixed.T @ basis)
    if n_pivots == 0:
        return include.copy(), np.full(include.size, np.nan)
    _, r_factor, pivots = scipy.linalg.qr(residual[:, candidates], mode="economic", pivoting=True)
    genes = np.concatenate([include, candidates[pivots[:n_pivots]]])
    scores = np.concatenate([np.full(include.size, np.nan), np.abs(np.diag(r_factor))[:n_pivots]])
    return genes, scores


def marchenko_pastur_median(beta: float) -> float:
    """Median of the Marchenko-Pastur law with ratio ``beta <= 1`` and unit variance."""
    import scipy.integrate
    import scipy.optimize

    beta = min(max(float(beta), 1e-12), 1.0)
    low, high = (1.0 - np.sqrt(beta)) ** 2, (1.0 + np.sqrt(beta)) ** 2

    def density(x: float) -> float:
        return float(np.sqrt(max((high - x) * (x - low), 0.0)) / (2.0 * np.pi * beta * x))

    def mass_below(t: float) -> float:
        return float(scipy.integrate.quad(density, low, t, limit=200)[0]) - 0.5

    return float(scipy.optimize.brentq(mass_below, low + 1e-12, high))


def gavish_donoho_rank(values: np.ndarray, *, n_obs: int, n_vars: int) -> tuple[int, float]:
    """Eigenvalues above the Gavish-Donoho optimal hard threshold (unknown noise level).

    The threshold on singular values is ``omega(beta) * median singular value`` with
    ``omega(beta) = 0.56 beta^3 - 0.95 beta^2 + 1.82 beta + 1.43`` and
    ``beta = min(n, D) / max(n, D)`` (Gavish & Donoho 2014, eq. 5), i.e. eigenvalues above
    ``omega^2`` times the median of the ``min(n, D)`` nonzero ones. Without the whole nonzero
    spectrum, the Marchenko-Pastur edge with unit noise (:func:`marchenko_pastur_rank`).
    Returns ``(r, eigenvalue threshold)``.
    """
    values = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    m = min(n_obs, n_vars)
    if values.size < m:
        rank, _, edge = marchenko_pastur_rank(values, n_obs=n_obs, n_vars=n_vars)
        return rank, edge
    beta = m / max(n_obs, n_vars)
    omega = 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43
    threshold = float(omega**2 * np.median(values[:m]))
    return int((values > threshold).sum()), threshold


def marchenko_pastur_rank(
    values: np.ndarray, *, n_obs: int, n_vars: int
) -> tuple[int, float, float]:
    """Eigenvalues above the Marchenko-Pastur edge of a standardised covariance.

    ``values`` are the eigenvalues (descending; at least the nonzero ``min(n, D)`` ones when
    they are available) of ``X^T X / n`` for ``n = n_obs`` independent rows. The noise
    variance is estimated from their median, which lies in the noise bulk when the signal
    directions are few (Gavish & Donoho 2014): the nonzero eigenvalues of pure noise follow
    ``sigma^2 max(1, D/n)`` times the Marchenko-Pastur law of ratio ``min(n, D) / max(n, D)``.
    The edge is ``sigma^2 (1 + sqrt(D / n))^2``. Returns ``(r, sigma^2, edge)``.
    """
    values = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    m = min(n_obs, n_vars)
    beta = m / max(n_obs, n_vars)
    bulk = values[:m]
    scale = max(1.0, n_vars / max(n_obs, 1))
    noise = (
        float(np.median(bulk)) / (scale * marchenko_pastur_median(beta)) if bulk.size == m else 1.0
    )
    noise = min(max(noise, 1e-12), 1.0)
    edge = noise * (1.0 + np.sqrt(n_vars / max(n_obs, 1))) ** 2
    return int((values > edge).sum()), noise, float(edge)


#: Rules for the number of principal directions above the noise (``n_components``).
NOISE_THRESHOLDS = ("gd", "mp")
#: Largest train matrix (bytes, float64) whose ``n x n`` Gram matrix gives the principal directions.
GRAM_MAX_BYTES = 2**30


def gram_fits(n_rows: int, n_vars: int) -> bool:
    """Whether the train rows are fewer than the genes and fit in memory as float64."""
    return n_rows <= n_vars and n_rows * n_vars * 8 <= GRAM_MAX_BYTES


def leading_directions(
    store: Store,
    rows: np.ndarray,
    rank: int,
    *,
    block_rows: int = 4096,
    exact_max_genes: int = 4000,
    seed: int = 0,
    power_iterations: int = 6,
    oversampling: int = 20,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Top ``rank`` eigenvalues and eigenvectors (genes x rank) of the standardised train covariance.

    Few rows (:func:`gram_fits`): the ``n x n`` Gram matrix. Else ``D <= exact_max_genes``:
    the exact ``D x D`` covariance. Else randomized subspace iteration.
    """
    if gram_fits(rows.size, store.n_vars):
        values_x = np.empty((rows.size, store.n_vars), dtype=np.float64)
        for start in range(0, rows.size, block_rows):
            values_x[start : start + block_rows] = store.read_rows(
                rows[start : start + block_rows]
            )
        gram = values_x @ values_x.T / rows.size
        eigenvalues, left = np.linalg.eigh(0.5 * (gram + gram.T))
        order = np.argsort(eigenvalues)[::-1][:rank]
        eigenvalues = np.clip(eigenvalues[order], 0.0, None)
        directions = values_x.T @ left[:, order]
        norms = np.linalg.norm(directions, axis=0)
        directions /= np.where(norms > 0, norms, 1.0)
        return eigenvalues, directions, "train Gram matrix"
    if store.n_vars <= exact_max_genes:
        return (
            *leading_directions_exact(store, rows, rank, block_rows=block_rows),
            "exact covariance",
        )
    eigenvalues, directions = leading_directions_randomized(
        store,
        rows,
        rank,
        block_rows=block_rows,
        seed=seed,
        power_iterations=power_iterations,
        oversampling=oversampling,
    )
    return eigenvalues, directions, "randomized subspace iteration"


def covariance_times(
    store: Store, rows: np.ndarray, matrix: np.ndarray, *, block_rows: int = 4096
) -> np.ndarray:
    """``C @ matrix`` for the covariance ``C = X^T X / n`` of the standardised ``rows``, one pass."""
    out = np.zeros((store.n_vars, matrix.shape[1]), dtype=np.float64)
    for start in range(0, rows.size, block_rows):
        values = store.read_rows(rows[start : start + block_rows]).astype(np.float64)
        out += values.T @ (values @ matrix)
    return out / rows.size


def leading_directions_exact(
    store: Store, rows: np.ndarray, rank: int, *, block_rows: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``rank`` eigenvalues and eigenvectors (genes x rank) of the standardised covariance, accumulated in blocks."""
    covariance = np.zeros((store.n_vars, store.n_vars), dtype=np.float64)
    for start in range(0, rows.size, block_rows):
        values = store.read_rows(rows[start : start + block_rows]).astype(np.float64)
        covariance += values.T @ values
    covariance /= rows.size
    values, vectors = scipy.linalg.eigh(
        covariance, subset_by_index=[store.n_vars - rank, store.n_vars - 1]
    )
    return np.clip(values[::-1], 0.0, None), vectors[:, ::-1]


def leading_directions_randomized(
    store: Store,
    rows: np.ndarray,
    rank: int,
    *,
    block_rows: int = 4096,
    seed: int = 0,
    power_iterations: int = 6,
    oversampling: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``rank`` eigenvalues and eigenvectors by randomized subspace iteration (Halko et al. 2011), out-of-core."""
    width = min(rank + oversampling, store.n_vars)
    basis = np.random.default_rng(seed).standard_normal((store.n_vars, width))
    basis, _ = np.linalg.qr(basis)
    for _ in range(max(power_iterations, 1)):
        basis, _ = np.linalg.qr(covariance_times(store, rows, basis, block_rows=block_rows))
    projected = basis.T @ covariance_times(store, rows, basis, block_rows=block_rows)
    values, vectors = np.linalg.eigh((projected + projected.T) / 2)
    order = np.argsort(values)[::-1][:rank]
    return np.clip(values[order], 0.0, None), basis @ vectors[:, order]
