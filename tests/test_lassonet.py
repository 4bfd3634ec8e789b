"""Unsupervised LassoNet: the Group-Hier-Prox operator and the dense-to-sparse path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lassonet.prox import prox as reference_prox

from genesel.errors import ConfigError, InputFileError
from genesel.loader import LoaderConfig
from genesel.run import RunConfig
from genesel.selectors import make_selector, select_panel
from genesel.selectors.base import training_loaders
from genesel.selectors.hier_prox import group_hier_prox
from genesel.selectors.lassonet import LassoNetSelector
from genesel.selectors.lassonet_network import LassoNetAutoencoder, PathStep
from genesel.selectors.lassonet_rates import (
    HESSIAN_ROWS,
    largest_covariance_eigenvalue,
    largest_hessian_eigenvalue,
    sample_rows,
)
from genesel.store import Store
from genesel.training import TrainerConfig
from tests.conftest import write_store

K = 5
#: Small, fast path settings for 40-gene test stores.
FAST = {
    "hidden": [8],
    "epochs_per_lambda": 5,
    "lambda_patience": 2,
    "path_multiplier": 1.2,
    "refit_epochs": 10,
    "refit_patience": 3,
}
LOADER = LoaderConfig(batch_size=32)


def grouped_matrix(
    n_obs: int, n_genes: int, n_drivers: int, *, seed: int = 3, noise: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Genes in ``n_drivers`` groups, each a noisy nonlinear copy of its group's driver.

    The drivers themselves are noise-free, so the best panel of ``n_drivers`` genes is the
    drivers (one per group); a gene of the same group carries the same signal plus noise.
    """
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_obs, n_drivers))
    group = rng.integers(0, n_drivers, size=n_genes)
    drivers = np.sort(rng.choice(n_genes, size=n_drivers, replace=False))
    group[drivers] = np.arange(n_drivers)
    scale = rng.uniform(0.5, 1.5, size=n_genes) * rng.choice([-1, 1], size=n_genes)
    X = scale * (latent[:, group] + 0.5 * np.tanh(2 * latent[:, group])) + noise * rng.normal(
        size=(n_obs, n_genes)
    )
    X[:, drivers] = latent
    return (X + 5.0).astype(np.float32), drivers


@pytest.fixture(scope="module")
def grouped_store(tmp_path_factory):
    """A 600 x 40 store of 5 gene groups; yields (Store, drivers)."""
    X, drivers = grouped_matrix(600, 40, K)
    path = write_store(Path(tmp_path_factory.mktemp("grouped")) / "grouped.h5ad", X)
    with Store.open(path) as store:
        yield store, drivers


def fast_trainer() -> TrainerConfig:
    return TrainerConfig(max_epochs=20, patience=5)


def cpu_run(seed: int = 0) -> RunConfig:
    return RunConfig(seed=seed, device="cpu", progress=False)


@pytest.fixture(scope="module")
def fitted(grouped_store):
    """One full path on the grouped store: (selector, result)."""
    store, _ = grouped_store
    selector = LassoNetSelector(n_genes=K, seed=0, stop_at=2, keep_states_below=-1, **FAST)
    result = selector.select(store, trainer=fast_trainer(), run=cpu_run(), loader=LOADER)
    return selector, result


@pytest.mark.parametrize("lambda_bar", [0.0, 0.05])
def test_group_hier_prox_matches_the_lassonet_package(lambda_bar):
    generator = torch.Generator().manual_seed(0)
    for trial in range(40):
        n_out, n_hidden, n_in = (int(v) for v in torch.randint(1, 25, (3,), generator=generator))
        skip = (
            torch.randn(n_out, n_in, generator=generator, dtype=torch.float64)
            * 2
            * torch.rand(1, generator=generator, dtype=torch.float64)
        )
        first = (
            torch.randn(n_hidden, n_in, generator=generator, dtype=torch.float64)
            * 2
            * torch.rand(1, generator=generator, dtype=torch.float64)
        )
        skip[:, 0] = 0.0  # a gene that already left
        lambda_ = float(torch.rand(1, generator=generator)) * 1.5
        hierarchy = float(torch.rand(1, generator=generator)) * 20 + 0.1
        expected_skip, expected_first = reference_prox(
            skip, first, lambda_=lambda_, lambda_bar=lambda_bar, M=hierarchy
        )
        new_skip, new_first = group_hier_prox(
            skip, first, lambda_=lambda_, lambda_bar=lambda_bar, hierarchy=hierarchy
        )
        torch.testing.assert_close(
            new_skip, expected_skip, atol=1e-6, rtol=0, msg=f"trial {trial}"
        )
        torch.testing.assert_close(
            new_first, expected_first, atol=1e-6, rtol=0, msg=f"trial {trial}"
        )


