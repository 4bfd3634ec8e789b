"""``greedy``: exact forward selection for imputation, and swap refinement of any panel.

Both work in standardised units ``z`` centred at the train means (``y = z - m``), from the
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

Swap refinement (:func:`refine_panel`) removes one panel gene ``s`` by the inverse update
(``R_T = R_S + w w^T / P_ss``, ``Q_T = Q_S + w c^T + c w^T + sigma w w^T`` with
``P = Sigma_SS^-1``, ``w = Sigma_:S P[:, s]``, ``c`` the validation covariance of the residuals
with ``s``'s own residual and ``sigma`` its variance) and scores every ``(s, j)`` swap at
once with two ``D x D x K`` products.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.linalg.blas as blas
from tqdm.auto import tqdm

from genesel.errors import ConfigError
from genesel.loader import LoaderConfig
from genesel.moments import Moments, check_memory, compute_moments, open_moments
from genesel.panel import PanelResult
from genesel.selectors.base import PanelSelector, register_selector
from genesel.selectors.constraints import GeneConstraints
from genesel.store import Store
from genesel.training import TrainerConfig

logger = logging.getLogger(__name__)

#: Criteria of the greedy choice (see :class:`GreedyState`).
CRITERIA = ("validation", "gcv", "train")
#: The criterion unless the caller names one (``None``: validation if there are validation rows).
DEFAULT_CRITERION: str | None = "gcv"
#: Default ridge penalty (relative to unit gene variance), chosen on real arrays (docs/methods.md).
DEFAULT_GREEDY_RIDGE = 1.0
#: Target size of one block of rows of ``R`` and ``Q`` in the fused pass (bytes).
BLOCK_BYTES = 2**21
#: Candidates whose Schur diagonal is below this fraction of the largest are skipped (``ridge = 0``).
PIVOT_RTOL = 1e-10


def moments_path_for(store: Store) -> Path | None:
    """The moments file autodetected beside a store: ``<store>.moments.h5`` (``None`` if the store has no path)."""
    if store.path is None:
        return None
    path = Path(store.path)
    return (
        path.with_name(path.name + ".moments.h5")
        if not path.name.endswith(".h5ad")
        else path.with_suffix(".moments.h5")
    )


@contextlib.contextmanager
def store_moments(
    store: Store,
    moments: str | Path | None = None,
    *,
    work_dir: Path | None = None,
    max_memory_gib: float | None = None,
    progress: bool = True,
) -> Iterator[Moments]:
    """Open the moments of ``store`` for a selector.

    ``moments`` names the file: used if it exists, else computed there and kept (a cache for
    later runs). Without it, ``<store>.moments.h5`` beside the store is used if it exists,
    else the moments are computed into a temporary file (in ``work_dir`` when given, which
    must then have room for ``3 x 8 D^2`` bytes) and removed afterwards. The memory check of
    :func:`genesel.moments.check_memory` runs first.
    """
    check_memory(store.n_vars, max_memory_gib=max_memory_gib)
    path = Path(moments) if moments is not None else moments_path_for(store)
    if path is not None and path.exists():
        with open_moments(path, store) as handle:
            yield handle
        return
    if moments is not None:
        logger.info("computing the gene-by-gene moments of the store into %s", path)
        compute_moments(store, path, max_memory_gib=max_memory_gib, progress=progress)
        with open_moments(path, store) as handle:
            yield handle
        return
    with tempfile.TemporaryDirectory(prefix="genesel-moments-", dir=work_dir) as tmp:
        logger.info("computing the gene-by-gene moments of the store (temporary file)")
        path = compute_moments(
            store, Path(tmp) / "moments.h5", max_memory_gib=max_memory_gib, progress=progress
        )
        with open_moments(path, store) as handle:
            yield handle


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

    def add_many(self, genes: Sequence[int]) -> None:
        """Add ``genes`` (in order) to an empty panel in one block update.

        The state equals that of :meth:`add` called gene by gene (up to rounding), but the
        Schur complement ``R <- R - R_S:^T R_SS^-1 R_S:`` and ``Q <- Q - B^T M - M^T B``
        (``B = R_SS^-1 R_S:``, ``M = Q_S: - Q_SS B / 2``) are two blocked matrix products
        (``O(D^2 |S|)`` flops at BLAS speed) instead of ``|S|`` memory-bound sweeps: what
        makes a long ``include`` list cheap. A panel that is not empty falls back to :meth:`add`.
        """
        genes = np.asarray(genes, dtype=np.int64).ravel()
        if genes.size == 0:
            return
        if self.panel or self._pending is not None or self._lower_stale:
            for gene in genes:
                self.add(int(gene))
            return
        if np.unique(genes).size != genes.size:
            raise ValueError("genes added to the panel must be distinct")
        r_rows = self.R[genes]  # |S| x D, R is whole (no pending update, lower triangle current)
        try:
            factor = scipy.linalg.cho_factor(r_rows[:, genes])
        except np.linalg.LinAlgError:
            raise ConfigError(
                f"the {genes.size} genes added are linearly dependent (their covariance is singular); use ridge > 0"
            ) from None
        coef = scipy.linalg.cho_solve(factor, r_rows)  # B, |S| x D
        q_rows = self.Q[genes]
        half = q_rows - 0.5 * (q_rows[:, genes] @ coef)  # M
        for start in range(0, self.n_vars, self._block):
            stop = min(start + self._block, self.n_vars)
            self.R[start:stop] -= r_rows[:, start:stop].T @ coef
            self.Q[start:stop] -= coef[:, start:stop].T @ half + half[:, start:stop].T @ coef
        if self._coef is not None:
            self._coef = np.vstack([coef, np.zeros((max(16, genes.size), self.n_vars))])
            self._trace_p = float(np.trace(scipy.linalg.cho_solve(factor, np.eye(genes.size))))
        self.panel = [int(g) for g in genes]
        self.in_panel[genes] = True

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
    start: Sequence[int] = (),
    exclude: Sequence[int] = (),
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
        raise ConfigError(f"greedy: n_genes={n_genes} must be between 1 and {state.n_vars - 1}")
    state.add_many(start)
    errors: list[float] = [float("nan")] * len(state.panel)
    if len(state.panel) > n_genes:
        raise ConfigError(f"greedy: {len(state.panel)} start genes exceed n_genes={n_genes}")
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
            if cost is not None:
                fits = limits.fitting(state.panel, n_genes) & np.isfinite(scores)
                if not fits.any():
                    if limits.budgeted:
                        break  # nothing more fits the budget
                    raise ConfigError(
                        f"greedy: no gene adds information after {len(state.panel)} genes; use ridge > 0"
                    )
                best = cost_effective(scores, state.error(), cost, fits)
            else:
                best = int(np.argmin(scores))
            if not np.isfinite(scores[best]):
                raise ConfigError(
                    f"greedy: no gene adds information after {len(state.panel)} genes; use ridge > 0"
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


@dataclass
class Refinement:
    """The result of :func:`refine_panel`: the panel after swaps, and what was swapped."""

    genes: np.ndarray
    error_before: float
    error_after: float
    swaps: list[dict[str, Any]]
    rounds: int
    converged: bool
    criterion: str
    ridge: float

    def record(self) -> dict[str, Any]:
        """JSON-ready summary (``config.json`` ``extra.refine``)."""
        return {
            "error_before": self.error_before,
            "error_after": self.error_after,
            "swaps": self.swaps,
            "rounds": self.rounds,
            "converged": self.converged,
            "criterion": self.criterion,
            "ridge": self.ridge,
        }


def _panel_inverse(
    moments: Moments, state: GreedyState, panel: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``P = Sigma_SS^-1``, ``B = P Sigma_S:`` (``K x D``), ``V_S:`` and ``V_SS`` of the panel."""
    train = moments.panel_statistics("train", panel)
    m = state.mean
    n = train.n
    sigma_rows = (
        train.cross
        - np.outer(train.total[panel], m)
        - np.outer(m[panel], train.total)
        + n * np.outer(m[panel], m)
    ) / n
    sigma_rows[np.arange(panel.size), panel] += state.ridge
    split = "validation" if state.criterion == "validation" else "train"
    other = moments.panel_statistics(split, panel)
    nv = other.n
    v_rows = (
        other.cross
        - np.outer(other.total[panel], m)
        - np.outer(m[panel], other.total)
        + nv * np.outer(m[panel], m)
    ) / nv
    sigma_pp = 0.5 * (sigma_rows[:, panel] + sigma_rows[:, panel].T)
    inverse = np.linalg.inv(sigma_pp)
    inverse = 0.5 * (inverse + inverse.T)
    return inverse, inverse @ sigma_rows, v_rows, 0.5 * (v_rows[:, panel] + v_rows[:, panel].T)


