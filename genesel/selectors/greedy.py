"""``greedy``: exact greedy forward selection for the validated ridge imputation error.

Each step adds the gene whose addition lowers the criterion most, scored for every
candidate at once from the moments (:class:`~genesel.selectors.greedy_scoring.GreedyState`),
so every prefix of the path is the greedy panel of its size.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from tqdm.auto import tqdm

from genesel.errors import ConfigError
from genesel.loader import LoaderConfig
from genesel.moments import Moments
from genesel.panel import PanelResult
from genesel.run import RunConfig
from genesel.selectors.base import PanelSelector, register_selector
from genesel.selectors.constraints import GeneConstraints
from genesel.selectors.greedy_scoring import CRITERIA, DEFAULT_GREEDY_RIDGE, GreedyState
from genesel.selectors.moments_file import store_moments
from genesel.store import Store
from genesel.training import TrainerConfig

logger = logging.getLogger(__name__)

#: The criterion unless the caller names one (``None``: validation if there are validation rows).
DEFAULT_CRITERION: str | None = "gcv"


@dataclass
class GreedyPath:
    """The greedy order and the criterion after each step.

    ``genes[:k]`` is the greedy panel of size ``k`` for every ``k``; ``errors[k - 1]`` its
    imputed-gene MSE on the criterion split (standardised units).
    """

    genes: np.ndarray
    errors: np.ndarray
    ridge: float
    criterion: str
    seconds: float = 0.0
    start: list[int] = field(default_factory=list)


def greedy_path(
    moments: Moments,
    n_genes: int,
    *,
    ridge: float = DEFAULT_GREEDY_RIDGE,
    start: Sequence[int] | np.ndarray = (),
    exclude: Sequence[int] | np.ndarray = (),
    criterion: str | None = DEFAULT_CRITERION,
    progress: bool = True,
    limits: GeneConstraints | None = None,
) -> GreedyPath:
    """Greedy forward selection up to ``n_genes`` genes (after the genes of ``start``, kept first).

    Genes of ``exclude`` are never candidates. With per-gene costs in ``limits`` the next
    gene is the one of largest criterion drop per unit cost (while no gene lowers the
    criterion: of smallest rise times cost), among the genes that still fit its budget
    (:meth:`GeneConstraints.fitting`); the path then ends at ``n_genes`` genes or when no
    gene fits.
    """
    began = time.perf_counter()
    state = GreedyState(moments, ridge=ridge, criterion=criterion)
    if state.criterion == "train":
        warnings.warn(
            "greedy: no validation rows for the validation criterion; choosing genes by the train error, "
            "which never stops rewarding more genes and can overfit (add a validation split, or use criterion='gcv')",
            stacklevel=2,
        )
    if not 1 <= n_genes < state.n_vars:
        raise ConfigError(
            f"greedy: n_genes={n_genes} must be between 1 and {state.n_vars - 1}",
            parameter="n_genes",
        )
    state.add_many(start)
    errors: list[float] = [float("nan")] * len(state.panel)
    if len(state.panel) > n_genes:
        raise ConfigError(
            f"greedy: {len(state.panel)} start genes exceed n_genes={n_genes}", parameter="n_genes"
        )
    excluded = np.asarray(exclude, dtype=np.int64)
    cost = None if limits is None else limits.cost
    with tqdm(
        total=n_genes,
        initial=len(state.panel),
        desc="greedy",
        unit="gene",
        disable=not progress,
        leave=False,
    ) as bar:
        while len(state.panel) < n_genes:
            scores = state.scores()
            scores[excluded] = np.inf
            if limits is not None and cost is not None:
                fits = limits.fitting(state.panel, n_genes) & np.isfinite(scores)
                if not fits.any():
                    if limits.budgeted:
                        break  # nothing more fits the budget
                    raise ConfigError(
                        f"greedy: no gene adds information after {len(state.panel)} genes; use ridge > 0",
                        parameter="param:ridge",
                    )
                best = cost_effective(scores, state.error(), cost, fits)
            else:
                best = int(np.argmin(scores))
            if not np.isfinite(scores[best]):
                raise ConfigError(
                    f"greedy: no gene adds information after {len(state.panel)} genes; use ridge > 0",
                    parameter="param:ridge",
                )
            state.add(best)
            errors.append(float(scores[best]))
            bar.update(1)
    return GreedyPath(
        np.asarray(state.panel, dtype=np.int64),
        np.asarray(errors),
        state.ridge,
        state.criterion,
        time.perf_counter() - began,
        list(start),
    )


def cost_effective(
    errors: np.ndarray, current: float, cost: np.ndarray, allowed: np.ndarray
) -> int:
    """The allowed gene of largest error drop per unit cost (``current - errors``) / ``cost``.

    When no allowed gene lowers the error, the one whose rise times its cost is smallest
    (a rise divided by the cost would favour expensive genes). Ties go to the lower index.
    """
    drop = current - errors
    key = np.where(drop > 0, drop / cost, drop * cost)
    key = np.where(allowed, key, -np.inf)
    return int(np.argmax(key))


@register_selector
class GreedySelector(PanelSelector):
    """Exact greedy forward selection for the validated ridge imputation error (method ``"greedy"``).

    The panel order is the greedy order, so a run at ``K`` holds every smaller greedy panel
    as a prefix (``extra["order"]`` / ``path_``); ``score`` is minus the validation
    imputed-gene MSE reached when the gene was added (higher = better). Included genes
    start the path (score NaN) and excluded genes are never candidates.

    Parameters
    ----------
    n_genes
        Panel size ``K``.
    seed
        Unused (the method is deterministic).
    ridge
        Penalty on the diagonal of the train covariance, relative to unit gene variance.
    criterion
        ``"gcv"`` (default), ``"validation"`` or ``"train"`` (see :class:`GreedyState`);
        ``"validation"`` without validation rows falls back to ``"train"`` with a warning.
    moments
        Moments file of the store (computed there and kept when missing); default
        ``<store>.moments.h5`` beside the store if it exists, else computed into a
        temporary file (see :func:`~genesel.selectors.moments_file.store_moments`).
    max_memory_gib
        Budget for the two ``D x D`` matrices (default half the machine's memory).
    """

    method: ClassVar[str] = "greedy"
    uses_moments: ClassVar[bool] = True

    def __init__(
        self,
        *,
        n_genes: int,
        seed: int = 0,
        ridge: float = DEFAULT_GREEDY_RIDGE,
        criterion: str | None = DEFAULT_CRITERION,
        moments: str | None = None,
        max_memory_gib: float | None = None,
    ) -> None:
        super().__init__(n_genes=n_genes, seed=seed)
        ridge = float(ridge)
        if not ridge >= 0 or not math.isfinite(ridge):
            raise ConfigError(
                f"greedy: ridge must be a non-negative number, got {ridge}",
                parameter="param:ridge",
            )
        if criterion is not None and criterion not in CRITERIA:
            raise ConfigError(
                f"greedy: criterion must be one of {CRITERIA} or null, got {criterion!r}",
                parameter="param:criterion",
            )
        self.ridge = ridge
        self.criterion = criterion
        self.moments = None if moments is None else str(moments)
        self.max_memory_gib = None if max_memory_gib is None else float(max_memory_gib)
        self.path_: GreedyPath | None = None

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
        """Run the greedy path to ``n_genes`` genes."""
        self.check_panel_size(store)
        progress = self.run_config(run).progress
        fixed = self.constraints
        with store_moments(
            store,
            self.moments,
            work_dir=work_dir,
            max_memory_gib=self.max_memory_gib,
            progress=progress,
        ) as moments:
            path = greedy_path(
                moments,
                self.n_genes,
                ridge=self.ridge,
                start=fixed.include,
                exclude=fixed.exclude,
                criterion=self.criterion,
                progress=progress,
                limits=fixed if fixed.costs is not None else None,
            )
        self.path_ = path
        logger.info(
            "greedy: %d genes in %.1f s (%s criterion, ridge %g)",
            path.genes.size,
            path.seconds,
            path.criterion,
            path.ridge,
        )
        return PanelResult(
            method=self.method,
            n_genes=int(path.genes.size),
            seed=self.seed,
            gene_indices=path.genes,
            var=store.var,
            scores=-path.errors,
            extra={
                "ranking": "greedy order (every prefix is the greedy panel of its size)"
                + ("; criterion drop per unit cost" if fixed.costs is not None else ""),
                "order": [int(g) for g in path.genes],
                "errors": [float(e) for e in path.errors],
                "criterion": path.criterion,
                "ridge": path.ridge,
                "seconds": path.seconds,
            },
        )