def test_prox_enforces_the_hierarchy_and_removes_weak_genes():
    torch.manual_seed(1)
    model = LassoNetAutoencoder(12, hidden=[8])
    with torch.no_grad():
        model.skip.weight[:, 3] *= 1e-3
        model.first_layer.weight[:, 3] *= 1e-3
    model.prox(lambda_=0.05, hierarchy=10.0)
    norms = model.group_norms()
    assert norms[3] == 0 and not bool(model.active_genes()[3])
    assert torch.all(model.first_layer.weight.abs().amax(dim=0) <= 10.0 * norms + 1e-7)


def test_path_recovers_the_drivers_and_reports_itself(grouped_store, fitted):
    store, drivers = grouped_store
    _, result = fitted
    genes = result.gene_indices
    assert len(genes) == K == len(set(genes.tolist()))
    assert len(set(genes.tolist()) & set(drivers.tolist())) >= 3
    history = result.history
    assert {"lambda", "n_selected", "train_loss", "validation_loss"} <= set(history.columns)
    assert history["lambda"].iloc[0] == 0 and history["n_selected"].iloc[0] == store.n_vars
    assert history["n_selected"].iloc[-1] <= 2
    assert np.all(np.diff(history["lambda"].to_numpy()) > 0)
    assert np.all(np.diff(result.scores) <= 0), "genes that leave later rank first"
    assert result.state_dict["input_mask"].sum() == K


def test_one_path_gives_nested_panels_and_restorable_points(grouped_store, fitted):
    store, _ = grouped_store
    selector, _ = fitted
    path = selector.path_
    panels = {k: path.panel(k) for k in (2, 3, K, 8, 12)}
    for small, large in [(2, 3), (3, K), (K, 8), (8, 12)]:
        np.testing.assert_array_equal(panels[large][:small], panels[small])
    assert all(p.state_dict is not None for p in path.points), (
        "keep_states_below=-1 keeps every point"
    )
    point = path.point_for(8)
    assert point.n_selected >= 8
    model = LassoNetAutoencoder(store.n_vars, hidden=FAST["hidden"])
    model.load_state_dict(point.full_state_dict())
    np.testing.assert_array_equal(model.active_genes().numpy(), point.selected)
    assert point.state_dict["skip.weight"].shape == (store.n_vars, point.n_selected), (
        "kept compactly"
    )
    np.testing.assert_allclose(
        model.group_norms().numpy(), point.group_norms, rtol=1e-6
    )  # the dropped columns were zero
    assert 0 < selector.reconstruction_mse(store, "test") < 0.8, (
        "the panel model explains most of the variance"
    )


def test_path_is_deterministic_given_a_seed_and_resumes(grouped_store, fitted, tmp_path):
    store, _ = grouped_store
    _, first = fitted
    again = select_panel(
        store,
        method="lassonet",
        n_genes=K,
        seed=0,
        params={**FAST, "stop_at": 2},
        trainer=fast_trainer(),
        run=cpu_run(),
        loader=LOADER,
        out_dir=tmp_path,
    )
    np.testing.assert_array_equal(first.gene_indices, again.gene_indices)
    np.testing.assert_allclose(first.history["validation_loss"], again.history["validation_loss"])
    assert (tmp_path / "lassonet_path.pt").exists() and (tmp_path / "panel.tsv").exists()
    resumed = LassoNetSelector(n_genes=K, seed=0, stop_at=2, **FAST)
    result = resumed.select(
        store, trainer=fast_trainer(), run=cpu_run(), loader=LOADER, work_dir=tmp_path, resume=True
    )
    np.testing.assert_array_equal(result.gene_indices, first.gene_indices)
    np.testing.assert_allclose(result.history["lambda"], first.history["lambda"])
    with pytest.raises(
        InputFileError, match=r"other inputs \(checkpoint -> this run: hierarchy 10.0 -> 3.0\)"
    ):
        LassoNetSelector(n_genes=K, seed=0, stop_at=2, **{**FAST, "hierarchy": 3.0}).select(
            store,
            trainer=fast_trainer(),
            run=cpu_run(),
            loader=LOADER,
            work_dir=tmp_path,
            resume=True,
        )