def swap_errors(moments: Moments, state: GreedyState) -> tuple[np.ndarray, np.ndarray]:
    """Imputed-gene MSE of every swap: ``K x D`` (row ``s``: panel position, column ``j``: gene in).

    Entries for genes already in the panel are ``inf`` except ``j = s``, which is the current
    error. Also returns the error of each panel without its gene ``s`` (length ``K``).
    """
    state.flush()
    panel = np.asarray(state.panel, dtype=np.int64)
    k, n = panel.size, state.n_vars
    inverse, coef, v_rows, v_pp = _panel_inverse(moments, state, panel)
    diag_p = np.diagonal(inverse).copy()
    alpha = 1.0 / diag_p  # K
    normalised = inverse / diag_p  # column s: P[:, s] / P_ss
    W = coef.T  # D x K: column s is w_s = Sigma_:S P[:, s]
    C = v_rows.T @ normalised - W @ (v_pp @ normalised)  # D x K
    sigma = np.einsum("ks,ks->s", normalised, v_pp @ normalised)  # K
    state.full()
    R, Q = state.R, state.Q
    RW = R @ W
    RC = R @ C
    QW = Q @ W
    rq = np.einsum("ij,ij->j", R, Q)
    rr = np.einsum("ij,ij->j", R, R)
    rd = np.diagonal(R).copy()
    qd = np.diagonal(Q).copy()
    outside = ~state.in_panel
    trace = float(qd[outside].sum())
    ww = np.einsum("is,is->s", W, W)
    wc = np.einsum("is,is->s", W, C)
    errors = np.full((k, n), np.inf)
    removal = np.empty(k)
    for s in range(k):
        w, c, a, sg = W[:, s], C[:, s], alpha[s], sigma[s]
        trace_t = trace + 2.0 * wc[s] + sg * ww[s]
        removal[s] = trace_t
        rq_t = (
            rq
            + c * RW[:, s]
            + w * RC[:, s]
            + sg * w * RW[:, s]
            + a * w * QW[:, s]
            + a * w * c * ww[s]
            + a * w**2 * wc[s]
            + a * sg * w**2 * ww[s]
        )
        rr_t = rr + 2.0 * a * w * RW[:, s] + a**2 * w**2 * ww[s]
        pivot = rd + a * w**2
        qd_t = qd + 2.0 * w * c + sg * w**2
        candidates = outside.copy()
        candidates[panel[s]] = True
        ok = candidates & (pivot > PIVOT_RTOL * max(float(pivot[candidates].max()), 1e-300))
        p = pivot[ok]
        errors[s, ok] = trace_t - 2.0 * rq_t[ok] / p + qd_t[ok] * rr_t[ok] / p**2
    remaining = n - k
    return errors / remaining, removal / (remaining + 1)


