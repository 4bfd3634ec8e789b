"""Exact least-squares imputation, computed out-of-core in one pass over the train split.

Model, in standardised units ``z = (x - mean) / std``: ``z_all = z_panel @ W + b``. The
normal equations need only the cross-products of the panel genes with all genes and the
column sums, so rows are streamed in blocks and never held together: memory is
``O(K * D)``, independent of the number of samples. Block products run in float64
(BLAS ``dgemm`` through torch, on a GPU when one is used) on float32 reads, and the next
block is read while the current one is multiplied. ``precision="float32"`` computes each
block's product in float32 (``sgemm``, about twice as fast on a CPU) and still sums the
blocks in float64.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from tqdm.auto import tqdm

from genesel.blocks import DEFAULT_BLOCK_ROWS, iter_row_blocks
from genesel.errors import ConfigError
from genesel.impute.ridge import AUTO, PanelStatistics, RidgeChoice, RidgeProblem, parse_ridge
from genesel.store import Store

logger = logging.getLogger(__name__)

#: Arithmetic of the per-block products.
PRECISIONS = ("float64", "float32")
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


class NormalEquations:
    """Running sums of a least-squares problem with intercept, fed one row block at a time.

    With ``Z`` the rows centred by ``center`` and the design ``A = [Z[:, panel], 1]``,
    accumulates ``A^T Z`` in float64: its first ``K`` rows are the cross-products of the
    panel genes with all genes (the panel Gram matrix is the sub-block at the panel
    columns) and its last row holds the column sums. Per block that is one fused
    convert-and-centre pass and one ``dgemm``.

    Parameters
    ----------
    panel
        Column indices of the panel genes.
    n_genes
        Columns of every block.
    center
        Per-gene shift subtracted before multiplying (the train means keep the sums small).
    device
        Where the products are computed.
    precision
        ``"float64"`` (default): centring and block products in float64. ``"float32"``:
        both in float32 (each block's sums have float32 rounding, about ``1e-7 * sqrt(rows)``
        relative), the running sums over blocks stay float64.
    """

    def __init__(
        self,
        panel: np.ndarray,
        n_genes: int,
        *,
        center: np.ndarray,
        device: torch.device | str = "cpu",
        precision: str = "float64",
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.device = torch.device(device)
        self.dtype = torch.float64 if precision == "float64" else torch.float32
        self.panel = torch.as_tensor(np.asarray(panel, dtype=np.int64), device=self.device)
        self.center = torch.as_tensor(np.asarray(center, dtype=np.float64), device=self.device).to(
            self.dtype
        )
        self.products = torch.zeros(
            (self.panel.numel() + 1, n_genes), dtype=torch.float64, device=self.device
        )
        self.squares = torch.zeros(n_genes, dtype=torch.float64, device=self.device)
        self.n_samples = 0
        self._centred: torch.Tensor | None = None
        self._design: torch.Tensor | None = None
        self._block_products: torch.Tensor | None = None

    def update(self, block: np.ndarray) -> None:
        """Add the rows of ``block`` (float32 or float64, samples x genes)."""
        rows = block.shape[0]
        if not rows:
            return
        if self._centred is None or self._centred.shape[0] < rows:
            self._centred = torch.empty(
                (rows, block.shape[1]), dtype=self.dtype, device=self.device
            )
            self._design = torch.ones(
                (rows, self.panel.numel() + 1), dtype=self.dtype, device=self.device
            )
        source = torch.from_numpy(block).to(self.device)
        centred = torch.sub(source, self.center, out=self._centred[:rows])
        design = self._design[:rows]
        design[:, :-1] = centred.index_select(1, self.panel)
        if self.dtype == torch.float64:
            self.products.addmm_(design.T, centred)
        else:
            if self._block_products is None:
                self._block_products = torch.empty(
                    self.products.shape, dtype=torch.float32, device=self.device
                )
            self.products.add_(torch.mm(design.T, centred, out=self._block_products))
        self.squares.add_(
            (centred * centred).sum(0).to(torch.float64)
        )  # not einsum: pathological when threads are oversubscribed
        self.n_samples += rows

    def statistics(self, *, scale: np.ndarray) -> PanelStatistics:
        """The sums in units ``z / scale`` (``scale`` = train standard deviations)."""
        scale = np.asarray(scale, dtype=np.float64)
        panel = self.panel.cpu().numpy()
        products = self.products.cpu().numpy()
        return PanelStatistics(
            n=self.n_samples,
            total=products[-1] / scale,
            cross=products[:-1] / scale[panel, None] / scale,
            squares=self.squares.cpu().numpy() / scale**2,
            panel=panel,
        )

    def solve(self, *, scale: np.ndarray, ridge: float = 0.0) -> LinearSolution:
        """Solve for weights in units ``z / scale`` (``scale`` = train standard deviations)."""
        return solve_statistics(self.statistics(scale=scale), ridge=ridge)


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
        raise ConfigError(f"ridge must be non-negative, got {ridge}")
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
            "least-squares solution (a small ridge, e.g. --ridge 1e-3, makes the fit unique)",
            f" (constant panel columns at positions {weak.tolist()[:10]})" if weak.size else "",
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


def accumulate_statistics(
    store: Store,
    panel: np.ndarray,
    split: str,
    *,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    device: torch.device | str = "cpu",
    precision: str = "float64",
    progress: bool = True,
) -> PanelStatistics:
    """One streaming pass over ``split``: the :class:`PanelStatistics` of ``panel``."""
    rows = store.require_split(split)
    mean = store.var["mean"].to_numpy(np.float64)
    std = store.var["std"].to_numpy(np.float64)
    equations = NormalEquations(
        panel, store.n_vars, center=mean, device=device, precision=precision
    )
    with tqdm(
        total=rows.size,
        desc=f"linear fit ({split})",
        unit="rows",
        disable=not progress,
        leave=False,
    ) as bar:
        for _, block in iter_row_blocks(
            store, rows, block_rows=block_rows, pin_memory=equations.device.type == "cuda"
        ):
            equations.update(block)
            bar.update(block.shape[0])
    if equations.device.type == "cuda":
        torch.cuda.synchronize(equations.device)
    return equations.statistics(scale=std)


def fit_linear(
    store: Store,
    panel: np.ndarray,
    *,
    ridge: float | str = AUTO,
    split: str = "train",
    block_rows: int = DEFAULT_BLOCK_ROWS,
    device: torch.device | str = "cpu",
    precision: str = "float64",
    progress: bool = True,
) -> LinearSolution:
    """Fit the linear imputer of all genes from ``panel`` on one split.

    Parameters
    ----------
    store
        The data; standardisation uses its train mean and standard deviation.
    panel
        Column indices of the panel genes.
    ridge
        ``"auto"`` (default): the penalty with the lowest imputed-gene MSE on the
        validation split (one more pass, over the validation rows), see
        :func:`solve_validated`; a number: that penalty (0 = exact least squares), see
        :func:`solve_normal_equations`.
    split
        Rows to fit on.
    block_rows
        Rows per block (memory: about ``block_rows * D * 16`` bytes of buffers).
    device
        ``cpu`` or a CUDA device for the block products.
    precision
        Arithmetic of the block products, ``"float64"`` or ``"float32"`` (see
        :class:`NormalEquations`).
    progress
        Show a progress bar.
    """
    ridge = parse_ridge(ridge)
    options = {
        "block_rows": block_rows,
        "device": device,
        "precision": precision,
        "progress": progress,
    }
    started = time.perf_counter()
    train = accumulate_statistics(store, panel, split, **options)
    validation = None
    if ridge == AUTO and split != "validation" and store.split_indices("validation").size:
        validation = accumulate_statistics(store, panel, "validation", **options)
    accumulate = time.perf_counter() - started
    solution = solve_validated(train, validation, ridge=ridge)
    solution.seconds["accumulate"] = accumulate
    choice = solution.ridge_choice
    logger.info(
        "linear imputer: %d x %d normal equations over %d rows in %.1f s (+ %.2f s %s solve); ridge %.3g (%s)",
        len(panel),
        store.n_vars,
        train.n,
        accumulate,
        solution.seconds["solve"],
        solution.method,
        solution.ridge,
        choice.criterion if choice else "fixed",
    )
    return solution
