"""Swap refinement of any panel: exchange panel genes for outside genes while the imputation error drops.

It works on the state of :mod:`genesel.selectors.greedy_scoring`. Refinement
(:func:`refine_panel`) removes one panel gene ``s`` by the inverse update
(``R_T = R_S + w w^T / P_ss``, ``Q_T = Q_S + w c^T + c w^T + sigma w w^T`` with
``P = Sigma_SS^-1``, ``w = Sigma_:S P[:, s]``, ``c`` the validation covariance of the residuals
with ``s``'s own residual and ``sigma`` its variance) and scores every ``(s, j)`` swap at
once with two ``D x D x K`` products.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg.blas as blas
from tqdm.auto import tqdm

from genesel.errors import ConfigError
from genesel.moments import Moments
from genesel.panel import PanelResult
from genesel.selectors.constraints import GeneConstraints
from genesel.selectors.greedy_scoring import DEFAULT_GREEDY_RIDGE, PIVOT_RTOL, GreedyState
from genesel.selectors.moments_file import store_moments
from genesel.store import Store

logger = logging.getLogger(__name__)


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
    panel: Sequence[int] | np.ndarray,
    *,
    ridge: float = DEFAULT_GREEDY_RIDGE,
    max_swaps: int | None = None,
    tol: float = 1e-9,
    criterion: str | None = None,
    fixed: Sequence[int] | np.ndarray = (),
    exclude: Sequence[int] | np.ndarray = (),
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
