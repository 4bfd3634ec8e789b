"""Training-free selectors: landmarks, random, hvg (scanpy) and qr (Q-DEIM)."""

from __future__ import annotations

import argparse

import anndata
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.linalg

from genesel.cli import select as select_cli
from genesel.errors import ConfigError
from genesel.selectors import read_panel, select_panel
from genesel.selectors.spectrum import marchenko_pastur_rank
from genesel.store import Store
from tests.conftest import planted_matrix, write_store

K = 5


@pytest.mark.parametrize(
    ("method", "n_genes"), [("landmarks", 4), ("random", K), ("hvg", K), ("qr", K)]
)
def test_returns_k_distinct_valid_genes_with_scores(planted_store, method, n_genes):
    store, _ = planted_store
    result = select_panel(store, method=method, n_genes=n_genes, seed=2)
    genes = result.gene_indices
    assert len(genes) == n_genes == len(set(genes.tolist()))
    assert genes.min() >= 0 and genes.max() < store.n_vars
    assert result.scores is not None and np.all(np.isfinite(result.scores))
    assert np.all(np.diff(result.scores) <= 1e-12), "panels are listed best first"


def test_landmarks_are_the_flagged_genes(planted_store):
    store, _ = planted_store
    result = select_panel(store, method="landmarks", n_genes=4)
    assert set(result.gene_indices.tolist()) == set(np.flatnonzero(store.landmark_mask).tolist())


def test_landmarks_with_wrong_k_names_the_count(planted_store):
    store, _ = planted_store
    with pytest.raises(ConfigError, match=r"has 4 landmark genes.*use n_genes=4") as error:
        select_panel(store, method="landmarks", n_genes=K)
    assert error.value.parameter == "n_genes"  # the command line adds --n-genes


def test_random_is_seeded(planted_store):
    store, _ = planted_store
    first = select_panel(store, method="random", n_genes=K, seed=7).gene_indices
    again = select_panel(store, method="random", n_genes=K, seed=7).gene_indices
    other = select_panel(store, method="random", n_genes=K, seed=8).gene_indices
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_hvg_matches_scanpy_on_the_train_split(planted_store):
    store, _ = planted_store
    result = select_panel(store, method="hvg", n_genes=K)
    train = store.read_rows(store.split_indices("train"), standardize=False)
    adata = anndata.AnnData(train, var=pd.DataFrame(index=store.gene_ids.astype(str)))
    adata.uns["log1p"] = {"base": 2.0}
    sc.pp.highly_variable_genes(adata, flavor="seurat", n_top_genes=K)
    assert set(result.gene_indices.tolist()) == set(
        np.flatnonzero(adata.var["highly_variable"].to_numpy()).tolist()
    )


def test_hvg_subsamples_large_train_splits_with_the_seed(planted_store):
    store, _ = planted_store
    small = {"max_rows": 100}
    first = select_panel(store, method="hvg", n_genes=K, seed=1, params=small)
    again = select_panel(store, method="hvg", n_genes=K, seed=1, params=small)
    assert first.extra["n_rows"] == 100
    np.testing.assert_array_equal(first.gene_indices, again.gene_indices)


def test_qr_is_pivoted_qr_of_the_leading_principal_directions(planted_store):
    store, _ = planted_store
    train = store.read_rows(store.split_indices("train")).astype(np.float64)
    _, singular, vt = np.linalg.svd(train, full_matrices=False)
    original = select_panel(
        store, method="qr", n_genes=K, params={"n_components": None, "weighted": False}
    )
    _, _, pivots = scipy.linalg.qr(vt[:K], pivoting=True)
    np.testing.assert_array_equal(original.gene_indices, pivots[:K])
    # default: the directions above the Marchenko-Pastur edge, weighted by their singular values
    result = select_panel(store, method="qr", n_genes=K)
    rank = result.extra["n_components"]
    assert 1 <= rank <= K and result.extra["n_above_edge"] >= rank
    _, _, pivots = scipy.linalg.qr(singular[:rank, None] * vt[:rank], pivoting=True)
    np.testing.assert_array_equal(result.gene_indices[:rank], pivots[:rank])


def test_marchenko_pastur_rank_counts_planted_directions():
    rng = np.random.default_rng(0)
    n, d, r = 60, 400, 3
    X = rng.normal(size=(n, r)) @ rng.normal(size=(r, d)) * 0.8 + rng.normal(size=(n, d))
    X = (X - X.mean(0)) / X.std(0)
    values = np.linalg.eigvalsh(X @ X.T / n)[::-1]
    rank, noise, edge = marchenko_pastur_rank(values, n_obs=n - 1, n_vars=d)
    assert rank == r and 0.2 < noise < 1.0 and edge > values[r]


def test_qr_randomized_agrees_with_exact(planted_store):
    store, _ = planted_store
    exact = select_panel(store, method="qr", n_genes=K, params={"n_components": K})
    randomized = select_panel(
        store, method="qr", n_genes=K, params={"n_components": K, "exact_max_genes": 10}
    )
    assert randomized.extra["pca"] == "randomized subspace iteration"
    np.testing.assert_array_equal(exact.gene_indices, randomized.gene_indices)


def test_qr_finds_most_drivers_of_a_linear_compendium(tmp_path):
    X, drivers = planted_matrix(500, 30, 4, seed=5, noise=0.01)
    path = write_store(tmp_path / "linear.h5ad", X)
    with Store.open(path) as store:
        genes = select_panel(
            store, method="qr", n_genes=4, params={"n_components": 4}
        ).gene_indices
    assert len(set(genes.tolist()) & set(drivers.tolist())) >= 2


@pytest.mark.parametrize(
    "params", [{}, {"n_components": None, "weighted": False}, {"n_components": 3}]
)
def test_qr_returns_panels_larger_than_the_train_rows(tmp_path, params):
    X, _ = planted_matrix(40, 60, 4, seed=2, noise=0.2)
    path = write_store(tmp_path / "few.h5ad", X, fractions=(0.5, 0.3, 0.2))
    with Store.open(path) as store:
        n_train = store.split_indices("train").size
        k = n_train + 10
        result = select_panel(store, method="qr", n_genes=k, params=params)
    assert len(set(result.gene_indices.tolist())) == k > n_train
    assert result.extra["completed"] == k - result.extra["n_components"] > 0


def test_select_cli_writes_a_random_panel(planted_store, tmp_path):
    store, _ = planted_store
    parser = argparse.ArgumentParser()
    select_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        [
            "select",
            "--data",
            str(store.path),
            "--method",
            "random",
            "-k",
            str(K),
            "--seed",
            "3",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    args.progress = False
    assert args.func(args) == 0
    panel = read_panel(tmp_path / "out")
    assert len(panel) == K and panel["gene_id"].is_unique
