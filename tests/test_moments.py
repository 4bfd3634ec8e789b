"""The moments path: exact Gram matrices, and fits and test errors equal to the streaming path."""

from __future__ import annotations

import numpy as np
import pytest

from genesel.errors import ConfigError, InputFileError
from genesel.evaluate import evaluate_model
from genesel.impute import fit_imputer
from genesel.impute.linear import fit_linear
from genesel.impute.ridge import RIDGE_GRID, RidgeProblem
from genesel.impute.sweep import evaluate_linear_panels
from genesel.moments import check_memory, compute_moments, open_moments
from genesel.store import Store
from tests.conftest import planted_matrix, write_store
from tests.test_impute_gpl96 import FIXTURE, average_probes, dgex_genes


def standardized(store: Store, split: str) -> np.ndarray:
    raw = store.read_rows(store.split_indices(split), standardize=False).astype(np.float64)
    return (raw - store.var["mean"].to_numpy()) / store.var["std"].to_numpy()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    root = tmp_path_factory.mktemp("moments")
    X, _ = planted_matrix(611, 40, 5, seed=3, noise=0.4)
    path = write_store(root / "store.h5ad", X, seed=2)
    with Store.open(path) as store:
        compute_moments(store, root / "moments.h5", block_rows=97, progress=False)
        yield store, root / "moments.h5"


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The 74 real GPL96 arrays (1,200 of the D-GEX genes), with their moments."""
    import anndata as ad

    root = tmp_path_factory.mktemp("real")
    genes = dgex_genes()
    X = average_probes(ad.read_h5ad(FIXTURE), genes)
    keep = np.argsort(-X.std(axis=0))[:1200]
    path = write_store(root / "store.h5ad", X[:, np.sort(keep)], seed=4, fractions=(0.6, 0.2, 0.2))
    with Store.open(path) as store:
        compute_moments(store, root / "moments.h5", progress=False)
        yield store, root / "moments.h5"


def test_moments_equal_in_memory_products(simulated):
    store, path = simulated
    with open_moments(path, store) as moments:
        for split in ("train", "validation", "test"):
            z = standardized(store, split)
            panel = np.array([7, 1, 30])
            stats = moments.panel_statistics(split, panel)
            assert stats.n == z.shape[0]
            np.testing.assert_allclose(stats.cross, z[:, panel].T @ z, rtol=1e-10, atol=1e-9)
            np.testing.assert_allclose(stats.total, z.sum(0), atol=1e-9)
            np.testing.assert_allclose(stats.squares, (z**2).sum(0), rtol=1e-10)


def test_panel_rows_read_directly_equal_h5py_rows(simulated, tmp_path):
    """Contiguous matrices are read from the file by runs of rows; chunked ones (older files) by h5py."""
    import shutil

    import h5py

    store, path = simulated
    chunked = tmp_path / "chunked.h5"
    shutil.copy(path, chunked)
    with h5py.File(chunked, "a") as handle:
        for split in ("train", "validation", "test"):
            gram = handle[split]["gram"][:]
            del handle[split]["gram"]
            handle[split].create_dataset("gram", data=gram, chunks=(1, gram.shape[1]))
    panel = np.array([39, 4, 5, 6, 0, 22, 21, 38])  # unsorted, with runs and both ends
    with open_moments(path, store) as direct, open_moments(chunked, store) as through_h5py:
        assert direct._handle["train"]["gram"].id.get_offset() is not None
        assert through_h5py._handle["train"]["gram"].id.get_offset() is None
        for split in ("train", "validation", "test"):
            a, b = (
                direct.panel_statistics(split, panel),
                through_h5py.panel_statistics(split, panel),
            )
            np.testing.assert_array_equal(a.cross, b.cross)
            np.testing.assert_array_equal(a.cross, direct._handle[split]["gram"][:][panel])


@pytest.mark.parametrize("ridge", [0.0, 0.05, "auto"])
@pytest.mark.parametrize("data", ["simulated", "real"])
def test_moments_path_equals_streaming_path(data, ridge, request):
    store, path = request.getfixturevalue(data)
    rng = np.random.default_rng(0)
    panels = {k: np.sort(rng.choice(store.n_vars, size=k, replace=False)) for k in (3, 12, 25)}
    with open_moments(path, store) as moments:
        results = evaluate_linear_panels(store, moments, panels, ridge=ridge, progress=False)
    for k, panel in panels.items():
        model = fit_imputer(store, panel.tolist(), decoder="linear", ridge=ridge, progress=False)
        streamed = evaluate_model(store, model, progress=False)
        swept = results[k].evaluation
        assert results[k].ridge == pytest.approx(model.params["ridge"], rel=1e-12)
        for name in (
            "mse_imputed",
            "mse",
            "mse_imputed_original",
            "mse_mean_predictor",
            "pearson_r_mean",
        ):
            assert swept.metrics[name] == pytest.approx(streamed.metrics[name], rel=1e-6), name
        np.testing.assert_allclose(
            swept.per_gene["mse"], streamed.per_gene["mse"], rtol=1e-5, atol=1e-9
        )
        # the per-sample errors cover every test row here, and average to the same MSE
        np.testing.assert_allclose(
            swept.per_sample["mse_imputed"],
            streamed.per_sample["mse_imputed"],
            rtol=1e-5,
            atol=1e-9,
        )
        assert swept.per_sample["mse_imputed"].mean() == pytest.approx(
            swept.metrics["mse_imputed"], rel=1e-9
        )
        assert (
            streamed.metrics["mse_imputed_ci"][0]
            < streamed.metrics["mse_imputed"]
            < streamed.metrics["mse_imputed_ci"][1]
        )


def test_validation_errors_equal_brute_force_fits(simulated):
    store, path = simulated
    panel = np.array([2, 11, 19, 33])
    with open_moments(path, store) as moments:
        train = moments.panel_statistics("train", panel)
        validation = moments.panel_statistics("validation", panel)
    problem = RidgeProblem(train)
    grid = np.array([0.0, 1e-3, 0.1, 1.0, 10.0])
    formula = problem.validation_errors(validation, grid)
    z_train, z_valid = standardized(store, "train"), standardized(store, "validation")
    imputed = np.setdiff1d(np.arange(store.n_vars), panel)
    for ridge, value in zip(grid, formula, strict=True):
        x = z_train[:, panel] - z_train[:, panel].mean(0)
        y = z_train - z_train.mean(0)
        coef = np.linalg.solve(x.T @ x + ridge * len(x) * np.eye(panel.size), x.T @ y)
        prediction = z_train.mean(0) + (z_valid[:, panel] - z_train[:, panel].mean(0)) @ coef
        assert value == pytest.approx(((prediction - z_valid)[:, imputed] ** 2).mean(), rel=1e-9)


def test_auto_ridge_finds_the_bayes_optimal_penalty(tmp_path):
    """Targets y = x b + noise with b ~ N(0, tau^2 I): the best penalty is sigma^2 / (n tau^2)."""
    rng = np.random.default_rng(1)
    n_obs, k, n_targets, tau, sigma = 1200, 40, 300, 0.05, 1.0
    x = rng.normal(size=(n_obs, k))
    y = x @ rng.normal(scale=tau, size=(k, n_targets)) + rng.normal(
        scale=sigma, size=(n_obs, n_targets)
    )
    path = write_store(
        tmp_path / "ridge.h5ad", np.hstack([x, y]).astype(np.float32), fractions=(0.25, 0.6, 0.15)
    )
    with Store.open(path) as store:
        panel = np.arange(k)
        solution = fit_linear(store, panel, ridge="auto", progress=False)
        n_train = store.split_indices("train").size
    best = sigma**2 / (n_train * tau**2)
    chosen = solution.ridge_choice
    assert chosen.criterion == "validation" and len(chosen.grid) == len(RIDGE_GRID) + 1
    assert best / 4 < solution.ridge < best * 4, (solution.ridge, best)
    assert min(chosen.errors) < chosen.errors[0]  # better than no penalty


def test_moments_refuse_another_store_and_a_small_budget(simulated, tmp_path):
    store, path = simulated
    X, _ = planted_matrix(300, 40, 5, seed=9)
    with Store.open(write_store(tmp_path / "other.h5ad", X)) as other:
        with pytest.raises(InputFileError, match="another store"):
            open_moments(path, other)
    with pytest.raises(ConfigError, match="per-panel|impute fit"):
        check_memory(10_463, max_memory_gib=1.0)
    with pytest.raises(InputFileError, match="genesel moments"):
        open_moments(tmp_path / "missing.h5", store)


def test_gcv_without_validation_rows_does_not_interpolate(tmp_path):
    """No validation split and a panel as large as the train rows: GCV must not pick ridge 0."""
    from genesel.impute.ridge import PanelStatistics

    rng = np.random.default_rng(5)
    n_train, n_genes, k = 30, 80, 29
    latent = rng.normal(size=(n_train + 2000, 5))
    z = latent @ rng.normal(size=(5, n_genes)) + rng.normal(size=(n_train + 2000, n_genes))
    train, fresh = z[:n_train], z[n_train:]
    panel = np.arange(k)
    stats = PanelStatistics(
        n_train, train.sum(0), train[:, panel].T @ train, (train**2).sum(0), panel
    )
    choice = RidgeProblem(stats).choose(None)
    assert choice.criterion == "gcv" and choice.ridge > 0
    coef, intercept = RidgeProblem(stats).coefficients(choice.ridge)
    imputed = np.setdiff1d(np.arange(n_genes), panel)
    error = (((intercept + fresh[:, panel] @ coef) - fresh)[:, imputed] ** 2).mean()
    mean_predictor = ((fresh - train.mean(0))[:, imputed] ** 2).mean()
    assert error < mean_predictor
