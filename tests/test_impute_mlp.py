"""The D-GEX-style MLP imputer: training, resuming, and beating linear on nonlinear data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genesel.errors import ConfigError
from genesel.evaluate import evaluate_model
from genesel.impute import fit_imputer
from genesel.impute.mlp import CHECKPOINT_NAME
from genesel.loader import LoaderConfig
from genesel.run import RunConfig
from genesel.store import Store
from genesel.training import TrainerConfig
from tests.conftest import write_store

NOISE = 0.2


def nonlinear_matrix(n_obs: int, *, seed: int = 0) -> np.ndarray:
    """3 driver genes, then 12 genes that are even/interaction functions of them plus noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_obs, 3))
    a, b, c = z.T
    targets = np.column_stack(
        [
            np.sin(2 * a),
            a * b,
            b**2,
            np.tanh(3 * c),
            np.cos(a + c),
            np.abs(b) - c**2,
            np.sin(b * c),
            a**2 - c,
            np.exp(-(a**2)),
            c * np.abs(a),
            np.sin(3 * c),
            a * b * c,
        ]
    )
    return (np.column_stack([z, targets + NOISE * rng.normal(size=targets.shape)]) + 5.0).astype(
        np.float32
    )


@pytest.fixture
def nonlinear_store(tmp_path):
    X = nonlinear_matrix(1600)
    train = (
        np.random.default_rng(0).choice(
            np.array(["train", "validation", "test"]), size=1600, p=[0.7, 0.15, 0.15]
        )
        == "train"
    )
    # best achievable standardised MSE on the 12 imputed genes: noise variance / gene variance
    floor = float(np.mean(NOISE**2 / X[train, 3:].astype(np.float64).var(axis=0)))
    with Store.open(
        write_store(tmp_path / "nonlinear.h5ad", X, uns={"noise_floor": floor})
    ) as store:
        yield store


#: Where the tests' fits run.
RUN = RunConfig(device="cpu", progress=False)


def trainer(epochs: int, **kwargs) -> TrainerConfig:
    return TrainerConfig(max_epochs=epochs, learning_rate=1e-2, lr_decay=0.97, **kwargs)


def test_mlp_beats_linear_on_nonlinear_data_but_not_the_noise_floor(nonlinear_store):
    linear = fit_imputer(nonlinear_store, [0, 1, 2], decoder="linear", run=RUN)
    mlp = fit_imputer(
        nonlinear_store,
        [0, 1, 2],
        decoder="mlp",
        hidden=(64,),
        dropout=0.0,
        trainer=trainer(30),
        loader=LoaderConfig(batch_size=64),
        run=RUN,
    )
    linear_metrics = evaluate_model(nonlinear_store, linear, progress=False).metrics
    mlp_metrics = evaluate_model(nonlinear_store, mlp, progress=False).metrics
    floor = mlp_metrics["noise_floor"]
    assert 0.03 < floor < 0.2
    assert mlp_metrics["mse_imputed"] < 0.4 * linear_metrics["mse_imputed"]
    assert mlp_metrics["mse_imputed"] > 0.85 * floor
    assert linear_metrics["mse_imputed"] > 0.85 * floor
    assert mlp.training["best_epoch"] >= 0 and len(mlp.history) == 30
    assert mlp.params == {"hidden": [64], "activation": "tanh", "dropout": 0.0}


def test_mlp_resume_equals_uninterrupted_training(planted_store, tmp_path):
    store, drivers = planted_store
    kwargs = dict(
        decoder="mlp",
        hidden=(32, 16),
        activation="leaky_relu",
        dropout=0.1,
        loader=LoaderConfig(batch_size=32),
        run=RUN,
    )
    full = fit_imputer(store, drivers.tolist(), trainer=trainer(4), **kwargs)
    fit_imputer(
        store, drivers.tolist(), trainer=trainer(2), work_dir=tmp_path, **kwargs
    )  # "interrupted" after 2 epochs
    assert (tmp_path / CHECKPOINT_NAME).exists()
    resumed = fit_imputer(
        store, drivers.tolist(), trainer=trainer(4), work_dir=tmp_path, resume=True, **kwargs
    )
    assert resumed.training["resumed_from_epoch"] == 2
    for key, value in full.module.state_dict().items():
        assert torch.equal(value, resumed.module.state_dict()[key]), key
    np.testing.assert_array_equal(full.history["train_loss"], resumed.history["train_loss"])


def test_mlp_rejects_bad_architectures(planted_store):
    store, drivers = planted_store
    for hidden in ((), (8, 8, 8, 8), (0,)):
        with pytest.raises(ConfigError, match="hidden"):
            fit_imputer(store, drivers.tolist(), decoder="mlp", hidden=hidden, run=RUN)
    with pytest.raises(ConfigError, match="decoder"):
        fit_imputer(store, drivers.tolist(), decoder="forest", run=RUN)
