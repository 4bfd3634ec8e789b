"""Shared fixtures: small stores with planted structure, written through the real writer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import torch

from genesel.store import SPLITS, Store, StoreWriter

torch.set_num_threads(1)


def planted_matrix(
    n_obs: int, n_vars: int, n_drivers: int, *, seed: int = 0, noise: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Samples x genes where every gene is a (partly nonlinear) function of a few driver genes.

    Returns the matrix and the indices of the drivers, which are the genes a good
    selector with ``n_genes = n_drivers`` should find.
    """
    rng = np.random.default_rng(seed)
    drivers = np.sort(rng.choice(n_vars, size=n_drivers, replace=False))
    latent = rng.normal(size=(n_obs, n_drivers))
    loadings = rng.normal(size=(n_drivers, n_vars)) / np.sqrt(n_drivers)
    X = latent @ loadings + 0.5 * np.tanh(latent @ rng.normal(size=(n_drivers, n_vars)))
    X += noise * rng.normal(size=X.shape)
    X[:, drivers] = latent
    return (X * 1.5 + 7.0).astype(np.float32), drivers


def write_store(
    path: Path,
    X: np.ndarray,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    landmark_fraction: float = 0.1,
    uns: dict | None = None,
) -> Path:
    """Write ``X`` as a genesel store with a seeded split and simple gene annotation."""
    n_obs, n_vars = X.shape
    rng = np.random.default_rng(seed)
    splits = rng.choice(np.array(SPLITS), size=n_obs, p=list(fractions))
    for name in SPLITS:  # never leave a split empty in fixtures
        if not (splits == name).any():
            splits[SPLITS.index(name)] = name
    var = pd.DataFrame(
        {
            "symbol": [f"GENE{j}" for j in range(n_vars)],
            "landmark": np.arange(n_vars) < int(landmark_fraction * n_vars),
        },
        index=pd.Index([f"ENSG{j:011d}" for j in range(n_vars)], name="gene_id"),
    )
    sizes = {name: int((splits == name).sum()) for name in SPLITS}
    with StoreWriter(path, var=var, split_sizes=sizes) as writer:
        for start in range(0, n_obs, 97):
            stop = min(start + 97, n_obs)
            writer.write_block(
                X[start:stop], splits[start:stop], [f"sample{i}" for i in range(start, stop)]
            )
        writer.close(uns=uns or {})
    return path


@pytest.fixture
def planted_store(tmp_path: Path):
    """A 600 x 40 store whose genes are driven by 5 planted genes; yields (Store, drivers)."""
    X, drivers = planted_matrix(600, 40, 5, seed=3)
    path = write_store(tmp_path / "planted.h5ad", X, uns={"noise_floor": 0.01})
    with Store.open(path) as store:
        yield store, drivers


@pytest.fixture
def panel_file(planted_store, tmp_path: Path) -> Path:
    """``panel.tsv`` of the planted store's 5 driver genes."""
    store, drivers = planted_store
    table = pd.DataFrame(
        {
            "rank": np.arange(1, 6),
            "gene_id": store.var.index[drivers],
            "symbol": store.var["symbol"].iloc[drivers],
        }
    )
    table.to_csv(tmp_path / "panel.tsv", sep="\t", index=False)
    return tmp_path / "panel.tsv"


def load_benchmark(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` (not a package) as a module."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module