def _remove(moments: Moments, state: GreedyState, position: int) -> None:
    """Remove ``state.panel[position]`` exactly (inverse of :meth:`GreedyState.add`)."""
    state.full()
    panel = np.asarray(state.panel, dtype=np.int64)
    inverse, coef, v_rows, v_pp = _panel_inverse(moments, state, panel)
    s = position
    p_ss = inverse[s, s]
    normalised = inverse[:, s] / p_ss
    w = coef[s]
    c = v_rows.T @ normalised - coef.T @ (v_pp @ normalised)
    sigma = float(normalised @ v_pp @ normalised)
    blas.dger(1.0 / p_ss, w, w, a=state.R.T, overwrite_a=1)
    blas.dger(1.0, w, c, a=state.Q.T, overwrite_a=1)
    blas.dger(1.0, c, w, a=state.Q.T, overwrite_a=1)
    blas.dger(sigma, w, w, a=state.Q.T, overwrite_a=1)
    gene = state.panel.pop(s)
    state.in_panel[gene] = False
    rest = np.delete(panel, s)
    state.R[gene, rest] = state.R[rest, gene] = 0.0  # exact zeros against the remaining panel


def refine_panel(
    moments: Moments,
    panel: Sequence[int],
    *,
    ridge: float = DEFAULT_GREEDY_RIDGE,
    max_swaps: int | None = None,
    tol: float = 1e-9,
    criterion: str | None = None,
    fixed: Sequence[int] = (),
    exclude: Sequence[int] = (),
    progress: bool = True,
) -> Refinement:
    """Swap panel genes for outside genes while a swap lowers the validated imputed-gene MSE.

    Each round scores every ``(panel gene, outside gene)`` swap exactly from the moments
    (:func:`swap_errors`: three ``D x D x K`` products) and applies the best one if it lowers
    the error by more than ``tol`` (relative). Stops when no swap helps or after
    ``max_swaps`` swaps (default: the panel size). The error never increases. A swapped-in
    gene takes the position of the gene it replaces, so the panel order is otherwise kept.
    Genes of ``fixed`` never leave the panel and genes of ``exclude`` never join it.
    """
    panel = [int(g) for g in panel]
    if len(set(panel)) != len(panel):
        raise ConfigError("refine: the panel has duplicate genes")
    if criterion == "gcv":
        raise ConfigError(
            "refine: criterion must be 'validation' or 'train' (swaps are scored on held-out rows)"
        )
    state = GreedyState(moments, ridge=ridge, criterion=criterion)
    if state.criterion == "train":
        warnings.warn(
            "refine: the moments hold no validation rows; swapping by the train error",
            stacklevel=2,
        )
    state.add_many(panel)
    state.flush()
    excluded = np.asarray(exclude, dtype=np.int64)
    before = state.error()
    budget = len(panel) if max_swaps is None else int(max_swaps)
    swaps: list[dict[str, Any]] = []
    current = before
    converged = False
    rounds = 0
    with tqdm(total=budget, desc="refine", unit="swap", disable=not progress, leave=False) as bar:
        while len(swaps) < budget:
            rounds += 1
            errors, _ = swap_errors(moments, state)
            errors[np.isin(state.panel, fixed)] = np.inf
            errors[:, excluded] = np.inf
            s, j = np.unravel_index(int(np.argmin(errors)), errors.shape)
            best = float(errors[s, j])
            if not best < current * (1.0 - tol):
                converged = True
                break
            out_gene = state.panel[s]
            _remove(moments, state, int(s))
            state.add(int(j))
            state.flush()
            state.panel.insert(int(s), state.panel.pop())  # keep the position
            current = state.error()
            swaps.append(
                {"position": int(s), "out": int(out_gene), "in": int(j), "error": current}
            )
            bar.update(1)
    return Refinement(
        np.asarray(state.panel, dtype=np.int64),
        before,
        current,
        swaps,
        rounds,
        converged,
        state.criterion,
        state.ridge,
    )


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
        temporary file (see :func:`store_moments`).
    max_memory_gib
        Budget for the two ``D x D`` matrices (default half the machine's memory).
    """

    method: ClassVar[str] = "greedy"

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
            raise ConfigError(f"greedy: ridge must be a non-negative number, got {ridge}")
        if criterion is not None and criterion not in CRITERIA:
            raise ConfigError(
                f"greedy: criterion must be one of {CRITERIA} or null, got {criterion!r}"
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
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> PanelResult:
        """Run the greedy path to ``n_genes`` genes."""
        self.check_panel_size(store)
        progress = trainer.progress if trainer is not None else True
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


def refine_result(
    store: Store,
    result: PanelResult,
    *,
    ridge: float = DEFAULT_GREEDY_RIDGE,
    max_swaps: int | None = None,
    moments: str | Path | None = None,
    work_dir: Path | None = None,
    max_memory_gib: float | None = None,
    constraints: GeneConstraints | None = None,
    progress: bool = True,
) -> PanelResult:
    """:func:`refine_panel` applied to a selected panel; the result records the swaps in ``extra["refine"]``.

    Swapped-in genes keep the position (rank) of the gene they replace; their ``score`` is NaN.
    Included genes of ``constraints`` stay and its excluded genes never come in.
    """
    constraints = constraints or GeneConstraints()
    with store_moments(
        store, moments, work_dir=work_dir, max_memory_gib=max_memory_gib, progress=progress
    ) as handle:
        refinement = refine_panel(
            handle,
            result.gene_indices,
            ridge=ridge,
            max_swaps=max_swaps,
            fixed=constraints.include,
            exclude=constraints.exclude,
            progress=progress,
        )
    scores = None if result.scores is None else np.asarray(result.scores, dtype=float).copy()
    if scores is not None:
        scores[refinement.genes != result.gene_indices] = np.nan
    logger.info(
        "refine: %d swaps, validation imputed-gene MSE %.5g -> %.5g%s",
        len(refinement.swaps),
        refinement.error_before,
        refinement.error_after,
        "" if refinement.converged else " (swap budget spent)",
    )
    return PanelResult(
        method=result.method,
        n_genes=result.n_genes,
        seed=result.seed,
        gene_indices=refinement.genes,
        var=result.var,
        scores=scores,
        history=result.history,
        state_dict=result.state_dict,
        config=result.config,
        extra={
            **result.extra,
            "refine": {
                **refinement.record(),
                "original_panel": [int(g) for g in result.gene_indices],
            },
        },
    )
