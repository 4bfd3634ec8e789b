"""The imputation model users keep: panel, gene universe, scaling and a decoder.

:class:`ImputationModel` predicts every gene from the panel genes. It saves to a
directory (``model.pt`` state dict, loaded with ``weights_only=True``, and
``model.json`` with the init parameters, gene ids, symbols and scaling) and applies to
new samples given as AnnData (in memory or backed), a DataFrame or an array.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from genesel import __version__
from genesel.errors import ConfigError, InputFileError
from genesel.impute.decoders import available_decoders
from genesel.impute.genes import match_columns

logger = logging.getLogger(__name__)

#: Rows predicted at a time by default.
DEFAULT_BATCH_ROWS = 4096
#: Warn when the panel genes of new data sit this many train standard deviations off the train means.
UNITS_WARNING_SHIFT = 3.0


class ImputationModel:
    """Predict a whole transcriptome from a gene panel.

    Parameters
    ----------
    decoder
        The registered decoder's name (``"linear"``, ``"mlp"``, ``"knn"``, ...).
    module
        The prediction network: standardised panel values (``n x K``) to standardised
        genes (``n x D``).
    params
        The module's init parameters (saved in ``model.json``).
    gene_ids, symbols
        All genes, in output order.
    panel_indices
        Positions of the panel genes among ``gene_ids``, in panel order.
    mean, std
        Per-gene train mean and standard deviation (the store's units).
    training
        Summary of the fit (rows, seconds, best epoch, ...), saved in ``model.json``.
    history
        Per-epoch training history (MLP), saved as ``history.tsv``.
    """

    def __init__(
        self,
        *,
        decoder: str,
        module: nn.Module,
        params: dict[str, Any],
        gene_ids: Sequence[str],
        symbols: Sequence[str],
        panel_indices: Sequence[int] | np.ndarray,
        mean: np.ndarray,
        std: np.ndarray,
        training: dict[str, Any] | None = None,
        history: pd.DataFrame | None = None,
    ) -> None:
        if decoder not in available_decoders():
            raise ConfigError(
                f"unknown decoder {decoder!r}; choose one of {', '.join(available_decoders())}",
                parameter="decoder",
            )
        self.decoder = decoder
        self.module = module.eval()
        self.params = dict(params)
        self.gene_ids = pd.Index(np.asarray(gene_ids).astype(str), name="gene_id")
        self.symbols = np.asarray(symbols).astype(str)
        self.panel_indices = np.asarray(panel_indices, dtype=np.int64)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.training = dict(training or {})
        self.history = history
        if not (len(self.gene_ids) == len(self.symbols) == len(self.mean) == len(self.std)):
            raise ValueError("gene_ids, symbols, mean and std must have one entry per gene")

    # -- description ----------------------------------------------------------
    @property
    def n_vars(self) -> int:
        """Genes predicted, all genes of the model (``D``)."""
        return len(self.gene_ids)

    @property
    def n_genes(self) -> int:
        """Panel genes (``K``)."""
        return int(self.panel_indices.size)

    @property
    def panel_ids(self) -> pd.Index:
        """Gene ids of the panel, in panel order."""
        return self.gene_ids[self.panel_indices]

    @property
    def panel_symbols(self) -> np.ndarray:
        """Symbols of the panel genes, in panel order."""
        return self.symbols[self.panel_indices]

    @property
    def measured_mask(self) -> np.ndarray:
        """Boolean mask over all genes: ``True`` for the panel genes."""
        mask = np.zeros(self.n_vars, dtype=bool)
        mask[self.panel_indices] = True
        return mask

    def var(self) -> pd.DataFrame:
        """Gene annotation of imputed output: ``symbol`` and ``measured``."""
        return pd.DataFrame(
            {"symbol": self.symbols, "measured": self.measured_mask}, index=self.gene_ids
        )

    def __repr__(self) -> str:
        return (
            f"ImputationModel({self.decoder}, {self.n_genes} panel genes -> {self.n_vars} genes)"
        )

    # -- prediction -------------------------------------------------------------
    @torch.no_grad()
    def predict_standardized(
        self,
        panel_values: np.ndarray | torch.Tensor,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        device: str | torch.device = "cpu",
    ) -> np.ndarray:
        """Predict all genes from panel values, both in standardised units.

        Parameters
        ----------
        panel_values
            ``n x K`` standardised values of the panel genes, in panel order.
        batch_rows
            Rows per forward pass.
        device
            Where the module runs.

        Returns
        -------
        ``n x D`` float32; the panel genes' columns are the inputs, unchanged.
        """
        values = (
            panel_values.detach().cpu().numpy()
            if isinstance(panel_values, torch.Tensor)
            else np.asarray(panel_values)
        )
        if values.ndim != 2 or values.shape[1] != self.n_genes:
            raise ConfigError(
                f"expected panel values of shape (n, {self.n_genes}), got {values.shape}"
            )
        values = values.astype(np.float32, copy=False)
        device = torch.device(device)
        self.module.to(device).eval()
        out = np.empty((values.shape[0], self.n_vars), dtype=np.float32)
        for start in range(0, values.shape[0], batch_rows):
            block = torch.from_numpy(np.ascontiguousarray(values[start : start + batch_rows])).to(
                device
            )
            out[start : start + block.shape[0]] = self.module(block).float().cpu().numpy()
        out[:, self.panel_indices] = values
        return out

    def predict(self, panel_values: np.ndarray, **kwargs: Any) -> np.ndarray:
        """Predict all genes from panel values, both in the training data's units."""
        values = np.asarray(panel_values, dtype=np.float64)
        standardized = (values - self.mean[self.panel_indices]) / self.std[self.panel_indices]
        predicted = self.predict_standardized(standardized, **kwargs)
        result = (predicted * self.std + self.mean).astype(np.float32)
        result[:, self.panel_indices] = values
        return result

    def impute(
        self,
        data: Any,
        *,
        layer: str | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        out: str | os.PathLike[str] | None = None,
        device: str | torch.device = "cpu",
        progress: bool = False,
    ) -> Any:
        """Impute the whole transcriptome of new samples measured on the panel.

        Parameters
        ----------
        data
            AnnData (in memory or backed), a DataFrame (samples x genes), a
            :class:`~genesel.io.source.MatrixSource` (e.g. a CMap GCTX file opened with
            :func:`genesel.io.gctx.read_gctx`, rows named by Entrez id) or an array whose
            columns are the panel genes in panel order. Genes are matched by gene id or
            symbol (``var_names`` or a ``gene_id``/``entrez_id``/``symbol``-like ``var``
            column), in any order; extra genes are ignored. Values must be in the units of the training
            store (e.g. log2, quantile-normalised).
        layer
            AnnData layer to read instead of ``X``.
        batch_rows
            Samples processed at a time (memory is bounded by this, for backed input too).
        out
            Stream the result into this ``.h5ad`` and return it opened backed (read-only).
        device
            Where the decoder runs.
        progress
            Show a progress bar.

        Returns
        -------
        AnnData with ``obs`` from the input, ``X`` = all genes in the input's units,
        ``var`` indexed by gene id with ``symbol`` and ``measured`` (panel genes, whose
        values are the input values unchanged), and ``uns["genesel_imputation"]``.
        """
        import anndata

        matrix, obs, source = _as_matrix(data, layer)
        if isinstance(data, np.ndarray | torch.Tensor):
            if matrix.shape[1] != self.n_genes:
                raise InputFileError(
                    source,
                    f"an array input needs the {self.n_genes} panel genes as columns, in panel order; got {matrix.shape[1]} columns",
                    "pass an AnnData or DataFrame with gene names to match genes by name",
                )
            columns = np.arange(self.n_genes)
        else:
            names, var = _names(data)
            columns = match_columns(self.panel_ids, self.panel_symbols, names, var, source=source)
        n_obs = int(matrix.shape[0])
        uns = {
            "genesel_imputation": {
                "decoder": self.decoder,
                "n_measured": self.n_genes,
                "n_vars": self.n_vars,
                "genesel_version": __version__,
            }
        }
        writer = None
        result: np.ndarray | None = None
        if out is not None:
            from genesel.io.h5ad_writer import DenseH5adWriter

            writer = DenseH5adWriter(out, n_obs=n_obs, var=self.var(), dtype=np.float32)
        else:
            result = np.empty((n_obs, self.n_vars), dtype=np.float32)
        try:
            for start in tqdm(
                range(0, n_obs, batch_rows),
                desc="impute",
                unit="block",
                disable=not progress,
                leave=False,
            ):
                measured = _dense_rows(matrix, start, start + batch_rows)[:, columns].astype(
                    np.float64
                )
                self._check_values(measured, source, first=start == 0)
                full = self.predict(measured, batch_rows=batch_rows, device=device)
                if writer is not None:
                    writer.write_rows(start, full)
                elif result is not None:
                    result[start : start + full.shape[0]] = full
            if writer is not None:
                path = writer.close(obs=obs, uns=uns)
                logger.info("imputed %d samples x %d genes into %s", n_obs, self.n_vars, path)
                return anndata.read_h5ad(path, backed="r")
        except BaseException as error:
            if writer is not None:
                writer.abort(error)
            raise
        return anndata.AnnData(X=result, obs=obs, var=self.var(), uns=uns)

    def _check_values(self, measured: np.ndarray, source: str, *, first: bool) -> None:
        if not np.isfinite(measured).all():
            bad = np.flatnonzero(~np.isfinite(measured).all(axis=0))
            raise InputFileError(
                source,
                f"missing or infinite values in panel genes {self.panel_symbols[bad[:10]].tolist()}",
                "impute or drop those samples first; the decoders need every panel gene measured",
            )
        if first and measured.shape[0] >= 2:
            shift = (
                np.abs(measured.mean(axis=0) - self.mean[self.panel_indices])
                / self.std[self.panel_indices]
            )
            if np.median(shift) > UNITS_WARNING_SHIFT:
                logger.warning(
                    "%s: the panel genes average %.1f train standard deviations away from the training means; "
                    "are the values in the training data's units (e.g. log2, quantile-normalised)?",
                    source,
                    float(np.median(shift)),
                )

    # -- persistence -------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``model.pt``, ``model.json`` (and ``history.tsv``) into ``directory``.

        See :func:`genesel.impute.saved.save_model`.
        """
        from genesel.impute.saved import save_model

        return save_model(self, directory)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, mmap: bool = True) -> ImputationModel:
        """Load a model saved by :meth:`save` (weights memory-mapped unless ``mmap=False``)."""
        from genesel.impute.saved import load_model

        return load_model(directory, mmap=mmap)


def _as_matrix(data: Any, layer: str | None) -> tuple[Any, pd.DataFrame, str]:
    """Return a row-sliceable matrix, the sample annotation and a name for messages."""
    from genesel.io.source import MatrixSource

    if isinstance(data, MatrixSource):
        if layer is not None:
            raise ConfigError(f"layer={layer!r} applies to AnnData input only, not to {data.path}")
        return data.data, pd.DataFrame(index=data.obs_names), str(data.path)
    if isinstance(data, pd.DataFrame):
        obs = pd.DataFrame(index=data.index.astype(str))
        return data.to_numpy(), obs, str(data.attrs.get("source", "<DataFrame>"))
    if isinstance(data, np.ndarray | torch.Tensor):
        values = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else data
        if values.ndim != 2:
            raise InputFileError(
                "<array>", f"expected a 2-D samples x genes array, got shape {values.shape}"
            )
        return values, pd.DataFrame(index=[str(i) for i in range(values.shape[0])]), "<array>"
    if hasattr(data, "obs") and hasattr(data, "var"):
        source = str(getattr(data, "filename", None) or "<AnnData>")
        if layer is not None:
            if layer not in data.layers:
                raise InputFileError(
                    source, f"no layer {layer!r}; layers: {list(data.layers.keys())}"
                )
            matrix = data.layers[layer]
        else:
            matrix = data.X
        return matrix, data.obs.copy(), source
    raise ConfigError(
        f"cannot impute from a {type(data).__name__}; pass an AnnData, a DataFrame or an array"
    )


def _names(data: Any) -> tuple[pd.Index, pd.DataFrame | None]:
    if isinstance(data, pd.DataFrame):
        return pd.Index(data.columns.astype(str)), None
    from genesel.io.source import MatrixSource

    if isinstance(data, MatrixSource):  # e.g. a GCTX file
        return data.var_names, data.var
    return pd.Index(data.var_names.astype(str)), data.var


def _dense_rows(matrix: Any, start: int, stop: int) -> np.ndarray:
    block = matrix[start:stop]
    if hasattr(block, "toarray"):
        block = block.toarray()
    return np.asarray(block)
