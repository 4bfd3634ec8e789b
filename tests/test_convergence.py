"""The step budget, the convergence rule and its flag, and a step loop free of host syncs."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from genesel.cli.main import main as genesel_main
from genesel.loader import LoaderConfig
from genesel.panel import read_panel, read_panel_config, read_panel_metadata
from genesel.run import RunConfig
from genesel.selectors.concrete_autoencoder import ConcreteAutoencoder
from genesel.selectors.select import select_panel
from genesel.trainer import Trainer
from genesel.training import TrainerConfig, plan_budget

CPU = RunConfig(device="cpu", progress=False)


def trainer(**kwargs) -> TrainerConfig:
    return TrainerConfig(**{"learning_rate": 0.02, **kwargs})


class FakeLoader:
    """A list of minibatches with the loader interface the trainer uses."""

    def __init__(self, n_batches: int, n_genes: int = 6, batch_size: int = 4) -> None:
        generator = torch.Generator().manual_seed(0)
        self.batches = [
            torch.randn(batch_size, n_genes, generator=generator) for _ in range(n_batches)
        ]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)

    def set_epoch(self, epoch: int) -> None:
        pass


class Linear(nn.Module):
    """A linear autoencoder counting its steps; convergence as told."""

    def __init__(self, converged_after: int | None = None) -> None:
        super().__init__()
        self.net = nn.Linear(6, 6)
        self.steps = 0
        self.epochs = 0
        self.converged_after = converged_after

    def training_loss(self, batch):
        self.steps += 1
        return nn.functional.mse_loss(self.net(batch), batch)

    def validation_loss(self, batch):
        return nn.functional.mse_loss(self.net(batch), batch)

    def on_epoch_start(self, epoch, n_epochs):
        self.epochs += 1

    def converged(self, metrics):
        return None if self.converged_after is None else self.epochs >= self.converged_after


def test_min_steps_raises_the_epoch_budget():
    budget = plan_budget(trainer(max_epochs=2, min_steps=25), n_batches=4)
    assert (budget.planned_epochs, budget.planned_steps, budget.step_limit) == (7, 28, 28)
    assert (
        plan_budget(trainer(max_epochs=10, min_steps=25), n_batches=4).planned_steps == 40
    )  # enough already
    task = Linear()
    result = Trainer(trainer(max_epochs=1, min_steps=10), run=CPU).fit(task, FakeLoader(3))
    assert task.steps == 12 and len(result.history) == 4 and result.planned_steps == 12


def test_max_steps_cuts_the_plan_and_the_extension():
    budget = plan_budget(
        trainer(max_epochs=10, max_steps=7, stop_when_converged=True, converge_extension=1.0),
        n_batches=3,
    )
    assert (budget.planned_steps, budget.step_limit, budget.planned_epochs) == (7, 7, 3)
    task = Linear()
    result = Trainer(trainer(max_epochs=10, max_steps=7), run=CPU).fit(task, FakeLoader(3))
    assert task.steps == 7 and result.stopped == "max_steps"


def test_unconverged_runs_are_extended_up_to_the_cap_then_stop():
    # never converges: planned 6 steps + 100% extension
    task = Linear(converged_after=10**6)
    result = Trainer(
        trainer(max_epochs=2, stop_when_converged=True, converge_extension=1.0), run=CPU
    ).fit(task, FakeLoader(3))
    assert task.steps == 12 and result.stopped == "unconverged" and result.converged is False
    # converges during the extension: stops there
    task = Linear(converged_after=3)
    result = Trainer(
        trainer(max_epochs=2, stop_when_converged=True, converge_extension=5.0), run=CPU
    ).fit(task, FakeLoader(3))
    assert task.steps == 9 and result.stopped == "converged" and result.converged is True
    # no convergence notion: the plan, no extension
    task = Linear()
    result = Trainer(
        trainer(max_epochs=2, stop_when_converged=True, converge_extension=5.0), run=CPU
    ).fit(task, FakeLoader(3))
    assert task.steps == 6 and result.stopped == "max_epochs" and result.converged is None


def test_step_schedule_reaches_the_end_temperature_at_the_last_planned_step(monkeypatch):
    temperatures: list[float] = []
    original = ConcreteAutoencoder.on_step_start

    def record(self, step, total_steps):
        original(self, step, total_steps)
        temperatures.append(self.temperature)

    monkeypatch.setattr(ConcreteAutoencoder, "on_step_start", record)
    model = ConcreteAutoencoder(6, 2)  # anneal="step" by default
    config = trainer(max_epochs=1, min_steps=9, stop_when_converged=True, converge_extension=1.0)
    result = Trainer(config, run=CPU).fit(model, FakeLoader(3))
    planned = result.planned_steps
    assert planned == 9
    assert temperatures[0] == pytest.approx(10.0)
    assert temperatures[planned - 1] == pytest.approx(0.01)
    assert all(
        a > b for a, b in zip(temperatures[: planned - 1], temperatures[1:planned], strict=True)
    )
    assert all(
        t == pytest.approx(0.01) for t in temperatures[planned:]
    )  # the extension stays at TB


def test_step_loop_reads_no_device_value_per_step(monkeypatch):
    """Host reads (.item(), float(), bool()) of tensors happen per epoch, never per step."""
    counts = {"n": 0}
    for name in ("item", "__float__", "__bool__", "__int__", "tolist"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, **kwargs):
            counts["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)

    def reads(n_batches: int) -> int:
        counts["n"] = 0
        model = ConcreteAutoencoder(6, 2, gjsd_weight=0.1, indirect=True, selector_lr=0.05)
        Trainer(trainer(max_epochs=2, min_steps=0, stop_when_converged=True), run=CPU).fit(
            model, FakeLoader(n_batches), FakeLoader(2)
        )
        return counts["n"]

    few, many = reads(2), reads(12)
    assert few == many, f"{many - few} host reads for {2 * 10} more steps"


def test_nonfinite_loss_is_caught_at_the_epoch_end():
    class Exploding(Linear):
        def training_loss(self, batch):
            loss = super().training_loss(batch)
            return loss * float("inf") if self.steps == 2 else loss

    with pytest.raises(FloatingPointError, match="in epoch 0; lower the learning rate"):
        Trainer(trainer(max_epochs=2), run=CPU).fit(Exploding(), FakeLoader(3))


def test_converged_panel_is_flagged_true(planted_store, tmp_path):
    store, _ = planted_store
    result = select_panel(
        store,
        method="ipcae",
        n_genes=5,
        seed=0,
        params={"embedding_dim": 8},
        trainer=trainer(max_epochs=2, min_steps=300),
        run=CPU,
        loader=LoaderConfig(batch_size=32),
        out_dir=tmp_path,
    )
    extra = result.extra
    assert (
        extra["converged"] is True
        and extra["unique_percent"] == 100.0
        and extra["mean_max_probability"] >= 0.99
    )
    metadata = read_panel_metadata(tmp_path)
    assert (
        metadata["converged"] is True
        and metadata["method"] == "ipcae"
        and metadata["n_genes"] == 5
        and metadata["seed"] == 0
    )
    assert metadata["mean_max_probability"] == pytest.approx(
        extra["mean_max_probability"], rel=1e-5
    )
    assert len(read_panel(tmp_path)) == 5


def test_unconverged_panel_is_flagged_in_panel_tsv_and_warned(
    planted_store, tmp_path, monkeypatch, caplog
):
    store, _ = planted_store
    monkeypatch.setattr("genesel.cli.main.SUBCOMMANDS", ("select",))
    out = tmp_path / "panel"
    args = [
        "select",
        "--data",
        str(store.path),
        "--method",
        "cae",
        "-k",
        "5",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--min-steps",
        "0",
        "--converge-extension",
        "0",
        "--param",
        "selector_lr=null",
    ]
    with caplog.at_level(logging.WARNING):
        assert genesel_main(args) == 0
    assert "training ended unconverged" in caplog.text and "Fix:" in caplog.text
    text = (out / "panel.tsv").read_text().splitlines()
    assert "# converged=false" in text and text[0].startswith("# ")
    assert any(line.startswith("# mean_max_probability=") for line in text)
    assert any(line.startswith("# unique_percent=") for line in text)
    metadata = read_panel_metadata(out)
    assert metadata["converged"] is False and metadata["mean_max_probability"] < 0.5
    assert read_panel_config(out)["extra"]["converged"] is False
    panel = read_panel(out)
    assert list(panel.columns[:2]) == ["rank", "gene_id"] and len(panel) == 5


def test_peaked_duplicate_nodes_move_to_their_next_best_gene():
    model = ConcreteAutoencoder(6, 3, block_duplicates=True)
    with torch.no_grad():
        model.selector.logits.copy_(
            torch.tensor([[0, 0, 20.0, 0, 0, 0], [0, 0, 19.0, 8, 0, 0], [0, 0, 0, 0, 20.0, 0]])
        )
    metrics = model.epoch_metrics()
    assert metrics["unique_percent"] < 100 and metrics["mean_max_probability"] > 0.99
    assert model.converged(metrics) is False  # probability alone is not enough: distinct genes too
    model.on_epoch_end(metrics)
    assert model.blocked.nonzero().tolist() == [[1, 2]]  # the less confident holder of gene 2
    assert model.selected_genes().tolist() == [2, 3, 4]
    # nothing happens before the nodes have peaked, or without the option
    cold = ConcreteAutoencoder(6, 3, block_duplicates=True)
    cold.on_epoch_end(cold.epoch_metrics())
    assert not cold.blocked.any()
    assert ConcreteAutoencoder(6, 3).blocked.numel() == 0
