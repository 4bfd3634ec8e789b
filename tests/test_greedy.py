"""Greedy forward selection and swap refinement: exact against brute-force refits."""

from __future__ import annotations

import numpy as np
import pytest

from genesel.moments import compute_moments, open_moments
from genesel.selectors.greedy import greedy_path
from genesel.selectors.greedy_scoring import GreedyState
from genesel.selectors.refine import refine_panel, swap_errors
from genesel.selectors.select import select_panel
from genesel.store import Store
from tests.conftest import planted_matrix, write_store


def standardized(store: Store, split: str) -> np.ndarray:
    raw = store.read_rows(store.split_indices(split), standardize=False).astype(np.float64)
    return (raw - store.var["mean"].to_numpy()) / store.var["std"].to_numpy()


def greedy_error(moments, panel, ridge: float = 0.1) -> float:
    state = GreedyState(moments, ridge=ridge)
    for gene in panel:
        state.add(gene)
    return state.error()


def refit_error(z_train: np.ndarray, z_valid: np.ndarray, panel: list[int], ridge: float) -> float:
    """Validation imputed-gene MSE of the ridge decoder refitted on ``panel``."""
    mean = z_train.mean(0)
    x = z_train[:, panel] - mean[panel]
    coef = np.linalg.solve(x.T @ x + ridge * len(x) * np.eye(len(panel)), x.T @ (z_train - mean))
    prediction = mean + (z_valid[:, panel] - mean[panel]) @ coef
    imputed = np.setdiff1d(np.arange(z_train.shape[1]), panel)
    return float(((prediction - z_valid)[:, imputed] ** 2).mean())


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("greedy")
    X, drivers = planted_matrix(160, 24, 4, seed=5, noise=0.05)
    path = write_store(root / "store.h5ad", X, seed=1, fractions=(0.5, 0.3, 0.2))
    with Store.open(path) as store:
        compute_moments(store, root / "moments.h5", progress=False)
        yield store, root / "moments.h5", drivers


@pytest.mark.parametrize("ridge", [0.05, 1e-3])
def test_greedy_order_equals_brute_force(small, ridge):
    store, path, _ = small
    z_train, z_valid = standardized(store, "train"), standardized(store, "validation")
    panel: list[int] = []
    errors = []
    for _ in range(6):
        candidates = [j for j in range(store.n_vars) if j not in panel]
        scores = [refit_error(z_train, z_valid, [*panel, j], ridge) for j in candidates]
        panel.append(candidates[int(np.argmin(scores))])
        errors.append(min(scores))
    with open_moments(path, store) as moments:
        result = greedy_path(moments, 6, ridge=ridge, criterion="validation", progress=False)
    assert result.genes.tolist() == panel
    np.testing.assert_allclose(result.errors, errors, rtol=1e-8)


def test_greedy_prefixes_are_the_smaller_panels_and_select_panel_runs(small, tmp_path):
    store, path, drivers = small
    with open_moments(path, store) as moments:
        long = greedy_path(moments, 10, progress=False)
        short = greedy_path(moments, 4, progress=False)
    assert long.genes[:4].tolist() == short.genes.tolist()
    assert np.all(np.diff(long.errors) < 0)
    result = select_panel(
        store, method="greedy", n_genes=4, params={"moments": str(path)}, out_dir=tmp_path / "g"
    )
    assert result.gene_indices.tolist() == short.genes.tolist()
    assert result.extra["order"] == short.genes.tolist()
    with open_moments(path, store) as moments:  # better than random panels of its size
        rng = np.random.default_rng(0)
        for _ in range(5):
            assert greedy_error(moments, short.genes) <= greedy_error(
                moments, rng.choice(store.n_vars, 4, replace=False)
            )
    # without a moments file they are computed into a temporary file; a named missing file is written and kept
    again = select_panel(store, method="greedy", n_genes=4, out_dir=tmp_path / "h")
    assert again.gene_indices.tolist() == short.genes.tolist() and not list(
        (tmp_path / "h").glob("*moments*")
    )
    cached = select_panel(
        store, method="greedy", n_genes=4, params={"moments": str(tmp_path / "m.h5")}
    )
    assert cached.gene_indices.tolist() == short.genes.tolist() and (tmp_path / "m.h5").exists()


