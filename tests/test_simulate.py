"""The calibrated compendium simulator: reproducibility, identities, calibration, structure."""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import genesel.simulate as simulate
from genesel.cli import simulate as simulate_cli
from genesel.errors import ConfigError
from genesel.io.gene_maps import dgex_gene_map
from genesel.simulate import simulate_compendium
from genesel.simulation import sampling
from genesel.simulation.model import build_model
from genesel.simulation.params import SimulationParams, load_calibration, simulated_genes
from genesel.simulation.sampling import LATENT_BLOCK_ROWS, noise_free_rows


def _read(path: Path) -> ad.AnnData:
    return ad.read_h5ad(path)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> ad.AnnData:
    """300 samples x 400 genes, seed 1."""
    path = tmp_path_factory.mktemp("sim") / "small.h5ad"
    return _read(simulate_compendium(path, n_obs=300, n_vars=400, seed=1, progress=False))


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> ad.AnnData:
    """3,000 samples x 1,200 genes (108 landmarks), seed 0."""
    path = tmp_path_factory.mktemp("sim") / "medium.h5ad"
    return _read(simulate_compendium(path, n_obs=3000, n_vars=1200, seed=0, progress=False))


def test_same_seed_same_values_whatever_the_block_size(tmp_path: Path, small: ad.AnnData) -> None:
    other = _read(
        simulate_compendium(
            tmp_path / "b.h5ad", n_obs=300, n_vars=400, seed=1, block_rows=37, progress=False
        )
    )
    np.testing.assert_array_equal(other.X, small.X)
    assert other.obs.equals(small.obs)
    assert other.var.equals(small.var)
    different = _read(
        simulate_compendium(tmp_path / "c.h5ad", n_obs=300, n_vars=400, seed=2, progress=False)
    )
    assert not np.allclose(different.X, small.X)


def test_shorter_run_is_a_prefix_of_a_longer_one(tmp_path: Path, small: ad.AnnData) -> None:
    n_obs = LATENT_BLOCK_ROWS + 76  # crosses a random-stream boundary
    longer = _read(
        simulate_compendium(
            tmp_path / "long.h5ad",
            n_obs=n_obs,
            n_vars=400,
            seed=1,
            block_rows=500,
            progress=False,
        )
    )
    np.testing.assert_array_equal(longer.X[:300], small.X)
    assert list(longer.obs["cluster"][:300]) == list(small.obs["cluster"])


def test_shape_identities_and_annotations(small: ad.AnnData) -> None:
    universe = dgex_gene_map()
    assert small.shape == (300, 400)
    assert small.X.dtype == np.float32
    n_landmarks = round(400 * 943 / 10463)
    assert small.var["landmark"].sum() == n_landmarks
    assert small.var["landmark"].iloc[:n_landmarks].all()  # landmarks first
    assert list(small.var_names[:n_landmarks]) == list(universe.index[:n_landmarks])
    assert small.var_names.isin(universe.index).all() and small.var_names.is_unique
    assert small.var.index.name == "gene_id"
    assert (small.var["symbol"] == universe.loc[small.var_names, "symbol"]).all()
    assert small.obs_names[0] == "sample_000000" and small.obs_names[-1] == "sample_000299"
    assert small.obs["cluster"].dtype == "category"
    assert small.obs["cluster"].nunique() > 3
    assert 2.0 < np.median(small.X) < 10.0 and small.X.min() >= 0.0 and small.X.max() <= 16.0


def test_all_genes_keep_the_dgex_universe() -> None:
    genes = simulated_genes(None)
    assert len(genes) == 10_463 and genes["landmark"].sum() == 943
    assert genes["landmark"].iloc[:943].all()
    subset = simulated_genes(1000, seed=5)
    assert subset["landmark"].sum() == 90
    assert not subset.index.equals(simulated_genes(1000, seed=6).index)  # seeded targets


def test_opens_backed(small: ad.AnnData, tmp_path: Path) -> None:
    path = simulate_compendium(tmp_path / "backed.h5ad", n_obs=20, n_vars=50, progress=False)
    backed = ad.read_h5ad(path, backed="r")
    try:
        assert backed.shape == (20, 50)
        assert np.isfinite(backed.X[:5]).all()
    finally:
        backed.file.close()


def test_marginals_match_the_calibration(medium: ad.AnnData) -> None:
    calibration = load_calibration().genes.loc[medium.var_names]
    mean_error = np.abs(medium.X.mean(axis=0) - calibration["mean"].to_numpy())
    sd_ratio = medium.X.std(axis=0) / calibration["sd"].to_numpy()
    assert np.median(mean_error) < 0.05 and mean_error.max() < 0.5
    assert 0.95 < np.median(sd_ratio) < 1.05
    assert np.quantile(sd_ratio, 0.05) > 0.8 and np.quantile(sd_ratio, 0.95) < 1.2


def test_noise_floor_and_noise_variance(medium: ad.AnnData) -> None:
    info = medium.uns["genesel"]
    assert 0.0 < info["noise_floor"] < 1.0
    assert info["noise_floor"] == pytest.approx(medium.var["noise_fraction"].mean())
    sd = load_calibration().genes.loc[medium.var_names, "sd"].to_numpy()
    np.testing.assert_allclose(
        medium.var["noise_var"], medium.var["noise_fraction"] * sd**2, rtol=1e-5
    )
    landmark = medium.var["landmark"].to_numpy()
    assert (
        medium.var["noise_fraction"][landmark].mean()
        < medium.var["noise_fraction"][~landmark].mean()
    )
    assert info["simulation"]["seed"] == 0 and info["simulation"]["rank"] == SimulationParams.rank


