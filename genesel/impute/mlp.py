"""D-GEX-style multilayer perceptron imputer, trained on streamed minibatches."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from genesel.decoders import ACTIVATIONS, build_decoder
from genesel.errors import ConfigError
from genesel.impute.base import Decoder, DecoderFit, register_decoder
from genesel.loader import LoaderConfig, MinibatchLoader
from genesel.run import RunConfig
from genesel.store import Store
from genesel.trainer import Trainer
from genesel.training import TrainerConfig, seed_everything, trainer_record

logger = logging.getLogger(__name__)

#: The checkpoint file inside ``work_dir``.
CHECKPOINT_NAME = "checkpoint.pt"


class PanelDecoderTask(nn.Module):
    """Training task: predict every gene of a standardised row from its panel columns.

    Parameters
    ----------
    decoder
        Module mapping ``K`` panel values to ``D`` genes.
    panel
        Column indices of the panel genes in the rows the loader yields.
    """

    panel: torch.Tensor

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


def check_hidden(hidden: Sequence[int] | int) -> tuple[int, ...]:
    """Validate MLP hidden-layer widths (one to three layers, as D-GEX)."""
    widths = (int(hidden),) if isinstance(hidden, int) else tuple(int(h) for h in hidden)
    if not 1 <= len(widths) <= 3:
        raise ConfigError(
            f"an MLP imputer has 1 to 3 hidden layers (D-GEX), got {list(widths)}; use decoder='linear' for none",
            parameter="param:hidden",
        )
    if min(widths) < 1:
        raise ConfigError(
            f"hidden layer widths must be positive, got {list(widths)}", parameter="param:hidden"
        )
    return widths


@register_decoder
class MLPDecoder(Decoder):
    """D-GEX multilayer perceptron, trained with the :class:`~genesel.trainer.Trainer`.

    The weights of the best validation loss are kept. Training follows the trainer config;
    its fields left ``None`` take :attr:`training_defaults` (D-GEX's learning-rate decay of
    0.95 per epoch; early stopping after 10 epochs without a better validation loss, when
    there are validation rows), the others :class:`~genesel.training.TrainerConfig`'s
    (100 epochs, Adam 1e-3).

    Parameters
    ----------
    hidden
        Hidden layer widths, 1 to 3 (D-GEX's best: three layers of 9000).
    activation
        Hidden-layer nonlinearity: ``tanh`` (D-GEX), ``leaky_relu`` (CAE), ``relu``, ...
    dropout
        Dropout probability after each hidden layer.
    """

    name = "mlp"
    trainable = True
    checkpoint_files = (CHECKPOINT_NAME,)
    #: Trainer fields this decoder sets when the trainer config leaves them ``None``.
    training_defaults: ClassVar[dict[str, Any]] = {"lr_decay": 0.95, "patience": 10}

    def __init__(
        self,
        *,
        hidden: Sequence[int] = (9000,),
        activation: str = "tanh",
        dropout: float = 0.1,
    ) -> None:
        self.hidden = check_hidden(hidden)
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}",
                parameter="param:activation",
            )
        self.activation = activation
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(
                f"dropout must be in [0, 1), got {dropout}", parameter="param:dropout"
            )
        self.dropout = float(dropout)

    def trainer_config(self, trainer: TrainerConfig | None, store: Store) -> TrainerConfig:
        """``trainer`` (default: TrainerConfig()) with its ``None`` fields set by :attr:`training_defaults`.

        Early stopping needs validation rows: without them ``patience`` stays ``None``.
        """
        trainer = trainer or TrainerConfig()
        defaults = {
            name: value
            for name, value in self.training_defaults.items()
            if getattr(trainer, name) is None and (name != "patience" or validation_rows(store))
        }
        return dataclasses.replace(trainer, **defaults)

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
        """Train the network from the panel genes to all genes; keep its best-validation weights.

        With ``work_dir``, ``checkpoint.pt`` is written there every epoch, and ``resume``
        continues from it. The checkpoint records the panel genes, the architecture and the
        store, trainer and loader options (:func:`genesel.checkpoint.run_fingerprint`); one
        made with any other is refused, except that the epoch budget may change.
        """
        trainer = self.trainer_config(trainer, store)
        loader = loader or LoaderConfig()
        checkpoint = None if work_dir is None else Path(work_dir) / CHECKPOINT_NAME
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
        seed_everything(run.seed, -2)
        params = {
            "hidden": list(self.hidden),
            "activation": self.activation,
            "dropout": self.dropout,
        }
        decoder = self.build_module(params, n_genes=len(panel), n_vars=store.n_vars, panel=panel)
        task = PanelDecoderTask(decoder, panel)
        identity = {
            "decoder": "mlp",
            "panel": store.gene_ids[np.asarray(panel)].astype(str).tolist(),
            **params,
        }
        runner = Trainer(trainer, run=run, checkpoint_path=checkpoint, fingerprint=identity)
        train_loader = MinibatchLoader(
            store, "train", config=loader, shuffle=True, seed=run.seed, device=runner.device
        )
        validation_loader = None
        if validation_rows(store):
            validation_loader = MinibatchLoader(
                store, "validation", config=loader, shuffle=False, device=runner.device
            )
        else:
            logger.warning(
                "no validation split: the MLP keeps the weights of the lowest training loss"
            )
        result = runner.fit(task, train_loader, validation_loader, resume=resume)
        training = {
            "best_epoch": result.best_epoch,
            "best_validation_loss": result.best_validation_loss,
            "stopped": result.stopped,
            "resumed_from_epoch": result.resumed_from_epoch,
            "trainer": {k: v for k, v in trainer_record(trainer, run).items() if k != "progress"},
            "batch_size": loader.batch_size,
        }
        return DecoderFit(task.decoder.to("cpu").eval(), params, training, result.history)

    @classmethod
    def build_module(
        cls, params: dict[str, Any], *, n_genes: int, n_vars: int, panel: np.ndarray
    ) -> nn.Module:
        """The network of the saved architecture, untrained."""
        return build_decoder(
            n_genes,
            n_vars,
            hidden=params["hidden"],
            activation=params["activation"],
            dropout=params["dropout"],
        )
