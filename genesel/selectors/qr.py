"""``qr``: Q-DEIM sensor placement, pivoted QR on the leading principal directions.

A pivoted QR of the leading principal directions of the standardised train split (by
default only those above the noise threshold, weighted by their singular values; see
:mod:`genesel.selectors.spectrum`) picks the genes that best pin down those directions;
panels larger than the directions used are completed by the exact greedy criterion of
:mod:`genesel.selectors.greedy`.
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
from genesel.run import RunConfig
from genesel.selectors.base import PanelSelector, register_selector
from genesel.selectors.baselines import baseline_result
from genesel.selectors.constraints import GeneConstraints
from genesel.selectors.greedy import greedy_path
from genesel.selectors.greedy_scoring import DEFAULT_GREEDY_RIDGE
from genesel.selectors.moments_file import store_moments
from genesel.selectors.spectrum import (
    NOISE_THRESHOLDS,
    gavish_donoho_rank,
    gram_fits,
    leading_directions,
    marchenko_pastur_rank,
)
from genesel.store import Store
from genesel.training import TrainerConfig

logger = logging.getLogger(__name__)


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
    uses_moments: ClassVar[bool] = True  # completes a short panel greedily

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
                f"qr: n_components must be 'gd', 'mp', a positive integer or null, got {n_components!r}",
                parameter="param:n_components",
            )
        if (
            n_components is not None
            and not isinstance(n_components, str)
            and int(n_components) < 1
        ):
            raise ConfigError(
                f"qr: n_components must be positive, got {n_components}",
                parameter="param:n_components",
            )
        self.n_components: int | str | None = (
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
        run: RunConfig | None = None,
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> PanelResult:
        """Return the Q-DEIM pivots of the leading directions, completed greedily beyond them."""
        self.check_panel_size(store)
        run = self.run_config(run)
        rows = store.require_split("train")
        max_rank = min(rows.size - 1, store.n_vars)
        if max_rank < 1:
            raise ConfigError(f"qr: needs at least 2 train rows, got {rows.size}")
        threshold = self.n_components if isinstance(self.n_components, str) else None
        if threshold is not None:
            # the whole spectrum to place the edge, except on the randomized path (only K directions can count)
            randomized = (
                not gram_fits(rows.size, store.n_vars) and store.n_vars > self.exact_max_genes
            )
            wanted = self.n_genes if randomized else max_rank
        elif isinstance(self.n_components, int):
            wanted = self.n_components
        else:
            wanted = self.n_genes
        wanted = min(wanted, max_rank)
        values, directions, how = leading_directions(
            store,
            rows,
            wanted,
            block_rows=(loader or LoaderConfig()).block_rows,
            exact_max_genes=self.exact_max_genes,
            seed=run.seed,
            power_iterations=self.power_iterations,
            oversampling=self.oversampling,
        )
        info: dict[str, object] = {"pca": how}
        if threshold is not None:
            rank = self._rank_above_noise(
                values, threshold, n_obs=rows.size - 1, n_vars=store.n_vars, info=info
            )
        else:
            rank = min(wanted, self.n_genes)
        basis = directions[:, :rank].T
        if self.weighted:
            basis = basis * np.sqrt(np.clip(values[:rank], 0.0, None))[:, None]
        genes, scores = self._pivots(basis, rank)
        info.update(n_components=int(rank), weighted=self.weighted)
        if self.n_genes > genes.size:
            genes, scores = self._complete_greedily(
                store, genes, scores, work_dir=work_dir, progress=run.progress, info=info
            )
        ranking = "pivot order of Q-DEIM (|R_ii| descending)" + (
            ", then greedy completion" if info.get("completed") else ""
        )
        return baseline_result(self, store, genes, scores, seed=run.seed, ranking=ranking, **info)

    def _rank_above_noise(
        self,
        values: np.ndarray,
        threshold: str,
        *,
        n_obs: int,
        n_vars: int,
        info: dict[str, object],
    ) -> int:
        """Directions above the noise by ``threshold`` (``"gd"`` or ``"mp"``), between 1 and ``K``.

        Records the edge, the noise and the counts in ``info``.
        """
        rank, noise, edge = marchenko_pastur_rank(values, n_obs=n_obs, n_vars=n_vars)
        info.update(noise_variance=noise, mp_edge=edge, n_above_mp_edge=rank)
        if threshold == "gd":
            rank, gd_threshold = gavish_donoho_rank(values, n_obs=n_obs, n_vars=n_vars)
            info.update(gd_threshold=gd_threshold, n_above_gd_threshold=rank)
        info["n_above_edge"] = rank
        return max(1, min(rank, self.n_genes))

    def _pivots(self, basis: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """The included genes and the Q-DEIM pivots of ``basis`` (up to ``rank`` genes), and their scores.

        With a budget, the pivots in Q-DEIM order, skipping those that do not fit.
        """
        fixed = self.constraints
        if not fixed.budgeted:
            return constrained_pivots(basis, fixed, rank)
        pivots, pivot_scores = constrained_pivots(
            basis, fixed, basis.shape[0] + fixed.include.size
        )
        genes = fixed.complete_within_budget(
            pivots[fixed.include.size :], self.n_genes, stop_at=rank
        )
        return genes, pd.Series(pivot_scores, index=pivots).reindex(genes).to_numpy(float)

    def _complete_greedily(
        self,
        store: Store,
        genes: np.ndarray,
        scores: np.ndarray,
        *,
        work_dir: Path | None,
        progress: bool,
        info: dict[str, object],
    ) -> tuple[np.ndarray, np.ndarray]:
        """``genes`` completed to ``n_genes`` by greedy forward selection, and their scores.

        Records the genes added and the ridge in ``info``.
        """
        fixed = self.constraints
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
                exclude=fixed.exclude,
                progress=progress,
                limits=fixed if fixed.budgeted else None,
            )
        info.update(
            completed=int(path.genes.size - genes.size),
            completion="greedy (genesel.selectors.greedy defaults)",
            ridge=ridge,
        )
        return path.genes, np.concatenate([scores, -path.errors[genes.size :]])


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
