"""Correlated logitNormal masks: the gate distribution's formulas and both selectors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genesel.errors import ConfigError
from genesel.loader import LoaderConfig
from genesel.run import RunConfig
from genesel.selectors import make_selector, select_panel
from genesel.selectors.logitnormal_mask import LogitNormalMask
from genesel.training import TrainerConfig
from tests.test_lassonet import grouped_store  # noqa: F401  (module-scoped fixture)

K = 5
LOADER = LoaderConfig(batch_size=32)
#: Settings for 40-gene test stores (few steps, so the gates learn faster than the defaults).
SMALL = {
    "decoder_hidden": [32],
    "latent_dim": 8,
    "init_open": 0.2,
    "l0_weight": 0.1,
    "controller_range": 20.0,
    "start_temperature": 0.3,
    "end_temperature": 0.1,
    "mask_learning_rate": 0.003,
}


def trainer(epochs: int) -> TrainerConfig:
    return TrainerConfig(max_epochs=epochs)


def cpu_run(seed: int = 0) -> RunConfig:
    return RunConfig(seed=seed, device="cpu", progress=False)


def random_mask(n_vars: int = 12, **options) -> LogitNormalMask:
    torch.manual_seed(0)
    mask = LogitNormalMask(n_vars, latent_dim=3, noise_scale=None, max_logit=None, **options)
    with torch.no_grad():
        mask.weight.mul_(torch.rand(n_vars, 1) * 2 + 0.2)
        mask.bias.copy_(torch.linspace(-2.0, 2.0, n_vars))
    return mask


@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_expected_l0_is_the_probability_of_a_nonzero_gate(temperature):
    mask = random_mask()
    mask.temperature.fill_(temperature)
    with torch.no_grad():
        draws = mask.sample(100_000)
        expected = mask.nonzero_probability()
        total = float(mask.expected_l0())
    np.testing.assert_allclose((draws > 0).float().mean(0).numpy(), expected.numpy(), atol=0.01)
    assert math.isclose(total, float(expected.sum()), rel_tol=1e-6)


def test_zero_temperature_gates_open_with_phi_of_b_over_w():
    mask = random_mask()
    mask.temperature.fill_(1e-4)
    with torch.no_grad():
        draws = mask.sample(100_000)
        probability = mask.open_probability()
    assert float(((draws > 0) & (draws < 1)).float().mean()) < 1e-3, (
        "gates are (almost always) exactly 0 or 1"
    )
    np.testing.assert_allclose(draws.mean(0).numpy(), probability.numpy(), atol=0.01)
    assert probability[0] < 0.5 < probability[-1], "b_i > 0 opens a gate, b_i < 0 closes it"


def test_init_open_sets_the_initial_probability_and_rows_have_the_noise_scale():
    mask = LogitNormalMask(50, latent_dim=4, init_open=0.2, noise_scale=1.0)
    weight, _ = mask.weight_and_bias()
    np.testing.assert_allclose(
        torch.linalg.vector_norm(weight, dim=1).detach().numpy(), 1.0, rtol=1e-5
    )
    np.testing.assert_allclose(mask.open_probability().detach().numpy(), 0.2, atol=1e-4)
    hyper = LogitNormalMask(50, latent_dim=4, hypernetwork=True, init_open=0.2)
    assert abs(float(hyper.open_probability().detach().mean()) - 0.2) < 0.05


def test_vanilla_recovers_the_drivers_and_lands_near_k(grouped_store):  # noqa: F811
    store, drivers = grouped_store
    result = select_panel(
        store,
        method="logitnormal",
        n_genes=K,
        seed=0,
        params=SMALL,
        trainer=trainer(60),
        run=cpu_run(),
        loader=LOADER,
    )
    genes = result.gene_indices
    assert len(genes) == K == len(set(genes.tolist()))
    assert len(set(genes.tolist()) & set(drivers.tolist())) >= 3
    history = result.history
    assert {"expected_l0", "n_open", "l0_weight", "temperature"} <= set(history.columns)
    assert abs(history["expected_open"].iloc[-1] - K) <= 2, (
        "the controller steers the open gates to K"
    )
    assert np.all(np.diff(result.scores) <= 0)
    assert result.state_dict["panel_mask"].sum() == K


def _linear_mse(store, genes: np.ndarray) -> float:
    train = store.read_rows(store.split_indices("train"))
    test = store.read_rows(store.split_indices("test"))
    design = np.c_[train[:, genes], np.ones(len(train))]
    coef = np.linalg.lstsq(design, train, rcond=None)[0]
    return float(((np.c_[test[:, genes], np.ones(len(test))] @ coef - test) ** 2).mean())


def test_hypernetwork_panel_beats_random_panels(grouped_store):  # noqa: F811
    store, _ = grouped_store
    selector = make_selector(
        "logitnormal-hnet",
        n_genes=K,
        seed=0,
        params={**SMALL, "embedding_dim": 16, "hyper_hidden": 32},
    )
    result = selector.select(store, trainer=trainer(40), run=cpu_run(), loader=LOADER)
    assert len(set(result.gene_indices.tolist())) == K
    rng = np.random.default_rng(0)
    random_mse = np.mean(
        [_linear_mse(store, rng.choice(store.n_vars, K, replace=False)) for _ in range(30)]
    )
    assert _linear_mse(store, result.gene_indices) < random_mse
    # the selector's own decoder reads exactly the panel
    own = selector.reconstruction_mse(store, "test")
    panel_only = torch.from_numpy(store.read_rows(store.split_indices("test")))
    with torch.no_grad():
        mask = torch.zeros(store.n_vars)
        mask[torch.as_tensor(result.gene_indices)] = 1.0
        manual = float(((selector.model_.decoder(panel_only * mask) - panel_only) ** 2).mean())
    assert math.isclose(own, manual, rel_tol=1e-4)


@pytest.mark.parametrize("method", ["logitnormal", "logitnormal-hnet"])
def test_deterministic_given_a_seed_and_k_distinct_on_the_planted_fixture(planted_store, method):
    store, _ = planted_store
    params = {**SMALL, "finetune_epochs": 2}
    first = select_panel(
        store,
        method=method,
        n_genes=K,
        seed=4,
        params=params,
        trainer=trainer(4),
        run=cpu_run(4),
        loader=LOADER,
    )
    again = select_panel(
        store,
        method=method,
        n_genes=K,
        seed=4,
        params=params,
        trainer=trainer(4),
        run=cpu_run(4),
        loader=LOADER,
    )
    assert len(set(first.gene_indices.tolist())) == K
    np.testing.assert_array_equal(first.gene_indices, again.gene_indices)
    np.testing.assert_allclose(first.history["validation_loss"], again.history["validation_loss"])
    assert first.extra["finetune_epochs"] == 2


def test_rejects_bad_options():
    with pytest.raises(ConfigError, match="gamma"):
        LogitNormalMask(5, gamma=0.1)
    with pytest.raises(ConfigError, match="anneal_fraction"):
        make_selector("logitnormal", n_genes=3, params={"anneal_fraction": 2.0})
    with pytest.raises(ConfigError, match="has no parameter"):
        make_selector("logitnormal", n_genes=3, params={"embedding_dim": 4})


def test_mask_convergence_allows_five_percent():
    from genesel.selectors.logitnormal import mask_converged

    assert mask_converged(90, 90) and mask_converged(86, 90) and mask_converged(94, 90)
    assert not mask_converged(85, 90) and not mask_converged(95, 90) and not mask_converged(4, 90)
    assert mask_converged(9, 10) and not mask_converged(8, 10)  # at least one gene of slack
