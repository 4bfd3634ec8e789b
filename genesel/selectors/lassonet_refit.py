"""The LassoNet panel model: the sparsest path point covering the panel, restricted to it, refitted."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from genesel.loader import MinibatchLoader
from genesel.run import RunConfig
from genesel.selectors.lassonet_network import LassoNetAutoencoder, PathStep
from genesel.selectors.lassonet_points import LassoNetPath
from genesel.trainer import Trainer
from genesel.training import TrainerConfig


@dataclass(frozen=True)
class RefitOptions:
    """How the panel model is fine-tuned after the path.

    Attributes
    ----------
    epochs
        Epoch budget of the refit (0: no refit, the path point's weights as they are).
    patience
        Early-stopping patience of the refit.
    l2_penalty
        ``gamma``: ridge penalty on the MLP weights after the first layer.
    """

    epochs: int = 100
    patience: int = 10
    l2_penalty: float = 0.01


def restore_panel_model(
    model: LassoNetAutoencoder,
    path: LassoNetPath,
    panel: np.ndarray,
    options: RefitOptions,
    *,
    loaders: tuple[MinibatchLoader, MinibatchLoader | None] | None = None,
    trainer: TrainerConfig | None = None,
    run: RunConfig | None = None,
) -> dict[str, Any]:
    """Load the sparsest point of ``path`` covering ``panel`` into ``model`` and refit it.

    The model's inputs are restricted to ``panel``; with ``options.epochs > 0`` it is then
    refitted without penalty (Adam) on ``loaders``. Returns what was done: the point's ``lambda`` and gene count, the refit's epochs and its
    best validation loss per gene and sample.
    """
    point = path.point_for(len(panel))
    model.load_state_dict(point.full_state_dict())
    model.restrict_inputs(panel)
    info: dict[str, Any] = {
        "from_lambda": point.lambda_,
        "from_n_selected": point.n_selected,
        "epochs": 0,
    }
    if options.epochs > 0:
        if loaders is None:
            raise ValueError("restore_panel_model: a refit needs the train and validation loaders")
        train, validation = loaders
        config = replace(
            trainer or TrainerConfig(),
            max_epochs=options.epochs,
            patience=options.patience,
            lr_decay=None,
        )
        fit = Trainer(config, run=replace(run or RunConfig(), progress=False)).fit(
            PathStep(model, l2_penalty=options.l2_penalty, optimizer="adam"), train, validation
        )
        # Adam moved nothing outside the mask, but keep the zeros exact
        model.restrict_inputs(panel)
        info.update(
            epochs=len(fit.history),
            best_validation_loss=fit.best_validation_loss / model.input_mask.numel(),
        )
    return info
