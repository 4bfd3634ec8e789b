"""Open the data a model is evaluated on: a genesel store, or any gene-level matrix file."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genesel.blocks import DEFAULT_BLOCK_ROWS
from genesel.errors import InputFileError
from genesel.store import Store

logger = logging.getLogger(__name__)


def open_evaluation_data(
    path: str | os.PathLike[str],
    *,
    orientation: str | None = None,
    statistics: bool = False,
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> Store:
    """Open data to evaluate a model on: a genesel store, or any gene-level matrix file.

    A store written by ``genesel preprocess`` opens as it is. Any other file that
    :func:`genesel.io.open.open_source` reads (a CMap ``.gctx`` of L1000 profiles with
    Entrez gene ids as rows, an ``.h5ad``, a ``.csv``/``.tsv``) opens as one split named
    ``"test"`` holding every sample, its genes named as the file names them (GCTX rows by
    Entrez id get ``entrez_id`` and ``symbol`` columns, see
    :func:`genesel.io.gctx.entrez_annotation`).

    Parameters
    ----------
    path
        The file.
    orientation
        ``"samples-by-genes"`` or ``"genes-by-samples"`` for text and GCTX files (``None``: inferred).
    statistics
        Compute each gene's mean and standard deviation over all samples (one more pass;
        what ``standardize="data"`` uses for such a file); otherwise they are NaN.
    block_rows
        Samples per block of that pass.
    """
    import h5py

    from genesel.io.open import open_source

    path = Path(path)
    if path.suffix.lower() == ".h5ad" and path.is_file():
        with h5py.File(path, "r") as handle:
            is_store = "uns/genesel/store_version" in handle
        if is_store:
            return Store.open(path)
    source = open_source(path, orientation=orientation)
    try:
        if source.feature_kind != "gene":
            raise InputFileError(
                path,
                "its features are microarray probes, not genes",
                "average them into genes with `genesel preprocess` first",
            )
        var = source.var.copy()
        if "symbol" not in var.columns:
            from genesel.io.gene_maps import symbols_of

            var["symbol"] = symbols_of(source.var_names, source.var).to_numpy()
        var["landmark"] = var["landmark"].astype(bool) if "landmark" in var.columns else False
        mean, std = np.full(source.n_vars, np.nan), np.full(source.n_vars, np.nan)
        if statistics:
            mean, std = _column_statistics(source.data, block_rows=block_rows)
        var["mean"], var["std"] = mean, std
        var.index = pd.Index(source.var_names, name="gene_id")
        obs = pd.DataFrame({"split": "test"}, index=source.obs_names)
        logger.info(
            "%s: not a genesel store; evaluating all %d samples as the test split",
            path,
            source.n_obs,
        )
        return Store(source.data, var=var, obs=obs, uns=source.uns, path=path, file=source)
    except BaseException:
        source.close()
        raise


def _column_statistics(matrix: Any, *, block_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation of a row-sliceable matrix.

    The standard deviation has ddof 0 and is 1 for a constant column, as stores keep it; both
    are summed in float64 about the first row (no cancellation for large means).
    """
    n = int(matrix.shape[0])
    total = np.zeros(int(matrix.shape[1]))
    squares = np.zeros_like(total)
    shift: np.ndarray | None = None
    for start in range(0, n, block_rows):
        block = np.asarray(matrix[start : start + block_rows], dtype=np.float64)
        shift = block[0].copy() if shift is None else shift
        block -= shift
        total += block.sum(axis=0)
        squares += np.einsum("ij,ij->j", block, block)
    if shift is None:
        raise ValueError("the matrix has no rows")
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean**2, 0.0))
    std[std == 0] = 1.0
    return mean + shift, std
