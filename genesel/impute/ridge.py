"""Ridge decoders and their errors from sufficient statistics, with the penalty validated.

Everything here works on :class:`PanelStatistics`: sums over one split's rows of the
standardised values ``z = (x - mean) / std`` (train mean and standard deviation), namely
the row count, ``sum z``, the panel-by-all-genes cross-products ``sum z_p z^T`` and the
per-gene sums of squares. They come either from one streaming pass over a split
(:func:`genesel.impute.linear.fit_linear`) or from the gene-by-gene moments of a store
(:mod:`genesel.moments`); the results are the same to rounding.

The decoder predicts every gene from the panel genes, ``z_hat = m + W^T (z_p - m_p)`` with
``m`` the train means of ``z`` and ``W`` the ridge solution on the centred train rows,
``W(lambda) = (G_pp + lambda n I)^-1 C_p``. ``lambda`` is relative to the per-sample
variance (standardised genes have variance 1). One eigendecomposition of ``G_pp`` gives
``W`` for every ``lambda`` of a grid, and with the validation statistics the validation
error of every ``lambda`` in ``O(K^2 D)`` operations, about the cost of one solve
(:func:`validation_errors`). Errors are measured on the *imputed* genes (those outside the
panel); panel genes are measured, so they carry no error.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import scipy.linalg.blas

from genesel.errors import ConfigError

logger = logging.getLogger(__name__)

#: The penalties tried by ``ridge="auto"`` (relative to unit gene variance), besides 0.
RIDGE_GRID = tuple(float(v) for v in np.logspace(-6, 3, 28))
#: Eigenvalues below this fraction of the largest count as zero (minimum-norm solution at 0).
EIGEN_RTOL = 1e-10
#: The name of the automatic choice.
AUTO = "auto"
#: The linear decoder's penalty unless the caller names one (CLI, ``tl`` and workflow pass it through).
DEFAULT_RIDGE = AUTO


@dataclass
class PanelStatistics:
    """Sums over the rows of one split, in standardised units.

    Attributes
    ----------
    n
        Number of rows.
    total
        ``sum_i z_i`` (length ``D``).
    cross
        ``sum_i z_ip z_i^T`` (``K x D``): panel genes against all genes.
    squares
        ``sum_i z_ij^2`` per gene (length ``D``).
    panel
        Column indices of the panel genes (``cross[:, panel]`` is the panel Gram matrix).
    """

    n: int
    total: np.ndarray
    cross: np.ndarray
    squares: np.ndarray
    panel: np.ndarray

    def shifted(
        self, center: np.ndarray, *, overwrite: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cross-products, panel Gram matrix and sums of squares of ``z - center``.

        ``sum (z_p - c_p)(z - c)^T = S - u_p c^T - c_p u^T`` with ``u = t - n c / 2``: two
        rank-one updates of a copy of ``S`` (no ``K x D`` temporaries), or of ``S`` itself
        with ``overwrite`` (``self.cross`` then holds the shifted sums: do not reuse it).
        """
        center = np.asarray(center, dtype=np.float64)
        cross = self.cross
        if not (
            overwrite
            and cross.dtype == np.float64
            and cross.flags.c_contiguous
            and cross.flags.writeable
        ):
            cross = np.array(cross, dtype=np.float64, order="C", copy=True)
        shift_cross_products(cross, self.total, self.n, center, self.panel)
        squares = self.squares - 2.0 * center * self.total + self.n * center**2
        return cross, cross[:, self.panel], squares


def shift_cross_products(
    cross: np.ndarray, total: np.ndarray, n: int, center: np.ndarray, rows: np.ndarray | slice
) -> None:
    """Shift raw cross-products to ``center`` in place.

    ``cross`` (C-contiguous float64, ``len(rows) x D``) holds ``S = sum z_rows z^T`` and
    becomes ``sum (z_rows - c_rows)(z - c)^T = S - u_rows c^T - c_rows u^T`` with
    ``u = t - n c / 2`` (``t = sum z``): two rank-one updates, no temporaries of its size.
    """
    u = total - 0.5 * n * center
    if cross.size:
        # cross.T is a Fortran-ordered D x rows view: dger updates it in place.
        scipy.linalg.blas.dger(-1.0, center, u[rows], a=cross.T, overwrite_a=1)
        scipy.linalg.blas.dger(-1.0, u, center[rows], a=cross.T, overwrite_a=1)


@dataclass
class RidgeChoice:
    """How the penalty was chosen.

    Attributes
    ----------
    ridge
        The penalty used.
    criterion
        ``"validation"`` (imputed-gene MSE on the validation split), ``"gcv"``
        (generalised cross-validation on train, when there is no validation split) or
        ``"fixed"`` (given by the caller).
    grid, errors
        Penalties tried and their criterion values (empty when fixed).
    """

    ridge: float
    criterion: str
    grid: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """A JSON-ready summary for ``model.json`` and the report."""
        return {
            "ridge": self.ridge,
            "criterion": self.criterion,
            "grid": self.grid,
            "errors": self.errors,
        }


