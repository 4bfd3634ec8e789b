"""The out-of-core linear imputer equals in-memory least squares."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from genesel.errors import ConfigError
from genesel.impute import fit_imputer, fit_linear, solve_normal_equations
from genesel.loader import LoaderConfig
from genesel.run import RunConfig
from genesel.store import Store
from tests.conftest import planted_matrix, write_store


def standardized_split(store: Store, split: str) -> np.ndarray:
    """A split in float64 standardised units, computed in memory."""
    raw = store.read_rows(store.split_indices(split), standardize=False).astype(np.float64)
    return (raw - store.var["mean"].to_numpy()) / store.var["std"].to_numpy()


def lstsq_with_intercept(z: np.ndarray, panel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    design = np.column_stack([z[:, panel], np.ones(len(z))])
    solution = np.linalg.lstsq(design, z, rcond=None)[0]
    return solution[:-1], solution[-1]


@pytest.fixture
def linear_store(tmp_path):
    X, _ = planted_matrix(523, 30, 4, seed=11, noise=0.3)
    with Store.open(write_store(tmp_path / "linear.h5ad", X, seed=5)) as store:
        yield store


@pytest.mark.parametrize("block_rows", [1, 11, 64, 100, 5000])
def test_out_of_core_solution_equals_lstsq(linear_store, block_rows):
    panel = np.array([3, 17, 0, 25, 9, 12])
    z = standardized_split(linear_store, "train")
    assert z.shape[0] % 11 and z.shape[0] % 64 and z.shape[0] % 100  # blocks do not divide N
    coef, intercept = lstsq_with_intercept(z, panel)
    solution = fit_linear(linear_store, panel, ridge=0.0, block_rows=block_rows, progress=False)
    assert solution.method == "cholesky" and solution.n_samples == z.shape[0]
    scale = np.abs(coef).max()
    np.testing.assert_allclose(solution.coef, coef, rtol=1e-6, atol=1e-6 * scale)
    np.testing.assert_allclose(solution.intercept, intercept, rtol=1e-6, atol=1e-9)
    # the panel genes are reproduced exactly: their own coefficient is one
    np.testing.assert_allclose(solution.coef[:, panel], np.eye(len(panel)), atol=1e-9)


def test_float32_block_products_stay_close_to_lstsq(linear_store):
    panel = np.array([3, 17, 0, 25, 9, 12])
    z = standardized_split(linear_store, "train")
    coef, intercept = lstsq_with_intercept(z, panel)
    exact = fit_linear(linear_store, panel, ridge=0.0, block_rows=64, progress=False)
    fast = fit_linear(
        linear_store, panel, ridge=0.0, block_rows=64, precision="float32", progress=False
    )
    scale = np.abs(coef).max()
    np.testing.assert_allclose(fast.coef, coef, rtol=1e-4, atol=1e-4 * scale)
    np.testing.assert_allclose(fast.intercept, intercept, atol=1e-5)
    # float32 products are measurably less exact than float64 ones, not identical to them
    assert (
        0 < np.abs(fast.coef - coef).max()
        and np.abs(exact.coef - coef).max() < np.abs(fast.coef - coef).max()
    )
    with pytest.raises(ConfigError, match="precision must be one of"):
        fit_linear(linear_store, panel, precision="float16", progress=False)


def test_ridge_matches_closed_form_and_spares_the_intercept(linear_store):
    panel = np.array([1, 2, 3])
    ridge = 0.05
    z = standardized_split(linear_store, "train")
    n = z.shape[0]
    centred_x = z[:, panel] - z[:, panel].mean(0)
    centred_y = z - z.mean(0)
    coef = np.linalg.solve(
        centred_x.T @ centred_x + ridge * n * np.eye(3), centred_x.T @ centred_y
    )
    intercept = z.mean(0) - z[:, panel].mean(0) @ coef
    solution = fit_linear(linear_store, panel, ridge=ridge, block_rows=50, progress=False)
    np.testing.assert_allclose(solution.coef, coef, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(solution.intercept, intercept, rtol=1e-8, atol=1e-12)
    with pytest.raises(ConfigError, match="ridge"):
        fit_linear(linear_store, panel, ridge=-1.0, progress=False)


def test_dependent_panel_falls_back_to_minimum_norm(tmp_path, caplog):
    X, _ = planted_matrix(200, 10, 3, seed=2)
    X[:, 4] = X[:, 2]  # two identical panel genes: singular Gram matrix
    with Store.open(write_store(tmp_path / "dup.h5ad", X)) as store:
        z = standardized_split(store, "train")
        with caplog.at_level(logging.WARNING, logger="genesel.impute.linear"):
            solution = fit_linear(store, np.array([2, 4, 7]), ridge=0.0, progress=False)
    assert solution.method == "lstsq"
    assert "linearly dependent" in caplog.text and "ridge=0.001" in caplog.text
    design = np.column_stack([z[:, [2, 4, 7]], np.ones(len(z))])
    reference = np.linalg.pinv(design) @ z
    fitted = z[:, [2, 4, 7]] @ solution.coef + solution.intercept
    np.testing.assert_allclose(fitted, design @ reference, atol=1e-6)
    np.testing.assert_allclose(
        solution.coef[0], solution.coef[1], atol=1e-6
    )  # split evenly: minimum norm


def test_normal_equations_reject_too_few_samples():
    with pytest.raises(ConfigError, match="at least 2"):
        solve_normal_equations(np.zeros((1, 3)), np.zeros(3), 1, np.array([0]))


def test_fit_imputer_linear_predicts_like_the_solution(linear_store):
    ids = linear_store.var.index[[5, 6, 7]].tolist()
    model = fit_imputer(
        linear_store,
        ids,
        decoder="linear",
        loader=LoaderConfig(block_rows=33),
        run=RunConfig(device="cpu", progress=False),
    )
    solution = fit_linear(linear_store, np.array([5, 6, 7]), progress=False)
    assert (
        solution.ridge_choice.criterion == "validation" and model.params["ridge"] == solution.ridge
    )
    z = standardized_split(linear_store, "test")
    predicted = model.predict_standardized(z[:, [5, 6, 7]])
    imputed = np.setdiff1d(
        np.arange(z.shape[1]), [5, 6, 7]
    )  # panel genes are passed through, not predicted
    np.testing.assert_allclose(
        predicted[:, imputed],
        (z[:, [5, 6, 7]] @ solution.coef + solution.intercept)[:, imputed],
        atol=1e-5,
    )
    np.testing.assert_array_equal(predicted[:, [5, 6, 7]], z[:, [5, 6, 7]].astype(np.float32))
    assert model.training["solver"] == "eigh" and model.panel_ids.tolist() == ids
