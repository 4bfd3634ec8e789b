"""The shared trainer: step caps per epoch and bad configurations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genesel.errors import ConfigError
from genesel.loader import LoaderConfig, MinibatchLoader
from genesel.training import Trainer, TrainerConfig


class CountingAutoencoder(nn.Module):
    """A linear autoencoder that counts its training steps."""

    def __init__(self, n_genes: int) -> None:
        super().__init__()
        self.net = nn.Linear(n_genes, n_genes)
        self.steps = 0

    def training_loss(self, batch: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        return nn.functional.mse_loss(self.net(batch), batch)

    def validation_loss(self, batch: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(self.net(batch), batch)


@pytest.mark.parametrize("resident", [None, 0])
def test_max_steps_per_epoch_caps_every_epoch(planted_store, resident):
    store, _ = planted_store
    loader = MinibatchLoader(store, "train", config=LoaderConfig(batch_size=16, block_rows=32, resident_bytes=resident), seed=0)
    assert len(loader) > 3
    task = CountingAutoencoder(store.n_vars)
    result = Trainer(TrainerConfig(max_epochs=3, max_steps_per_epoch=3, device="cpu", progress=False)).fit(task, loader, None)
    assert task.steps == 9 and len(result.history) == 3
    uncapped = CountingAutoencoder(store.n_vars)
    Trainer(TrainerConfig(max_epochs=1, device="cpu", progress=False)).fit(uncapped, loader, None)
    assert uncapped.steps == len(loader)


def test_bad_trainer_configuration_is_refused():
    with pytest.raises(ConfigError, match="max_steps_per_epoch must be at least 1"):
        TrainerConfig(max_steps_per_epoch=0)
    with pytest.raises(ConfigError, match="max_epochs must be at least 1"):
        TrainerConfig(max_epochs=0)
