"""D-GEX-style multilayer perceptron imputer, trained on streamed minibatches."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from genesel.decoders import build_decoder
from genesel.errors import ConfigError
from genesel.loader import LoaderConfig, MinibatchLoader
from genesel.store import Store
from genesel.trainer import Trainer
from genesel.training import TrainerConfig, TrainingResult, seed_everything

logger = logging.getLogger(__name__)

#: The checkpoint file inside ``work_dir``.
CHECKPOINT_NAME = "checkpoint.pt"
#: D-GEX's learning-rate decay per epoch used unless the trainer config sets one.
DEFAULT_LR_DECAY = 0.95
#: Early stopping: epochs without a better validation loss before the MLP stops, unless the
#: trainer config sets its own patience (the best-validation weights are kept either way).
DEFAULT_PATIENCE = 10


class PanelDecoderTask(nn.Module):
    """Training task: predict every gene of a standardised row from its panel columns.

    Parameters
    ----------
    decoder
        Module mapping ``K`` panel values to ``D`` genes.
    panel
        Column indices of the panel genes in the rows the loader yields.
    """

    def __init__(self, decoder: nn.Module, panel: np.ndarray) -> None:
        super().__init__()
        self.decoder = decoder
        self.register_buffer(
            "panel", torch.as_tensor(np.asarray(panel, dtype=np.int64)), persistent=False
        )

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """Predict all genes of ``rows`` (full standardised rows) from their panel columns."""
        return self.decoder(rows.index_select(1, self.panel))

    def training_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Mean squared error over all genes."""
        return nn.functional.mse_loss(self(batch).float(), batch)

    def validation_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Mean squared error over all genes."""
        return nn.functional.mse_loss(self(batch).float(), batch)


def validation_rows(store: Store) -> int:
    """Rows in the store's validation split."""
    return int(store.split_indices("validation").size)


def check_hidden(hidden: Sequence[int]) -> tuple[int, ...]:
    """Validate MLP hidden-layer widths (one to three layers, as D-GEX)."""
    hidden = tuple(int(h) for h in hidden)
    if not 1 <= len(hidden) <= 3:
        raise ConfigError(
            f"an MLP imputer has 1 to 3 hidden layers (D-GEX), got {list(hidden)}; use decoder='linear' for none"
        )
    if min(hidden) < 1:
        raise ConfigError(f"hidden layer widths must be positive, got {list(hidden)}")
    return hidden


def fit_mlp(
    store: Store,
    panel: np.ndarray,
    *,
    hidden: Sequence[int] = (9000,),
    activation: str = "tanh",
    dropout: float = 0.1,
    trainer: TrainerConfig | None = None,
    loader: LoaderConfig | None = None,
    work_dir: str | Path | None = None,
    resume: bool = False,
) -> tuple[nn.Sequential, TrainingResult]:
    """Train an MLP from the panel genes to all genes; return it with its best-validation weights.

    Parameters
    ----------
    store
        The data (train split for training, validation split for the best checkpoint).
    panel
        Column indices of the panel genes.
    hidden, activation, dropout
        Architecture (see :func:`genesel.decoders.build_decoder`).
    trainer
        Epochs, learning rate and decay, seed, device, mixed precision; ``lr_decay``
        defaults to 0.95 per epoch and ``patience`` (early stopping on the validation
        loss) to 10 epochs; the weights of the best validation loss are kept.
    loader
        Batch size (256) and block reads.
    work_dir
        Directory for ``checkpoint.pt`` (written every epoch); ``None`` keeps none.
    resume
        Continue from ``work_dir/checkpoint.pt`` when it exists. The checkpoint records the
        panel genes, the architecture and the store, trainer and loader options
        (:func:`genesel.checkpoint.run_fingerprint`); one made with any other is refused,
        except that the epoch budget may change (the MLP follows no schedule over it).
    """
    hidden = check_hidden(hidden)
    trainer = trainer or TrainerConfig(lr_decay=DEFAULT_LR_DECAY)
    if trainer.patience is None and validation_rows(store):
        trainer = dataclasses.replace(trainer, patience=DEFAULT_PATIENCE)
    loader = loader or LoaderConfig()
    checkpoint = None if work_dir is None else Path(work_dir) / CHECKPOINT_NAME
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    seed_everything(trainer.seed, -2)
    decoder = build_decoder(
        len(panel), store.n_vars, hidden=hidden, activation=activation, dropout=dropout
    )
    task = PanelDecoderTask(decoder, panel)
    identity = {
        "decoder": "mlp",
        "panel": store.gene_ids[np.asarray(panel)].astype(str).tolist(),
        "hidden": list(hidden),
        "activation": activation,
        "dropout": float(dropout),
    }
    runner = Trainer(trainer, checkpoint_path=checkpoint, fingerprint=identity)
    train_loader = MinibatchLoader(
        store, "train", config=loader, shuffle=True, seed=trainer.seed, device=runner.device
    )
    validation_loader = None
    if store.split_indices("validation").size:
        validation_loader = MinibatchLoader(
            store, "validation", config=loader, shuffle=False, device=runner.device
        )
    else:
        logger.warning(
            "no validation split: the MLP keeps the weights of the lowest training loss"
        )
    result = runner.fit(task, train_loader, validation_loader, resume=resume)
    decoder = task.decoder.to("cpu").eval()
    return decoder, result
