"""``fit_imputer``: the one entry point that fits any registered decoder on a store."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from genesel.impute.base import make_decoder
from genesel.run import RunConfig

if TYPE_CHECKING:
    from genesel.impute.model import ImputationModel
    from genesel.loader import LoaderConfig
    from genesel.store import Store
    from genesel.training import TrainerConfig


def fit_imputer(
    store: Store,
    panel: Any,
    *,
    decoder: str = "linear",
    trainer: TrainerConfig | None = None,
    run: RunConfig | None = None,
    loader: LoaderConfig | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool | None = None,
    **params: Any,
) -> ImputationModel:
    """Fit a model that imputes every gene of ``store`` from ``panel``.

    Parameters
    ----------
    store
        Preprocessed data; fits use the train split (and validation for the MLP and the
        automatic ridge).
    panel
        Gene ids (or symbols), a ``panel.tsv`` path or its directory, a table from
        :func:`~genesel.panel.read_panel`, or a ``PanelResult``.
    decoder
        A registered decoder (:func:`~genesel.impute.decoders.available_decoders`):
        ``"linear"`` (exact least squares with intercept, one pass, out-of-core), ``"mlp"``
        (D-GEX network trained with the :class:`~genesel.trainer.Trainer`) or ``"knn"``
        (D-GEX's KNN-GE).
    trainer
        Training hyperparameters of trained decoders (the MLP); ``None`` fields take the
        decoder's defaults (MLP: decay 0.95 per epoch, patience 10).
    run
        Seed, device and progress bars (default :class:`~genesel.run.RunConfig`).
    loader
        Minibatch options of trained decoders.
    work_dir
        Checkpoint directory of trained decoders (``work_dir/checkpoint.pt``).
    resume
        Continue from the checkpoint in ``work_dir``.
    progress
        Show progress bars (overrides ``run.progress`` when given).
    **params
        The decoder's hyperparameters, e.g. ``ridge=1e-3`` (linear), ``hidden=(9000,)``
        (mlp), ``n_neighbors=10`` (knn); each decoder class documents its own and their
        defaults, and an unknown one is refused with :class:`~genesel.errors.ConfigError`.

    Returns
    -------
    The fitted :class:`~genesel.impute.model.ImputationModel`; call ``save(dir)`` to keep it.
    """
    chosen = make_decoder(decoder, **params)
    run = run or RunConfig()
    if progress is not None:
        run = dataclasses.replace(run, progress=progress)
    return chosen.fit(
        store, panel, trainer=trainer, run=run, loader=loader, work_dir=work_dir, resume=resume
    )