def test_swap_errors_equal_refits_and_refine_never_increases(small):
    store, path, drivers = small
    z_train, z_valid = standardized(store, "train"), standardized(store, "validation")
    ridge = 0.02
    others = [g for g in range(store.n_vars) if g not in drivers]
    start = [int(drivers[0]), others[3], int(drivers[2]), others[7]]  # two drivers replaced
    with open_moments(path, store) as moments:
        state = GreedyState(moments, ridge=ridge)
        for gene in start:
            state.add(gene)
        errors, removal = swap_errors(moments, state)
        for s in range(len(start)):
            rest = start[:s] + start[s + 1 :]
            assert removal[s] == pytest.approx(
                refit_error(z_train, z_valid, rest, ridge), rel=1e-8
            )
            for j in (5, 9, 17, start[s]):
                if j in rest:
                    continue
                assert errors[s, j] == pytest.approx(
                    refit_error(z_train, z_valid, [*rest, j], ridge), rel=1e-8
                )
        result = refine_panel(moments, start, ridge=ridge, max_swaps=20, progress=False)
    trail = [result.error_before] + [swap["error"] for swap in result.swaps]
    assert np.all(np.diff(trail) < 0)
    assert result.error_after == pytest.approx(
        refit_error(z_train, z_valid, result.genes.tolist(), ridge), rel=1e-8
    )
    assert result.converged and sorted(result.genes.tolist()) == drivers.tolist()


def test_cli_refines_any_panel_and_tl_selects_greedy(small, tmp_path):
    import argparse

    import anndata

    from genesel.cli import select as select_cli
    from genesel.panel import read_panel_config
    from genesel.tl import select_panel as tl_select

    store, path, drivers = small
    parser = argparse.ArgumentParser()
    select_cli.add_parser(parser.add_subparsers())
    argv = [
        "select",
        "--data",
        str(store.path),
        "--method",
        "random",
        "-k",
        "4",
        "--out",
        str(tmp_path / "r"),
        "--refine",
        "--moments",
        str(path),
    ]
    args = parser.parse_args(argv)
    args.progress = False
    assert args.func(args) == 0
    record = read_panel_config(tmp_path / "r")["extra"]["refine"]
    assert record["error_after"] <= record["error_before"]
    adata = anndata.AnnData(store.read_rows(np.arange(store.n_obs), standardize=False))
    tl_select(adata, n_genes=3, method="greedy", params={"ridge": 0.05})
    assert (
        adata.var["genesel_selected"].sum() == 3
        and adata.uns["genesel"]["params"]["params"]["ridge"] == 0.05
    )


def test_gcv_criterion_equals_brute_force_on_pooled_rows(small):
    store, path, _ = small
    z = np.vstack([standardized(store, "train"), standardized(store, "validation")])
    ridge, n = 0.05, len(z)
    centred = z - z.mean(0)

    def gcv(panel):
        x = centred[:, panel]
        hat = x @ np.linalg.solve(x.T @ x + ridge * n * np.eye(len(panel)), x.T)
        imputed = np.setdiff1d(np.arange(z.shape[1]), panel)
        rss = (((np.eye(n) - hat) @ centred)[:, imputed] ** 2).mean()
        return rss / (1.0 - np.trace(hat) / n) ** 2

    panel, errors = [], []
    for _ in range(4):
        candidates = [j for j in range(store.n_vars) if j not in panel]
        scores = [gcv([*panel, j]) for j in candidates]
        panel.append(candidates[int(np.argmin(scores))])
        errors.append(min(scores))
    with open_moments(path, store) as moments:
        result = greedy_path(moments, 4, ridge=ridge, criterion="gcv", progress=False)
    assert result.genes.tolist() == panel
    np.testing.assert_allclose(result.errors, errors, rtol=1e-8)


@pytest.mark.parametrize("criterion", ["validation", "gcv"])
def test_adding_many_genes_at_once_equals_adding_them_one_by_one(small, criterion):
    """The block update that starts a path from included genes leaves the same state (and path)."""
    store, moments_path, _ = small
    genes = [7, 3, 12, 0, 20]
    with open_moments(moments_path, store) as moments:
        one = GreedyState(moments, ridge=0.3, criterion=criterion)
        for gene in genes:
            one.add(gene)
        one.full()
        many = GreedyState(moments, ridge=0.3, criterion=criterion)
        many.add_many(genes)
        np.testing.assert_allclose(many.R, one.R, atol=1e-10)
        np.testing.assert_allclose(many.Q, one.Q, atol=1e-10)
        assert many.panel == one.panel and many.error() == pytest.approx(one.error(), rel=1e-10)
        np.testing.assert_allclose(many.scores(), one.scores(), rtol=1e-9)
        path = greedy_path(moments, 9, ridge=0.3, start=genes, criterion=criterion, progress=False)
        assert path.genes[:5].tolist() == genes and np.isnan(path.errors[:5]).all()
