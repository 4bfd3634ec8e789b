"""The ridge imputation error of a panel, updated one gene at a time from the moments.

Greedy forward selection (:mod:`genesel.selectors.greedy`) and swap refinement
(:mod:`genesel.selectors.refine`) score panels with the :class:`GreedyState` below. Both
work in standardised units ``z`` centred at the train means (``y = z - m``), from the
store's gene-by-gene moments (:mod:`genesel.moments`). With ``Sigma`` the train covariance
plus ``ridge`` on the diagonal and ``V`` the validation second moment about the train
means, the ridge decoder of a panel ``S`` predicts ``y`` from ``y_S`` with
``W_S = Sigma_SS^-1 Sigma_S:`` (the decoder of :mod:`genesel.impute.ridge` at that penalty).
Two ``D x D`` matrices carry the state:

- ``R``, the Schur complement of ``Sigma`` with respect to ``S`` (``R <- R - r r^T / R_jj``
  with ``r = R[:, j]`` when ``j`` joins);
- ``Q``, the validation covariance of the residuals ``e = y - W_S^T y_S``; adding ``j``
  changes them to ``e - b e_j`` with ``b = r / R_jj``, so
  ``Q <- Q - b q^T - q b^T + Q_jj b b^T`` (``q = Q[:, j]``).

The validation error over the imputed genes ``U`` after adding ``j`` is then

    E(j) = tr Q_UU - 2 sum_i R_ij Q_ij / R_jj + Q_jj sum_i R_ij^2 / R_jj^2,

two column sums of elementwise products, so one step scores every candidate in ``O(D^2)``
(one fused pass over ``R`` and ``Q`` that also applies the previous step's update).
``E / (n_validation |U|)`` is exactly :meth:`genesel.impute.ridge.RidgeProblem.validation_errors`
of the refitted panel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.linalg

from genesel.errors import ConfigError
from genesel.moments import Moments

#: Criteria of the greedy choice (see :class:`GreedyState`).
CRITERIA = ("validation", "gcv", "train")
#: Default ridge penalty (relative to unit gene variance), chosen on real arrays (docs/methods.md).
DEFAULT_GREEDY_RIDGE = 1.0
#: Target size of one block of rows of ``R`` and ``Q`` in the fused pass (bytes).
BLOCK_BYTES = 2**21
#: Candidates whose Schur diagonal is below this fraction of the largest are skipped (``ridge = 0``).
PIVOT_RTOL = 1e-10


class GreedyState:
    """``R`` and ``Q`` of a panel, updated one gene at a time (see the module docstring).

    Parameters
    ----------
    moments
        The store's moments.
    ridge
        Penalty added to the diagonal of the train covariance (relative to unit variance).
    criterion
        ``"validation"`` (default when the moments hold validation rows): imputed-gene MSE
        on the validation split of the decoder fitted on train. ``"gcv"``: generalised
        cross-validation, ``MSE_in-sample / (1 - df / n)^2`` with ``df = |S| - ridge tr P``,
        of the decoder fitted on train and validation rows pooled. ``"train"``: in-sample MSE
        (no validation rows; never stops rewarding genes).
    """

    def __init__(self, moments: Moments, *, ridge: float, criterion: str | None = None) -> None:
        ridge = float(ridge)
        if not ridge >= 0 or not math.isfinite(ridge):
            raise ConfigError(f"ridge must be a non-negative number, got {ridge}")
        if criterion is None:
            criterion = "validation"
        if criterion not in CRITERIA:
            raise ConfigError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        if criterion == "validation" and moments.n("validation") == 0:
            criterion = "train"  # callers warn
        if moments.n("train") < 2:
            raise ConfigError(
                f"greedy selection needs at least 2 train rows, got {moments.n('train')}"
            )
        self.ridge = ridge
        self.criterion = criterion
        self.n_vars = moments.n_vars
        self.mean = moments.mean("train")
        self.n_rows = moments.n("train")
        self.R = moments.second_moment("train", self.mean)
        if criterion == "gcv" and moments.n("validation") > 0:  # pool train and validation rows
            n_t, n_v = moments.n("train"), moments.n("validation")
            self.n_rows = n_t + n_v
            pooled = (n_t * self.mean + n_v * moments.mean("validation")) / self.n_rows
            shift = self.mean - pooled
            self.R += np.outer(shift, shift)  # train moment about the pooled mean
            self.R *= n_t / self.n_rows
            other = moments.second_moment("validation", pooled)
            other *= n_v / self.n_rows
            self.R += other
            del other
            self.mean = pooled
        if criterion == "validation":
            self.Q = moments.second_moment("validation", self.mean)
            self.R[np.diag_indices(self.n_vars)] += ridge
        else:
            self.Q = self.R.copy()
            self.R[np.diag_indices(self.n_vars)] += ridge
        # gcv: coefficients B = P Sigma_S: (K x D) for ||beta_j||^2, and tr P, P = (Sigma_SS + ridge I)^-1
        self._coef = (
            np.zeros((16, self.n_vars)) if criterion == "gcv" else None
        )  # rows beyond len(panel) unused
        self._trace_p = 0.0
        self.panel: list[int] = []
        self.in_panel = np.zeros(self.n_vars, dtype=bool)
        self._pending: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._lower_stale = False
        self._block = max(1, BLOCK_BYTES // (8 * self.n_vars))
        self._scratch = np.empty((self._block, self.n_vars), dtype=np.float64)

    def error(self) -> float:
        """The criterion of the current panel (imputed-gene MSE, standardised units)."""
        diag = self._diagonal(self.Q, self.Q_pending_diagonal())
        value = float(diag[~self.in_panel].sum() / max((~self.in_panel).sum(), 1))
        if self.criterion == "gcv":
            dof = len(self.panel) - self.ridge * self._trace_p
            value = value / (1.0 - dof / self.n_rows) ** 2 if dof < self.n_rows else math.inf
        return value

    def Q_pending_diagonal(self) -> np.ndarray | None:
        """Change of ``diag Q`` by the update not yet applied."""
        if self._pending is None:
            return None
        _, b, u = self._pending
        return -2.0 * b * u

    @staticmethod
    def _diagonal(matrix: np.ndarray, change: np.ndarray | None) -> np.ndarray:
        diag = np.diagonal(matrix).copy()
        return diag if change is None else diag + change

    def _sweep(self) -> tuple[np.ndarray, np.ndarray]:
        """Apply the pending update and return ``sum_i R_ij Q_ij`` and ``sum_i R_ij^2`` (one pass).

        Only the upper triangle (by row blocks, from the block's first column on) is updated
        and read: a block's column sums give the upper part of the sums, its row sums beyond
        the diagonal block the mirrored lower part. The lower triangle goes stale until
        :meth:`full` restores it.
        """
        n, block, tmp = self.n_vars, self._block, self._scratch
        rq = np.zeros(n)
        rr = np.zeros(n)
        pending = self._pending
        for start in range(0, n, block):
            stop = min(start + block, n)
            rows_r, rows_q = self.R[start:stop, start:], self.Q[start:stop, start:]
            out = tmp[: stop - start, : n - start]
            if pending is not None:
                r, b, u = pending
                np.multiply.outer(r[start:stop], b[start:], out=out)
                rows_r -= out
                np.multiply.outer(b[start:stop], u[start:], out=out)
                rows_q -= out
                np.multiply.outer(u[start:stop], b[start:], out=out)
                rows_q -= out
            rq[start:] += np.einsum("ij,ij->j", rows_r, rows_q)
            rr[start:] += np.einsum("ij,ij->j", rows_r, rows_r)
            off = stop - start
            rq[start:stop] += np.einsum("ij,ij->i", rows_r[:, off:], rows_q[:, off:])
            rr[start:stop] += np.einsum("ij,ij->i", rows_r[:, off:], rows_r[:, off:])
        self._pending = None
        self._lower_stale = True
        return rq, rr

    def flush(self) -> None:
        """Apply the pending update (no-op when there is none)."""
        if self._pending is not None:
            self._sweep()

    def full(self) -> None:
        """Apply the pending update and copy the upper triangles of ``R`` and ``Q`` to the lower ones."""
        self.flush()
        if self._lower_stale:
            for start in range(0, self.n_vars, self._block):
                stop = min(start + self._block, self.n_vars)
                self.R[start:stop, :start] = self.R[:start, start:stop].T
                self.Q[start:stop, :start] = self.Q[:start, start:stop].T
            self._lower_stale = False

    def _row(self, matrix: np.ndarray, gene: int) -> np.ndarray:
        """Row ``gene`` of a symmetric matrix whose upper triangle is current."""
        return np.concatenate([matrix[:gene, gene], matrix[gene, gene:]])

    def scores(self) -> np.ndarray:
        """Imputed-gene MSE after adding each gene (``inf`` for panel genes and dependent ones)."""
        rq, rr = self._sweep()
        pivots = np.diagonal(self.R).copy()
        qd = np.diagonal(self.Q).copy()
        outside = ~self.in_panel
        trace = float(qd[outside].sum())
        ok = outside & (pivots > PIVOT_RTOL * max(float(pivots[outside].max(initial=0.0)), 1e-300))
        errors = np.full(self.n_vars, np.inf)
        p = pivots[ok]
        errors[ok] = trace - 2.0 * rq[ok] / p + qd[ok] * rr[ok] / p**2
        remaining = outside.sum() - 1
        errors /= max(remaining, 1)
        if self._coef is not None:  # GCV: df of S + j = |S| + 1 - ridge tr P_{S+j}
            coef = self._coef[: len(self.panel)]
            norms = np.einsum("kd,kd->d", coef, coef)
            dof = len(self.panel) + 1 - self.ridge * (self._trace_p + (1.0 + norms[ok]) / p)
            errors[ok] = np.where(
                dof < self.n_rows, errors[ok] / (1.0 - dof / self.n_rows) ** 2, np.inf
            )
        return errors

    def add_many(self, genes: Sequence[int] | np.ndarray) -> None:
        """Add ``genes`` (in order) to an empty panel in one block update.

        The state equals that of :meth:`add` called gene by gene (up to rounding), but the
        Schur complement ``R <- R - R_S:^T R_SS^-1 R_S:`` and ``Q <- Q - B^T M - M^T B``
        (``B = R_SS^-1 R_S:``, ``M = Q_S: - Q_SS B / 2``) are two blocked matrix products
        (``O(D^2 |S|)`` flops at BLAS speed) instead of ``|S|`` memory-bound sweeps: what
        makes a long ``include`` list cheap. A panel that is not empty falls back to :meth:`add`.
        """
        order = np.asarray(genes, dtype=np.int64).ravel()
        if order.size == 0:
            return
        if self.panel or self._pending is not None or self._lower_stale:
            for gene in order:
                self.add(int(gene))
            return
        if np.unique(order).size != order.size:
            raise ValueError("genes added to the panel must be distinct")
        r_rows = self.R[order]  # |S| x D, R is whole (no pending update, lower triangle current)
        try:
            factor = scipy.linalg.cho_factor(r_rows[:, order])
        except np.linalg.LinAlgError:
            raise ConfigError(
                f"the {order.size} genes added are linearly dependent (their covariance is singular); use ridge > 0"
            ) from None
        coef = scipy.linalg.cho_solve(factor, r_rows)  # B, |S| x D
        q_rows = self.Q[order]
        half = q_rows - 0.5 * (q_rows[:, order] @ coef)  # M
        for start in range(0, self.n_vars, self._block):
            stop = min(start + self._block, self.n_vars)
            self.R[start:stop] -= r_rows[:, start:stop].T @ coef
            self.Q[start:stop] -= coef[:, start:stop].T @ half + half[:, start:stop].T @ coef
        if self._coef is not None:
            self._coef = np.vstack([coef, np.zeros((max(16, order.size), self.n_vars))])
            self._trace_p = float(np.trace(scipy.linalg.cho_solve(factor, np.eye(order.size))))
        self.panel = [int(g) for g in order]
        self.in_panel[order] = True

    def add(self, gene: int) -> None:
        """Add ``gene`` to the panel (its update is applied by the next pass)."""
        gene = int(gene)
        if self.in_panel[gene]:
            raise ValueError(f"gene {gene} is already in the panel")
        self.flush()
        r = self._row(self.R, gene)
        q = self._row(self.Q, gene)
        pivot = r[gene]
        if not pivot > 0:
            raise ConfigError(
                f"gene {gene} is linearly dependent on the panel (Schur pivot {pivot:.3g}); use ridge > 0"
            )
        b = r / pivot
        u = q - 0.5 * q[gene] * b
        if self._coef is not None:
            k = len(self.panel)
            if k == self._coef.shape[0]:
                self._coef = np.vstack([self._coef, np.zeros_like(self._coef)])
            coef = self._coef[:k]
            beta = coef[:, gene].copy()
            self._trace_p += (1.0 + beta @ beta) / pivot
            coef -= np.outer(beta, b)
            self._coef[k] = b
        self._pending = (r, b, u)
        self.panel.append(gene)
        self.in_panel[gene] = True