class RidgeProblem:
    """The eigendecomposition of one panel's train Gram matrix, reused for every penalty.

    With ``C`` the centred train cross-products (``K x D``), ``G = C[:, panel]`` and
    ``G = V diag(s) V^T``, the decoder of penalty ``lambda`` is ``W = H C`` with
    ``H = V diag(1 / (s + lambda n)) V^T``. Errors on the imputed genes ``U`` need only
    ``K x K`` products of ``C_U``: ``Q = C_U C_U^T`` (for the train residuals and GCV) and,
    for a validation split with centred cross-products ``C'``, ``P = C_U C'_U^T``; each is
    one pass over ``K x D`` (``Q`` by ``dsyrk``), after which every penalty of the grid
    costs ``O(K^2)``.

    Parameters
    ----------
    train
        Train-split statistics of the panel.
    overwrite
        Centre the cross-products of ``train`` (and of the validation statistics given to
        :meth:`choose`) in place instead of in copies; they are not usable afterwards.
    """

    def __init__(self, train: PanelStatistics, *, overwrite: bool = False) -> None:
        if train.n < 2:
            raise ConfigError(f"a linear imputer needs at least 2 training samples, got {train.n}")
        self.train = train
        self.panel = np.asarray(train.panel, dtype=np.int64)
        self.mean = train.total / train.n
        self.overwrite = overwrite
        cross, gram, squares = train.shifted(self.mean, overwrite=overwrite)
        self.cross = cross
        self.residual_squares = squares
        self.gram = 0.5 * (gram + gram.T)
        values, vectors = scipy.linalg.eigh(self.gram, check_finite=False, driver="evr")
        self.values = np.clip(values, 0.0, None)
        self.vectors = vectors
        self.imputed = np.ones(train.total.size, dtype=bool)
        self.imputed[self.panel] = False
        self._imputed_gram: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Train rows."""
        return self.train.n

    def imputed_gram(self) -> np.ndarray:
        """``Q = C_U C_U^T`` (``K x K``): the whole ``C C^T`` by ``dsyrk`` less the panel block ``G G``."""
        if self._imputed_gram is None:
            upper = scipy.linalg.blas.dsyrk(1.0, self.cross.T, trans=1)  # C C^T, upper triangle
            full = np.triu(upper) + np.triu(upper, 1).T
            self._imputed_gram = full - self.gram @ self.gram
        return self._imputed_gram

    def shrinkage(self, ridge: float) -> np.ndarray:
        """``1 / (eigenvalue + ridge n)``, with zero for null directions when ``ridge == 0``."""
        if ridge < 0 or not math.isfinite(ridge):
            raise ConfigError(
                f"ridge must be a non-negative number, got {ridge}", parameter="ridge"
            )
        denominator = self.values + ridge * self.n
        tolerance = EIGEN_RTOL * max(float(self.values.max(initial=0.0)), 1e-300)
        with np.errstate(divide="ignore"):
            return np.where(denominator > tolerance, 1.0 / denominator, 0.0)

    def coefficients(self, ridge: float) -> tuple[np.ndarray, np.ndarray]:
        """``W = H C`` (``K x D``) and the intercept ``b`` (``D``) for one penalty."""
        inverse = (self.vectors * self.shrinkage(ridge)) @ self.vectors.T
        coef = inverse @ self.cross
        intercept = self.mean - coef.T @ self.mean[self.panel]
        return coef, intercept

    def validation_errors(self, validation: PanelStatistics, grid: np.ndarray) -> np.ndarray:
        """Imputed-gene MSE on ``validation`` for every penalty of ``grid``.

        ``sum_U ||c'_j - G' w_j||`` expands to ``sum_U c'_jj - 2 tr(H P) + tr(H G' H Q)``;
        in the eigenbasis ``tr(H P) = d . diag(V^T P V)`` and
        ``tr(H G' H Q) = d^T (V^T G' V o V^T Q V) d`` with ``d`` the shrinkage.
        """
        cross_v, gram_v, squares_v = validation.shifted(self.mean, overwrite=self.overwrite)
        imputed = self.imputed
        vectors = self.vectors
        product = self.cross @ cross_v.T - self.gram @ gram_v.T  # P = C_U C'_U^T
        del cross_v
        linear = np.einsum("ik,ik->k", vectors, product @ vectors)
        rotated_gram = vectors.T @ (0.5 * (gram_v + gram_v.T)) @ vectors
        quadratic = rotated_gram * (vectors.T @ self.imputed_gram() @ vectors)
        base = float(squares_v[imputed].sum())
        errors = []
        for ridge in grid:
            d = self.shrinkage(float(ridge))
            errors.append(base - 2.0 * d @ linear + d @ quadratic @ d)
        return np.asarray(errors) / (validation.n * imputed.sum())

    def gcv_errors(self, grid: np.ndarray) -> np.ndarray:
        """Generalised cross-validation of the imputed-gene train error for every penalty."""
        imputed = self.imputed
        energy = np.einsum(
            "ik,ik->k", self.vectors, self.imputed_gram() @ self.vectors
        )  # diag(V^T Q V)
        base = float(self.residual_squares[imputed].sum())
        errors = []
        for ridge in grid:
            d = self.shrinkage(float(ridge))
            # RSS = sum_j c_jj - 2 w_j^T C_pj + w_j^T G w_j, with W = V D V^T C.
            rss = base - 2.0 * d @ energy + (d**2 * self.values) @ energy
            dof = 1.0 + float((d * self.values).sum())  # the intercept is a degree of freedom too
            residual_dof = self.n - dof
            errors.append(
                self.n * max(rss, 0.0) / residual_dof**2 if residual_dof > 1e-6 else np.inf
            )
        return np.asarray(errors) / imputed.sum()

    def choose(
        self, validation: PanelStatistics | None, *, grid: tuple[float, ...] = RIDGE_GRID
    ) -> RidgeChoice:
        """The penalty of 0 and ``grid`` with the lowest validation error (GCV without validation rows)."""
        candidates = np.asarray((0.0, *grid))
        if validation is not None and validation.n > 0:
            errors, criterion = self.validation_errors(validation, candidates), "validation"
        else:
            errors, criterion = self.gcv_errors(candidates), "gcv"
        best = int(np.nanargmin(errors))
        return RidgeChoice(
            float(candidates[best]), criterion, candidates.tolist(), [float(e) for e in errors]
        )


def parse_ridge(value: float | str) -> float | str:
    """Accept ``"auto"`` or a non-negative number (as number or text); raise otherwise."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    return _as_ridge(value)