def test_rejects_bad_options():
    with pytest.raises(ConfigError, match="path_multiplier"):
        make_selector("lassonet", n_genes=3, params={"path_multiplier": 1.0})
    with pytest.raises(ConfigError, match="hidden layer"):
        LassoNetAutoencoder(5, hidden=[])


def test_hessian_eigenvalue_matches_the_dense_hessian():
    torch.manual_seed(0)
    model = LassoNetAutoencoder(6, hidden=[3], activation="tanh")
    task = PathStep(model, l2_penalty=0.1)
    batch = torch.randn(20, 6)
    params = dict(model.named_parameters())
    shapes = {name: p.shape for name, p in params.items()}
    sizes = [p.numel() for p in params.values()]

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        chunks = dict(zip(params, torch.split(flat, sizes), strict=True))
        weights = {name: chunk.reshape(shapes[name]) for name, chunk in chunks.items()}
        prediction = torch.func.functional_call(model, weights, (batch,))
        ridge = sum(
            (w**2).sum()
            for name, w in weights.items()
            if name.startswith("mlp.") and name.endswith("weight") and name != "mlp.0.weight"
        )
        return ((prediction - batch) ** 2).sum(dim=1).mean() + 0.1 * ridge

    flat = torch.cat([p.detach().reshape(-1) for p in params.values()])
    exact = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, flat)).abs().max()
    assert largest_hessian_eigenvalue(task, batch, n_iter=300) == pytest.approx(
        float(exact), rel=1e-3
    )


def test_auto_path_rate_is_capped_where_many_genes_feed_a_small_layer(grouped_store, caplog):
    store, _ = grouped_store
    selector = LassoNetSelector(n_genes=K, seed=0, hidden=[2])
    model = LassoNetAutoencoder(store.n_vars, hidden=[2])
    with torch.no_grad():
        model.mlp[-1].weight.mul_(30.0)  # a stiff MLP, as after a dense fit at the GEO scale
    train, _ = training_loaders(store, run=cpu_run(), loader=LOADER, method="lassonet")
    covariance_rule = 0.05 / largest_covariance_eigenvalue(train)
    curvature = largest_hessian_eigenvalue(
        PathStep(model, l2_penalty=selector.l2_penalty), sample_rows(train, HESSIAN_ROWS)
    )
    assert 1.0 / curvature < covariance_rule
    with caplog.at_level("INFO", logger="genesel.selectors.lassonet_rates"):
        rate = selector._path_learning_rate(
            model, train, fast_trainer(), covariance_rate=covariance_rule
        )
    assert rate == pytest.approx(1.0 / curvature)
    assert "largest Hessian eigenvalue" in caplog.text
    explicit = LassoNetSelector(n_genes=K, path_learning_rate=0.5)._path_learning_rate(
        model, train, fast_trainer(), covariance_rate=None
    )
    assert explicit == 0.5


def test_a_diverging_path_step_is_retried_with_half_the_rate(grouped_store, caplog):
    store, _ = grouped_store
    selector = LassoNetSelector(
        n_genes=K, seed=0, stop_at=K, **{**FAST, "path_learning_rate": 1.0}
    )
    with caplog.at_level("WARNING", logger="genesel.selectors.lassonet_path"):
        result = selector.select(store, trainer=fast_trainer(), run=cpu_run(), loader=LOADER)
    assert "diverged; learning rate halved" in caplog.text
    assert selector.path_learning_rate_ < 1.0
    assert len(set(result.gene_indices.tolist())) == K
    assert np.isfinite(result.history["validation_loss"]).all()


def test_a_path_that_diverges_at_every_halving_names_the_option(grouped_store):
    store, _ = grouped_store
    selector = LassoNetSelector(
        n_genes=K, seed=0, stop_at=K, **{**FAST, "path_learning_rate": 1e9}
    )
    with pytest.raises(
        FloatingPointError, match=r"diverged even at learning rate .*path_learning_rate"
    ):
        selector.select(store, trainer=fast_trainer(), run=cpu_run(), loader=LOADER)
