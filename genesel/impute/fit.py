"""``fit_imputer``: the one entry point that fits any decoder on a store."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from genesel.decoders import build_decoder
from genesel.errors import ConfigError
from genesel.impute.blocks import DEFAULT_BLOCK_ROWS
from genesel.impute.genes import resolve_panel
from genesel.impute.knn import DEFAULT_MAX_REFERENCE, fit_knn
from genesel.impute.linear import fit_linear
from genesel.impute.mlp import DEFAULT_LR_DECAY, check_hidden, fit_mlp
from genesel.impute.model import DECODERS, ImputationModel
from genesel.impute.ridge import DEFAULT_RIDGE
from genesel.loader import LoaderConfig
from genesel.run import resolve_device
from genesel.store import Store
from genesel.training import TrainerConfig

logger = logging.getLogger(__name__)


def fit_imputer(
    store: Store,
    panel: Any,
    *,
    decoder: str = "linear",
    ridge: float | str = DEFAULT_RIDGE,
    precision: str = "float64",
    hidden: Sequence[int] = (9000,),
    activation: str = "tanh",
    dropout: float = 0.1,
    n_neighbors: int = 10,
    max_reference: int | None = DEFAULT_MAX_REFERENCE,
    trainer: TrainerConfig | None = None,
    loader: LoaderConfig | None = None,
    block_rows: int | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> ImputationModel:
    """Fit a model that imputes every gene of ``store`` from ``panel``.

    Parameters
    ----------
    store
        Preprocessed data; fits use the train split (and validation for the MLP).
    panel
        Gene ids (or symbols), a ``panel.tsv`` path or its directory, a table from
        :func:`~genesel.panel.read_panel`, or a ``PanelResult``.
    decoder
        ``"linear"``: exact least squares with intercept (one pass, out-of-core).
        ``"mlp"``: D-GEX-style network trained with the :class:`~genesel.trainer.Trainer`.
        ``"knn"``: average of the nearest train profiles in panel space (D-GEX's KNN-GE).
    ridge
        Linear only: ``"auto"`` (default) chooses the penalty on the weights by the
        imputed-gene MSE on the validation split; a number fixes it (0 = exact least
        squares). Relative to unit gene variance.
    precision
        Linear only: ``"float64"`` block products (default) or ``"float32"`` (about twice
        as fast on a CPU; sums over blocks stay float64).
    hidden, activation, dropout
        MLP only: hidden widths (1-3 layers; D-GEX used up to 3 x 9000), ``tanh`` (D-GEX)
        or ``leaky_relu`` (CAE), dropout after each hidden layer.
    n_neighbors, max_reference
        KNN only: ``k`` and the cap on stored reference samples (``None``: all).
    trainer
        Epochs, learning rate, decay, seed, device (``device`` and ``seed`` also apply to
        the linear and KNN fits). Default: Adam 1e-3 decayed by 0.95 per epoch, 100 epochs.
    loader
        MLP only: batch size and rows per read.
    block_rows
        Rows per block of the one-pass linear and KNN fits (default 2048).
    work_dir
        MLP checkpoint directory (``work_dir/checkpoint.pt``).
    resume
        MLP: continue from the checkpoint.
    progress
        Show progress bars.

    Returns
    -------
    The fitted :class:`ImputationModel`; call ``save(dir)`` to keep it.
    """
    if decoder not in DECODERS:
        raise ConfigError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
    panel_indices = resolve_panel(panel, store.var)
    trainer = trainer or TrainerConfig(lr_decay=DEFAULT_LR_DECAY, progress=progress)
    block_rows = DEFAULT_BLOCK_ROWS if block_rows is None else int(block_rows)
    device = resolve_device(trainer.device)
    started = time.perf_counter()
    n_train = int(store.require_split("train").size)
    from genesel.moments import store_fingerprint  # here: genesel.moments imports genesel.impute

    training: dict[str, Any] = {
        "n_train": n_train,
        "store": str(store.path) if store.path else None,
        "store_fingerprint": store_fingerprint(store),
    }
    history = None
    if decoder == "linear":
        solution = fit_linear(
            store,
            panel_indices,
            ridge=ridge,
            block_rows=block_rows,
            device=device,
            precision=precision,
            progress=progress,
        )
        module = build_decoder(len(panel_indices), store.n_vars)
        with torch.no_grad():
            module[0].weight.copy_(torch.from_numpy(solution.coef.T))
            module[0].bias.copy_(torch.from_numpy(solution.intercept))
        params: dict[str, Any] = {"ridge": solution.ridge, "precision": precision}
        training.update(
            solver=solution.method,
            seconds_accumulate=solution.seconds["accumulate"],
            seconds_solve=solution.seconds["solve"],
        )
        if solution.ridge_choice is not None:
            training["ridge_choice"] = solution.ridge_choice.record()
    elif decoder == "mlp":
        hidden = check_hidden(hidden)
        module, result = fit_mlp(
            store,
            panel_indices,
            hidden=hidden,
            activation=activation,
            dropout=dropout,
            trainer=trainer,
            loader=loader,
            work_dir=work_dir,
            resume=resume,
        )
        params = {"hidden": list(hidden), "activation": activation, "dropout": float(dropout)}
        history = result.history
        training.update(
            best_epoch=result.best_epoch,
            best_validation_loss=result.best_validation_loss,
            stopped=result.stopped,
            resumed_from_epoch=result.resumed_from_epoch,
            trainer={k: v for k, v in vars(trainer).items() if k != "progress"},
            batch_size=(loader or LoaderConfig()).batch_size,
        )
    else:
        module = fit_knn(
            store,
            panel_indices,
            n_neighbors=n_neighbors,
            max_reference=max_reference,
            seed=trainer.seed,
            block_rows=block_rows,
            progress=progress,
        )
        params = {"n_neighbors": int(n_neighbors), "n_reference": int(module.reference.shape[0])}
        training.update(seed=trainer.seed, max_reference=max_reference)
    training["seconds"] = time.perf_counter() - started
    model = ImputationModel(
        decoder=decoder,
        module=module,
        params=params,
        gene_ids=store.var.index.astype(str),
        symbols=_symbols(store),
        panel_indices=panel_indices,
        mean=store.var["mean"].to_numpy(np.float64),
        std=store.var["std"].to_numpy(np.float64),
        training=training,
        history=history,
    )
    logger.info("fitted %r in %.1f s", model, training["seconds"])
    return model


def _symbols(store: Store) -> np.ndarray:
    if "symbol" in store.var.columns:
        return store.var["symbol"].astype(str).to_numpy()
    return store.var.index.astype(str).to_numpy()