def test_noise_is_heavy_tailed_with_the_recorded_variance() -> None:
    model = build_model(SimulationParams(), seed=3, n_vars=200)
    rng = np.random.default_rng([3, sampling.LATENT_STREAM, 0])
    clusters, scores = sampling.draw_latent(model, rng, LATENT_BLOCK_ROWS)
    _, values = sampling.simulate_latent_block(model, 0)
    noise = (values - noise_free_rows(model, clusters, scores)) / np.sqrt(
        model.noise_sd.astype(np.float64) ** 2
    )
    inside = (values > 0.0) & (values < 16.0)  # ignore the rare clipped values
    assert np.var(noise[inside]) == pytest.approx(1.0, abs=0.05)
    kurtosis = np.mean(noise[inside] ** 4) / np.var(noise[inside]) ** 2
    assert kurtosis > 4.5  # Student-t(5) has kurtosis 9; a Gaussian has 3


def _held_out_linear_mse(inputs: np.ndarray, outputs: np.ndarray, n_train: int) -> float:
    design = np.c_[inputs, np.ones(len(inputs))]
    train = design[:n_train]
    coef = np.linalg.solve(
        train.T @ train + 1e-8 * np.eye(design.shape[1]), train.T @ outputs[:n_train]
    )
    return float(np.mean((design[n_train:] @ coef - outputs[n_train:]) ** 2))


def test_linear_imputation_from_landmarks_stays_above_the_noise_floor(medium: ad.AnnData) -> None:
    X = medium.X.astype(np.float64)
    standardised = (X - X[:2000].mean(axis=0)) / X[:2000].std(axis=0)
    landmark = medium.var["landmark"].to_numpy()
    mse = _held_out_linear_mse(standardised[:, landmark], standardised[:, ~landmark], 2000)
    floor = medium.uns["genesel"]["noise_floor_targets"]
    assert 0.0 < floor < mse < 0.9
    assert mse > floor + 0.08  # structure a linear decoder cannot reach


def test_signal_is_not_linear_in_the_latent_variables() -> None:
    model = build_model(SimulationParams(), seed=0, n_vars=200)
    rng = np.random.default_rng(0)
    clusters, scores = sampling.draw_latent(model, rng, 2 * LATENT_BLOCK_ROWS)
    signal = noise_free_rows(model, clusters, scores).astype(np.float64)
    signal = (signal - signal.mean(axis=0)) / signal.std(axis=0)
    latent = np.c_[scores, np.eye(model.params.n_clusters)[clusters]]
    nonlinear = _held_out_linear_mse(latent, signal, 3 * LATENT_BLOCK_ROWS // 2)
    assert nonlinear > 0.05  # a part of every gene's signal is a nonlinear function of h
    linear_only = build_model(
        SimulationParams(nonlinear_share=0.0, tissue_share=0.0), seed=0, n_vars=200
    )
    signal = noise_free_rows(linear_only, clusters, scores).astype(np.float64)
    signal = (signal - signal.mean(axis=0)) / signal.std(axis=0)
    assert _held_out_linear_mse(latent, signal, 3 * LATENT_BLOCK_ROWS // 2) < 1e-6


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_obs": 0},
        {"n_obs": 10, "n_vars": 0},
        {"n_obs": 10, "n_vars": 20_000},
        {"n_obs": 10, "block_rows": 0},
        {"n_obs": 10, "noise_df": 2.0},
        {"n_obs": 10, "rank": 1},
        {"n_obs": 10, "nonlinear_share": 0.7, "tissue_share": 0.3},
        {"n_obs": 10, "not_a_parameter": 1},
    ],
)
def test_bad_arguments_raise_config_error(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        simulate_compendium(tmp_path / "bad.h5ad", progress=False, **kwargs)
    assert not any(tmp_path.iterdir())


def test_interrupted_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = simulate.simulate_latent_block
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(simulate, "simulate_latent_block", interrupted)
    path = tmp_path / "out.h5ad"
    with pytest.raises(KeyboardInterrupt):
        simulate_compendium(
            path, n_obs=3 * LATENT_BLOCK_ROWS, n_vars=30, block_rows=100, progress=False
        )
    assert not any(tmp_path.iterdir())


def test_cli_writes_the_file(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    simulate_cli.add_parser(parser.add_subparsers())
    out = tmp_path / "cli.h5ad"
    args = parser.parse_args(
        [
            "simulate",
            "--out",
            str(out),
            "--n-obs",
            "40",
            "--n-vars",
            "60",
            "--seed",
            "4",
            "--rank",
            "8",
        ]
    )
    args.progress = False
    assert args.func(args) == 0
    adata = _read(out)
    assert adata.shape == (40, 60)
    assert adata.uns["genesel"]["simulation"]["rank"] == 8
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["simulate", "--help"])
    assert exit_info.value.code == 0


def test_cli_leaves_every_default_to_simulate_compendium() -> None:
    """Options not given on the command line are not passed: the core owns the defaults."""
    parser = argparse.ArgumentParser()
    simulate_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["simulate", "--out", "out.h5ad"])
    assert {name: getattr(args, name) for name in simulate_cli._OPTIONS} == dict.fromkeys(
        simulate_cli._OPTIONS
    )
