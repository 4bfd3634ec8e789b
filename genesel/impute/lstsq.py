"""Solving the (ridge) least-squares normal equations of a linear imputer.

From sufficient statistics (the cross-products of the panel genes with all genes and the
column sums; see :class:`~genesel.impute.ridge.PanelStatistics`): by Cholesky for a fixed
penalty, by SVD (minimum norm) for a singular system, and over a validated grid of penalties
by one eigendecomposition (:class:`~genesel.impute.ridge.RidgeProblem`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from genesel.errors import ConfigError, option_name
from genesel.impute.ridge import AUTO, PanelStatistics, RidgeChoice, RidgeProblem, parse_ridge

logger = logging.getLogger(__name__)

#: Below this reciprocal condition estimate of the panel Gram matrix, solve by SVD instead.
SINGULAR_RCOND = 1e-12


@dataclass
class LinearSolution:
    """A least-squares fit of all genes on the panel genes, in standardised units.

    Attributes
    ----------
    coef
        ``K x D`` float64 weights.
    intercept
        ``D`` float64 intercepts.
    n_samples
        Training rows used.
    ridge
        Penalty that was applied (see :func:`solve_normal_equations`).
    ridge_choice
        How the penalty was chosen (validated grid, GCV, or given), see
        :class:`~genesel.impute.ridge.RidgeChoice`.
    method
        ``"cholesky"`` or ``"lstsq"`` (minimum-norm fallback for a singular system).
    seconds
        Wall time of the accumulation pass and of the solve.
    """

    coef: np.ndarray
    intercept: np.ndarray
    n_samples: int
    ridge: float
    method: str
    seconds: dict[str, float]
    ridge_choice: RidgeChoice | None = None


def solve_statistics(train: PanelStatistics, *, ridge: float = 0.0) -> LinearSolution:
    """The (ridge) least-squares solution from train-split :class:`PanelStatistics`."""
    return solve_normal_equations(train.cross, train.total, train.n, train.panel, ridge=ridge)


def solve_validated(
    train: PanelStatistics,
    validation: PanelStatistics | None,
    *,
    ridge: float | str = AUTO,
    overwrite: bool = False,
) -> LinearSolution:
    """Solve with ``ridge`` given, or chosen on ``validation`` when ``ridge="auto"``.

    The automatic choice minimises the validation imputed-gene MSE over ``0`` and
    :data:`~genesel.impute.ridge.RIDGE_GRID` (generalised cross-validation on train when
    there are no validation rows), and takes the weights from the same eigendecomposition
    (``method="eigh"``; minimum-norm when the chosen penalty is 0 and the panel is
    rank-deficient); see :class:`~genesel.impute.ridge.RidgeProblem`. A fixed penalty is
    solved by Cholesky (:func:`solve_normal_equations`). With ``overwrite`` the automatic
    choice centres the cross-products of ``train`` and ``validation`` in place (a caller
    that reads them fresh and drops them after saves two ``K x D`` copies).
    """
    started = time.perf_counter()
    ridge = parse_ridge(ridge)
    if ridge != AUTO:
        solution = solve_statistics(train, ridge=float(ridge))
        solution.ridge_choice = RidgeChoice(float(ridge), "fixed")
        return solution
    problem = RidgeProblem(train, overwrite=overwrite)
    choice = problem.choose(validation)
    coef, intercept = problem.coefficients(choice.ridge)
    seconds = {"solve": time.perf_counter() - started}
    return LinearSolution(coef, intercept, int(train.n), choice.ridge, "eigh", seconds, choice)


def solve_normal_equations(
    cross: np.ndarray,
    column_sum: np.ndarray,
    n_samples: int,
    panel: np.ndarray,
    *,
    ridge: float = 0.0,
) -> LinearSolution:
    """Least squares with intercept from sufficient statistics.

    Minimises ``(1/n) ||Z - Z[:, panel] W - 1 b^T||^2 + ridge ||W||^2`` (no penalty on
    ``b``). Eliminating the intercept leaves the centred normal equations
    ``(C_pp + ridge * n * I) W = C_p``, with ``C = S - s_p s^T / n``, ``S = Z_p^T Z`` and
    ``s`` the column sums; then ``b = (s - W^T s_p) / n``. The symmetric positive-definite
    system is solved by Cholesky; a singular one by SVD (minimum-norm solution).

    Parameters
    ----------
    cross
        ``S``, ``K x D``.
    column_sum
        ``s``, length ``D``.
    n_samples
        ``n``.
    panel
        Column indices of the panel genes (``S[:, panel]`` is the panel Gram matrix).
    ridge
        Non-negative penalty, relative to the per-sample scale (standardised genes have
        unit variance, so ``ridge=1e-3`` adds 0.1 % to the Gram matrix diagonal).
    """
    if ridge < 0:
        raise ConfigError(f"ridge must be non-negative, got {ridge}", parameter="ridge")
    if n_samples < 2:
        raise ConfigError(f"a linear imputer needs at least 2 training samples, got {n_samples}")
    started = time.perf_counter()
    panel_sum = column_sum[panel]
    centred = cross - np.outer(panel_sum, column_sum) / n_samples
    gram = centred[:, panel]
    gram = 0.5 * (gram + gram.T)
    if ridge:
        gram[np.diag_indices_from(gram)] += ridge * n_samples
    method = "cholesky"
    try:
        factor = scipy.linalg.cho_factor(gram, lower=False, check_finite=True)
        diagonal = np.abs(np.diag(factor[0]))
        if diagonal.min() ** 2 < SINGULAR_RCOND * diagonal.max() ** 2:
            raise np.linalg.LinAlgError("ill-conditioned")
        coef = scipy.linalg.cho_solve(factor, centred, check_finite=False)
    except np.linalg.LinAlgError:
        method = "lstsq"
        coef = scipy.linalg.lstsq(gram, centred, cond=SINGULAR_RCOND, lapack_driver="gelsd")[0]
        weak = np.flatnonzero(
            np.diag(gram) <= SINGULAR_RCOND * max(float(np.diag(gram).max()), 1.0)
        )
        logger.warning(
            "the panel genes are linearly dependent on the training rows%s; used the minimum-norm "
            "least-squares solution (a small ridge, e.g. %s, makes the fit unique)",
            f" (constant panel columns at positions {weak.tolist()[:10]})" if weak.size else "",
            option_name("param:ridge", 0.001),
        )
    intercept = (column_sum - coef.T @ panel_sum) / n_samples
    return LinearSolution(
        coef,
        intercept,
        int(n_samples),
        float(ridge),
        method,
        {"solve": time.perf_counter() - started},
    )
