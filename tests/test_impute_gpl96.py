"""Fit -> apply round trip on 74 real GPL96 arrays with real gene ids and symbols.

The gene-level matrix is built here from the probe-level fixture by averaging each
gene's probes with the D-GEX maps (``genesel/data/dgex_map_*.txt``), as D-GEX did.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genesel.evaluate import evaluate_model
from genesel.impute import fit_imputer
from genesel.store import SPLITS, Store, StoreWriter

FIXTURE = Path(__file__).parent / "data" / "gpl96_74_arrays.h5ad"
N_PANEL = 25


def dgex_genes() -> pd.DataFrame:
    """The 10,463 D-GEX genes: symbol, landmark flag and probes, indexed by a unique gene id."""
    parts = []
    for name, landmark in (("dgex_map_lm.txt", True), ("dgex_map_tg.txt", False)):
        with resources.files("genesel.data").joinpath(name).open() as handle:
            table = pd.read_csv(
                handle, sep="\t", header=None, names=["symbol", "ensembl_id", "probes"], dtype=str
            )
        table["landmark"] = landmark
        parts.append(table)
    genes = pd.concat(parts, ignore_index=True)
    gene_id = genes["ensembl_id"].where(
        ~genes["ensembl_id"].duplicated(), genes["ensembl_id"] + "-target"
    )
    return genes.set_index(pd.Index(gene_id, name="gene_id"))


def average_probes(probes: ad.AnnData, genes: pd.DataFrame) -> np.ndarray:
    """Samples x genes: the mean of each gene's probes."""
    members = genes["probes"].str.split(",").explode()
    rows = probes.var_names.get_indexer(members.to_numpy())
    assert (rows >= 0).all(), "every mapped probe is in the fixture"
    cols = genes.index.get_indexer(members.index)
    weights = 1.0 / members.groupby(level=0, sort=False).transform("size").to_numpy()
    averaging = sp.csr_matrix((weights, (rows, cols)), shape=(probes.n_vars, len(genes)))
    return np.asarray(averaging.T @ np.asarray(probes.X, dtype=np.float64).T).T.astype(np.float32)


@pytest.fixture(scope="module")
def gpl96_store(tmp_path_factory):
    probes = ad.read_h5ad(FIXTURE)
    genes = dgex_genes()
    values = average_probes(probes, genes)
    splits = np.random.default_rng(7).permutation(np.repeat(np.array(SPLITS), [52, 8, 14]))
    path = tmp_path_factory.mktemp("gpl96") / "gpl96_genes.h5ad"
    with StoreWriter(
        path,
        var=genes[["symbol", "landmark"]],
        split_sizes={"train": 52, "validation": 8, "test": 14},
    ) as writer:
        writer.write_block(values, splits, probes.obs_names)
        writer.close(obs=probes.obs[["dataset"]])
    with Store.open(path) as store:
        yield store


def test_gpl96_fit_then_apply_to_other_arrays(gpl96_store, tmp_path):
    store = gpl96_store
    var = store.var
    panel = var.index[var["landmark"].to_numpy()][:N_PANEL].tolist()
    model = fit_imputer(store, panel, decoder="linear", ridge=1e-3, progress=False)
    model.save(tmp_path / "model")

    # the test arrays, as a user would bring them: symbols as var_names, shuffled, extra genes
    test_rows = store.split_indices("test")
    values = store.read_rows(test_rows, standardize=False)
    panel_symbols = set(model.panel_symbols)
    others = np.flatnonzero(
        ~var["landmark"].to_numpy() & ~var["symbol"].isin(panel_symbols).to_numpy()
    )[:300]
    keep = np.concatenate([model.panel_indices, others])
    names = np.concatenate(
        [var["symbol"].to_numpy()[keep].astype(str), ["AFFX-CONTROL-1", "UNKNOWN_GENE"]]
    )
    matrix = np.hstack([values[:, keep], np.full((test_rows.size, 2), 3.0, dtype=np.float32)])
    order = np.random.default_rng(0).permutation(names.size)
    measured = ad.AnnData(
        matrix[:, order],
        obs=store.obs.iloc[test_rows][["dataset"]].copy(),
        var=pd.DataFrame(index=names[order]),
    )

    from genesel.impute import load_model

    imputed = load_model(tmp_path / "model").impute(measured)
    direct = model.predict(values[:, model.panel_indices])
    assert imputed.var_names.tolist() == var.index.tolist()
    assert imputed.var["symbol"].tolist() == var["symbol"].tolist()
    assert imputed.obs["dataset"].tolist() == store.obs["dataset"].iloc[test_rows].tolist()
    np.testing.assert_allclose(imputed.X, direct, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(
        imputed.X[:, model.panel_indices], values[:, model.panel_indices]
    )

    # the imputation is informative on real arrays: better than the train mean, genes correlate
    metrics = evaluate_model(store, model, split="test", progress=False).metrics
    assert metrics["n_vars"] == 10_463 and metrics["n_genes"] == N_PANEL
    assert metrics["n_imputed"] == 10_463 - N_PANEL
    assert metrics["mse_imputed"] < 0.6
    assert metrics["pearson_r_median"] > 0.7
    error = imputed.X - values
    unmeasured = ~imputed.var["measured"].to_numpy()
    assert np.mean((error[:, unmeasured] / store.std[unmeasured]) ** 2) == pytest.approx(
        metrics["mse_imputed"], rel=1e-4
    )