def _as_ridge(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"ridge must be 'auto' or a non-negative number, got {value!r}", parameter="ridge"
        ) from None
    if number < 0 or not math.isfinite(number):
        raise ConfigError(
            f"ridge must be 'auto' or a non-negative number, got {value!r}", parameter="ridge"
        )
    return number


def prediction_sums(
    coef: np.ndarray, intercept: np.ndarray, stats: PanelStatistics
) -> dict[str, np.ndarray]:
    """Per-gene sums over ``stats``' rows needed for errors and correlations of ``z_hat``.

    Returns ``squared_error`` (``sum (z - z_hat)^2``), ``predicted``, ``predicted2`` and
    ``cross`` (``sum z z_hat``), each of length ``D``; panel genes are predicted exactly.
    The quadratic terms ``w_j^T G w_j`` are ``||L^T w_j||^2`` with ``G = L L^T`` (one
    triangular product, half a general one), or ``w_j^T (G w_j)`` when ``G`` is singular.
    """
    n, total, panel = stats.n, stats.total, stats.panel
    gram = stats.cross[:, panel]
    gram = 0.5 * (gram + gram.T)
    t_p = total[panel]
    wx = np.einsum("kj,kj->j", coef, stats.cross)  # w_j^T sum z_p z_j
    wgw = _quadratic_forms(gram, coef)  # w_j^T G_pp w_j
    wt = coef.T @ t_p  # w_j^T sum z_p
    predicted = n * intercept + wt
    predicted2 = n * intercept**2 + 2.0 * intercept * wt + wgw
    cross = intercept * total + wx
    squared_error = stats.squares - 2.0 * cross + predicted2
    predicted[panel], predicted2[panel], cross[panel] = (
        total[panel],
        stats.squares[panel],
        stats.squares[panel],
    )
    squared_error[panel] = 0.0
    return {
        "squared_error": np.maximum(squared_error, 0.0),
        "predicted": predicted,
        "predicted2": predicted2,
        "cross": cross,
    }


def _quadratic_forms(gram: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``w_j^T G w_j`` for every column ``w_j`` of ``coef`` (``G`` symmetric positive semi-definite)."""
    if coef.size == 0:
        return np.zeros(coef.shape[1])
    try:
        factor = scipy.linalg.cholesky(gram, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return np.einsum("kj,kj->j", coef, gram @ coef)
    # coef.T is a Fortran-ordered D x K view; W^T L = (L^T W)^T.
    product = scipy.linalg.blas.dtrmm(1.0, np.asfortranarray(factor), coef.T, side=1, lower=1)
    return np.einsum("jk,jk->j", product, product)
