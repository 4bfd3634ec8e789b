"""The linear decoder: exact least squares, accumulated out-of-core in one pass over the train split.

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
import os
import time
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from genesel.blocks import DEFAULT_BLOCK_ROWS, iter_row_blocks
from genesel.decoders import build_decoder
from genesel.errors import ConfigError
from genesel.impute.base import Decoder, DecoderFit, register_decoder
from genesel.impute.lstsq import LinearSolution, solve_statistics, solve_validated
from genesel.impute.ridge import AUTO, DEFAULT_RIDGE, PanelStatistics, parse_ridge
from genesel.run import RunConfig, resolve_device
from genesel.store import Store

if TYPE_CHECKING:
    from genesel.loader import LoaderConfig
    from genesel.training import TrainerConfig

logger = logging.getLogger(__name__)

#: Arithmetic of the per-block products.
PRECISIONS = ("float64", "float32")


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
    n_vars
        Columns of every block (all genes).
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
        n_vars: int,
        *,
        center: np.ndarray,
        device: torch.device | str = "cpu",
        precision: str = "float64",
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {PRECISIONS}, got {precision!r}", parameter="precision"
            )
        self.device = torch.device(device)
        self.dtype = torch.float64 if precision == "float64" else torch.float32
        self.panel = torch.as_tensor(np.asarray(panel, dtype=np.int64), device=self.device)
        self.center = torch.as_tensor(np.asarray(center, dtype=np.float64), device=self.device).to(
            self.dtype
        )
        self.products = torch.zeros(
            (self.panel.numel() + 1, n_vars), dtype=torch.float64, device=self.device
        )
        self.squares = torch.zeros(n_vars, dtype=torch.float64, device=self.device)
        self.n_samples = 0
        self._centred: torch.Tensor | None = None
        self._design: torch.Tensor | None = None
        self._block_products: torch.Tensor | None = None

    def update(self, block: np.ndarray) -> None:
        """Add the rows of ``block`` (float32 or float64, samples x genes)."""
        rows = block.shape[0]
        if not rows:
            return
        centred_buffer, design_buffer = self._centred, self._design
        if centred_buffer is None or design_buffer is None or centred_buffer.shape[0] < rows:
            centred_buffer = self._centred = torch.empty(
                (rows, block.shape[1]), dtype=self.dtype, device=self.device
            )
            design_buffer = self._design = torch.ones(
                (rows, self.panel.numel() + 1), dtype=self.dtype, device=self.device
            )
        source = torch.from_numpy(block).to(self.device)
        centred = torch.sub(source, self.center, out=centred_buffer[:rows])
        design = design_buffer[:rows]
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
    ridge: float | str = DEFAULT_RIDGE,
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

    def statistics(rows: str) -> PanelStatistics:
        return accumulate_statistics(
            store,
            panel,
            rows,
            block_rows=block_rows,
            device=device,
            precision=precision,
            progress=progress,
        )

    started = time.perf_counter()
    train = statistics(split)
    validation = None
    if ridge == AUTO and split != "validation" and store.split_indices("validation").size:
        validation = statistics("validation")
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


@register_decoder
class LinearDecoder(Decoder):
    """Exact (ridge) least squares with intercept, out-of-core in one pass (see :func:`fit_linear`).

    Parameters
    ----------
    ridge
        ``"auto"``: the penalty with the lowest imputed-gene MSE on the validation split; a
        number fixes it (0 = exact least squares). Relative to unit gene variance.
    precision
        ``"float64"`` block products or ``"float32"`` (about twice as fast on a CPU; sums
        over blocks stay float64).
    block_rows
        Rows per block of the pass over the data.
    """

    name = "linear"

    def __init__(
        self,
        *,
        ridge: float | str = DEFAULT_RIDGE,
        precision: str = "float64",
        block_rows: int = DEFAULT_BLOCK_ROWS,
    ) -> None:
        try:
            self.ridge = parse_ridge(ridge)
        except ConfigError as error:  # a decoder parameter: --param ridge=... on the command line
            raise ConfigError(str(error), parameter="param:ridge") from None
        if precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {PRECISIONS}, got {precision!r}",
                parameter="param:precision",
            )
        self.precision = precision
        self.block_rows = int(block_rows)

    def fit_module(
        self,
        store: Store,
        panel: np.ndarray,
        *,
        trainer: TrainerConfig | None,
        run: RunConfig,
        loader: LoaderConfig | None,
        work_dir: str | os.PathLike[str] | None,
        resume: bool,
    ) -> DecoderFit:
        """Solve the normal equations and copy the weights into a linear layer."""
        solution = fit_linear(
            store,
            panel,
            ridge=self.ridge,
            block_rows=self.block_rows,
            device=resolve_device(run.device),
            precision=self.precision,
            progress=run.progress,
        )
        module = build_decoder(len(panel), store.n_vars)
        layer = cast(nn.Linear, module[0])  # a decoder without hidden layers is one Linear
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(solution.coef.T))
            layer.bias.copy_(torch.from_numpy(solution.intercept))
        training: dict[str, Any] = {
            "solver": solution.method,
            "seconds_accumulate": solution.seconds["accumulate"],
            "seconds_solve": solution.seconds["solve"],
        }
        if solution.ridge_choice is not None:
            training["ridge_choice"] = solution.ridge_choice.record()
        params = {"ridge": solution.ridge, "precision": self.precision}
        return DecoderFit(module, params, training)

    @classmethod
    def build_module(
        cls, params: dict[str, Any], *, n_genes: int, n_vars: int, panel: np.ndarray
    ) -> nn.Module:
        """One linear layer from the panel genes to all genes."""
        return build_decoder(n_genes, n_vars)
