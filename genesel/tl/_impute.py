"""``genesel.tl.fit_imputer`` and ``genesel.tl.impute``: whole transcriptomes from a panel."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from anndata import AnnData

from genesel.errors import ConfigError
from genesel.impute import ImputationModel, load_model
from genesel.impute import fit_imputer as _fit_imputer
from genesel.loader import LoaderConfig
from genesel.run import RunConfig, configure_precision
from genesel.tl._prepare import ensure_store
from genesel.training import TrainerConfig

logger = logging.getLogger(__name__)


def panel_from_var(adata: AnnData, key: str) -> list[str]:
    """Gene ids of the panel stored by :func:`genesel.tl.select_panel` under ``key``, best first."""
    column = f"{key}_rank"
    if column not in adata.var.columns:
        raise ConfigError(
            f"adata.var has no {column!r}; run genesel.tl.select_panel(adata, key_added={key!r}, ...) first"
        )
    rank = adata.var[column].to_numpy(dtype=float)
    chosen = np.flatnonzero(~np.isnan(rank))
    return [str(g) for g in adata.var_names[chosen[np.argsort(rank[chosen])]]]


def fit_imputer(
    adata: AnnData,
    *,
    panel_key: str = "genesel",
    decoder: str = "linear",
    seed: int = 0,
    layer: str | None = None,
    params: Mapping[str, Any] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    device: str = "auto",
    progress: bool = True,
) -> ImputationModel:
    """Fit a model that imputes every gene of ``adata`` from a selected panel.

    Parameters
    ----------
    adata
        The data the panel was selected on (prepared by :func:`genesel.tl.prepare`).
    panel_key
        ``key_added`` of the :func:`genesel.tl.select_panel` call whose panel to use.
    decoder
        ``linear`` (exact least squares), ``mlp`` (D-GEX network), ``knn``, or any other
        registered decoder (:func:`genesel.impute.available_decoders`).
    seed
        Seed of the MLP's initialisation and minibatches, the KNN reference draw (and of the
        split, if prepared here).
    layer
        Layer to read instead of ``X``.
    params
        The decoder's hyperparameters, e.g. ``{"hidden": [256]}`` (mlp) or
        ``{"ridge": 1e-3}`` (linear); unset ones take the decoder class's defaults (MLP:
        one hidden layer of 9000 tanh units, dropout 0.1; linear: ridge ``"auto"``; KNN: 10
        neighbours), see :class:`genesel.impute.MLPDecoder` and its siblings.
    epochs
        Trained decoders' epoch budget (default: the trainer's, 100).
    batch_size
        Trained decoders' minibatch size (default: the loader's, 256).
    learning_rate
        Trained decoders' Adam learning rate (default: the trainer's, 1e-3; the MLP decays
        it by 0.95 per epoch).
    device
        ``auto``, ``cpu`` or ``cuda``.
    progress
        Show progress bars (as the command line does).

    Returns
    -------
    The fitted model; ``model.save(directory)`` keeps it, :func:`genesel.tl.impute` applies it.
    """
    store = ensure_store(adata, seed=seed, layer=layer)
    configure_precision(device)
    return _fit_imputer(
        store,
        panel_from_var(adata, panel_key),
        decoder=decoder,
        trainer=decoder_trainer(epochs=epochs, learning_rate=learning_rate),
        run=RunConfig(seed=seed, device=device, progress=progress),
        loader=None if batch_size is None else LoaderConfig(batch_size=batch_size),
        **dict(params or {}),
    )


def decoder_trainer(
    *, epochs: int | None = None, learning_rate: float | None = None
) -> TrainerConfig | None:
    """A trainer config holding only the values given (``None``: all the decoder's defaults)."""
    given = {"max_epochs": epochs, "learning_rate": learning_rate}
    values: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    return TrainerConfig(**values) if values else None


def impute(
    adata: AnnData,
    model: ImputationModel | str | os.PathLike[str],
    *,
    layer: str | None = None,
    batch_rows: int = 4096,
    device: str = "cpu",
    progress: bool = True,
) -> AnnData:
    """Impute the whole transcriptome of samples measured on a panel.

    Parameters
    ----------
    adata
        Samples measured on (at least) the panel genes, matched by gene id or symbol in
        any order, in the units of the data the model was fitted on. In memory or backed.
    model
        A fitted :class:`~genesel.impute.ImputationModel` or the directory of one
        (``genesel impute fit --out``).
    layer
        Layer to read instead of ``X``.
    batch_rows
        Samples imputed at a time (bounds memory, also for backed data).
    device
        Where the decoder runs.
    progress
        Show a progress bar (as the command line does).

    Returns
    -------
    A new AnnData: ``obs`` from ``adata``, ``X`` all genes of the model, ``var`` indexed by
    gene id with ``symbol`` and ``measured`` (the panel genes, copied unchanged), and
    ``uns["genesel_imputation"]``. ``adata`` is not modified.
    """
    if not isinstance(model, ImputationModel):
        model = load_model(model)
    result = model.impute(
        adata, layer=layer, batch_rows=batch_rows, device=device, progress=progress
    )
    logger.info(
        "imputed %d genes for %d samples from %d measured",
        model.n_vars,
        result.n_obs,
        model.n_genes,
    )
    return result
