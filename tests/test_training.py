"""The shared trainer: step caps per epoch and bad configurations."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from genesel.checkpoint import remove_checkpoint, run_fingerprint
from genesel.errors import ConfigError, InputFileError
from genesel.loader import LoaderConfig, MinibatchLoader
from genesel.run import RunConfig
from genesel.trainer import Trainer
from genesel.training import TRAINER_RECORD_KEYS, TrainerConfig, trainer_record

CPU = RunConfig(device="cpu", progress=False)


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
    loader = MinibatchLoader(
        store,
        "train",
        config=LoaderConfig(batch_size=16, block_rows=32, resident_bytes=resident),
        seed=0,
    )
    assert len(loader) > 3
    task = CountingAutoencoder(store.n_vars)
    result = Trainer(TrainerConfig(max_epochs=3, max_steps_per_epoch=3), run=CPU).fit(
        task, loader, None
    )
    assert task.steps == 9 and len(result.history) == 3
    uncapped = CountingAutoencoder(store.n_vars)
    Trainer(TrainerConfig(max_epochs=1), run=CPU).fit(uncapped, loader, None)
    assert uncapped.steps == len(loader)


def test_bad_trainer_configuration_is_refused():
    with pytest.raises(ConfigError, match="max_steps_per_epoch must be at least 1"):
        TrainerConfig(max_steps_per_epoch=0)
    with pytest.raises(ConfigError, match="max_epochs must be at least 1"):
        TrainerConfig(max_epochs=0)


def test_trainer_config_is_frozen_and_holds_no_run_options():
    config = TrainerConfig(max_epochs=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_epochs = 4  # type: ignore[misc]  # the point: assignment is refused
    assert dataclasses.replace(config, max_epochs=4).max_epochs == 4 and config.max_epochs == 3
    assert not {"seed", "device", "progress", "mixed_precision"} & {
        field.name for field in dataclasses.fields(TrainerConfig)
    }


def test_the_fingerprint_records_the_seed_not_where_the_run_executes(planted_store):
    store, _ = planted_store
    train = MinibatchLoader(store, "train", config=LoaderConfig(batch_size=16), seed=0)
    config = TrainerConfig(max_epochs=2)
    here = run_fingerprint(train, config, run=RunConfig(seed=3, device="cpu", progress=False))
    elsewhere = run_fingerprint(train, config, run=RunConfig(seed=3, mixed_precision=False))
    assert here == elsewhere and here["trainer"]["seed"] == 3
    assert here["trainer"] == {**dataclasses.asdict(config), "seed": 3}
    assert run_fingerprint(train, config, run=RunConfig(seed=4))["trainer"]["seed"] == 4


def test_the_trainer_record_keeps_the_keys_of_a_panel_config():
    record = trainer_record(TrainerConfig(), RunConfig(seed=2, device="cpu"))
    assert list(record) == list(TRAINER_RECORD_KEYS)
    assert record["seed"] == 2 and record["device"] == "cpu" and record["max_epochs"] == 100


def test_best_weights_on_disk_equal_the_in_memory_copy_and_resume(planted_store, tmp_path):
    store, _ = planted_store
    config = LoaderConfig(batch_size=16, block_rows=32, resident_bytes=0)
    train = MinibatchLoader(store, "train", config=config, seed=0)
    validation = MinibatchLoader(store, "validation", config=config, shuffle=False)
    trainer = TrainerConfig(max_epochs=4, learning_rate=0.05)

    def fresh() -> CountingAutoencoder:
        torch.manual_seed(0)
        return CountingAutoencoder(store.n_vars)

    in_memory = fresh()
    reference = Trainer(trainer, run=CPU).fit(in_memory, train, validation)
    on_disk = fresh()
    runner = Trainer(trainer, run=CPU, checkpoint_path=tmp_path / "checkpoint.pt")
    result = runner.fit(on_disk, train, validation)
    assert result.best_epoch == reference.best_epoch
    assert [p.name for p in runner.best_files()] == [f"checkpoint.best-{result.best_epoch}.pt"]
    for key, value in in_memory.state_dict().items():
        assert torch.equal(on_disk.state_dict()[key], value)
    # a finished run resumed loads the same best weights from disk
    again = fresh()
    assert (
        Trainer(trainer, run=CPU, checkpoint_path=tmp_path / "checkpoint.pt")
        .fit(again, train, validation, resume=True)
        .best_epoch
        == result.best_epoch
    )
    assert torch.equal(again.net.weight, in_memory.net.weight)
    # a checkpoint whose best weights are gone is refused with a clear error
    runner.best_files()[0].unlink()
    with pytest.raises(
        InputFileError, match=r"best weights it refers to \(checkpoint.best-\d+.pt\) are missing"
    ):
        Trainer(trainer, run=CPU, checkpoint_path=tmp_path / "checkpoint.pt").fit(
            fresh(), train, validation, resume=True
        )
    remove_checkpoint(tmp_path / "checkpoint.pt")
    assert not list(tmp_path.glob("checkpoint*"))
