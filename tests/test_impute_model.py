"""ImputationModel: save/load, gene matching and applying to new samples."""

from __future__ import annotations

import json
import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from genesel.errors import ConfigError, InputFileError
from genesel.impute import ImputationModel, fit_imputer, load_model, match_columns, resolve_panel
from genesel.run import RunConfig
from genesel.training import TrainerConfig

PANEL = [0, 7, 13, 21, 30]
#: Small settings of the decoders that have them (a small network, a small reference).
QUICK = {"mlp": {"hidden": (16,)}, "knn": {"max_reference": 100}}


def fit(store, decoder: str, **params) -> ImputationModel:
    return fit_imputer(
        store,
        store.var.index[PANEL].tolist(),
        decoder=decoder,
        trainer=TrainerConfig(max_epochs=2),
        run=RunConfig(device="cpu", progress=False),
        **{**QUICK.get(decoder, {}), **params},
    )


def measured_adata(store, rows: np.ndarray) -> ad.AnnData:
    """The store's rows as new data: symbols as var_names, shuffled, with extra genes."""
    values = store.read_rows(rows, standardize=False)
    symbols = store.var["symbol"].to_numpy().astype(str)
    extra = np.random.default_rng(0).normal(size=(rows.size, 3)).astype(np.float32)
    names = np.concatenate([symbols, ["EXTRA1", "EXTRA2", "EXTRA3"]])
    order = np.random.default_rng(1).permutation(names.size)
    adata = ad.AnnData(np.hstack([values, extra])[:, order], var=pd.DataFrame(index=names[order]))
    adata.obs_names = [f"new{i}" for i in range(rows.size)]
    return adata


@pytest.mark.parametrize("decoder", ["linear", "mlp", "knn"])
def test_save_load_round_trip(planted_store, tmp_path, decoder):
    store, _ = planted_store
    model = fit(store, decoder)
    model.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["decoder"] == decoder and meta["panel_gene_ids"] == store.var.index[PANEL].tolist()
    assert meta["symbols"] == store.var["symbol"].tolist() and len(meta["mean"]) == store.n_vars
    torch.load(tmp_path / "model" / "model.pt", weights_only=True)  # plain state dict
    loaded = load_model(tmp_path / "model")
    assert repr(loaded) == repr(model) and loaded.params == model.params
    z = np.random.default_rng(3).normal(size=(17, len(PANEL)))
    np.testing.assert_array_equal(loaded.predict_standardized(z), model.predict_standardized(z))
    np.testing.assert_array_equal(loaded.mean, model.mean)
    if decoder == "mlp":
        assert (tmp_path / "model" / "history.tsv").exists() and len(loaded.history) == 2
    if decoder == "knn":
        assert loaded.params == {"n_neighbors": 10, "n_reference": 100}


def test_load_rejects_incomplete_directories(tmp_path, planted_store):
    with pytest.raises(InputFileError, match="genesel impute fit"):
        load_model(tmp_path)
    model = fit(planted_store[0], "linear")
    model.save(tmp_path / "m")
    (tmp_path / "m" / "model.pt").write_bytes(b"junk")
    with pytest.raises(InputFileError, match="model.pt: does not match .*model.json"):
        load_model(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    del meta[
        "weights_sha256"
    ]  # a model saved before digests: loads are attempted, junk still fails
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InputFileError, match="cannot load the weights"):
        load_model(tmp_path / "m")


def test_load_rejects_swapped_weights_and_edited_descriptions(tmp_path, planted_store):
    store = planted_store[0]
    fit(store, "linear").save(tmp_path / "a")
    other = fit(store, "linear", ridge=10.0)
    other.save(tmp_path / "b")
    (tmp_path / "a" / "model.pt").write_bytes(
        (tmp_path / "b" / "model.pt").read_bytes()
    )  # same shape, other fit
    with pytest.raises(
        InputFileError, match=r"a/model.pt: does not match .*a/model.json \(SHA-256"
    ):
        load_model(tmp_path / "a")
    meta = json.loads((tmp_path / "b" / "model.json").read_text())
    del meta["std"], meta["panel_gene_ids"]
    (tmp_path / "b" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InputFileError, match=r"missing keys \['panel_gene_ids', 'std'\]"):
        load_model(tmp_path / "b")


def test_impute_matches_symbols_in_any_order_and_ignores_extra_genes(planted_store):
    store, _ = planted_store
    model = fit(store, "linear")
    rows = store.split_indices("test")
    truth = store.read_rows(rows, standardize=False)
    adata = measured_adata(store, rows)
    adata.obs["batch"] = "b1"
    result = model.impute(adata, batch_rows=7)
    assert result.shape == (rows.size, store.n_vars)
    assert result.var_names.tolist() == store.var.index.tolist()
    assert result.var["measured"].sum() == len(PANEL) and result.var["measured"].iloc[PANEL].all()
    assert result.var["symbol"].tolist() == store.var["symbol"].tolist()
    assert (
        result.obs_names.tolist() == adata.obs_names.tolist()
        and (result.obs["batch"] == "b1").all()
    )
    np.testing.assert_array_equal(result.X[:, PANEL], truth[:, PANEL])  # measured genes unchanged
    np.testing.assert_allclose(result.X, model.predict(truth[:, PANEL]), rtol=1e-6)


def test_impute_accepts_gene_ids_dataframes_layers_and_sparse(planted_store):
    store, _ = planted_store
    model = fit(store, "linear")
    rows = store.split_indices("validation")
    truth = store.read_rows(rows, standardize=False)
    expected = model.predict(truth[:, PANEL])
    frame = pd.DataFrame(truth, columns=store.var.index).iloc[:, ::-1]
    np.testing.assert_allclose(model.impute(frame).X, expected, rtol=1e-6)
    adata = ad.AnnData(
        np.zeros_like(truth),
        var=pd.DataFrame(
            {"gene_symbol": store.var["symbol"].to_numpy()},
            index=[f"p{j}" for j in range(store.n_vars)],
        ),
    )
    adata.layers["logged"] = sp.csr_matrix(truth)
    np.testing.assert_allclose(model.impute(adata, layer="logged").X, expected, rtol=1e-6)
    np.testing.assert_allclose(model.impute(truth[:, PANEL]).X, expected, rtol=1e-6)


def test_impute_names_missing_panel_genes(planted_store):
    store, _ = planted_store
    model = fit(store, "linear")
    adata = measured_adata(store, store.split_indices("test"))
    lacking = adata[:, ~adata.var_names.isin(["GENE7", "GENE21"])].copy()
    with pytest.raises(
        InputFileError, match=r"2 of 5 panel genes are missing: GENE7 \(ENSG00000000007\), GENE21"
    ):
        model.impute(lacking)
    with pytest.raises(InputFileError, match="5 panel genes as columns, in panel order"):
        model.impute(np.zeros((3, 4)))


def test_impute_rejects_missing_values_and_warns_about_units(planted_store, caplog):
    store, _ = planted_store
    model = fit(store, "linear")
    rows = store.split_indices("test")
    adata = measured_adata(store, rows)
    adata.X[0, adata.var_names.get_loc("GENE13")] = np.nan
    with pytest.raises(InputFileError, match="GENE13"):
        model.impute(adata)
    counts = measured_adata(store, rows)
    counts.X = np.exp2(counts.X)  # not log-transformed: far from the training units
    with caplog.at_level(logging.WARNING, logger="genesel.impute.model"):
        model.impute(counts)
    assert "training data's units" in caplog.text


def test_impute_streams_backed_input_into_an_h5ad(planted_store, tmp_path):
    store, _ = planted_store
    model = fit(store, "knn", max_reference=200)
    rows = store.split_indices("test")
    measured_adata(store, rows).write_h5ad(tmp_path / "measured.h5ad")
    backed = ad.read_h5ad(tmp_path / "measured.h5ad", backed="r")
    in_memory = model.impute(ad.read_h5ad(tmp_path / "measured.h5ad"))
    result = model.impute(backed, batch_rows=16, out=tmp_path / "full.h5ad")
    try:
        assert result.isbacked and result.shape == (rows.size, store.n_vars)
        np.testing.assert_allclose(result.X[:], in_memory.X, rtol=1e-6)
        assert result.uns["genesel_imputation"]["decoder"] == "knn"
    finally:
        result.file.close()
        backed.file.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "full.h5ad",
        "measured.h5ad",
        "planted.h5ad",
    ]  # no temporaries


def test_resolve_panel_accepts_ids_symbols_tables_and_files(planted_store, tmp_path):
    store, _ = planted_store
    ids = store.var.index[PANEL].tolist()
    np.testing.assert_array_equal(resolve_panel(ids, store.var), PANEL)
    np.testing.assert_array_equal(resolve_panel([f"GENE{j}" for j in PANEL], store.var), PANEL)
    np.testing.assert_array_equal(resolve_panel(PANEL, store.var), PANEL)
    table = pd.DataFrame({"rank": range(1, 6), "gene_id": ids, "symbol": "x"})
    table.to_csv(tmp_path / "panel.tsv", sep="\t", index=False)
    np.testing.assert_array_equal(resolve_panel(tmp_path, store.var), PANEL)
    np.testing.assert_array_equal(resolve_panel(table, store.var), PANEL)
    with pytest.raises(ConfigError, match="NOPE"):
        resolve_panel(ids + ["NOPE"], store.var)
    with pytest.raises(ConfigError, match="twice"):
        resolve_panel(ids + ids[:1], store.var)
    table.loc[0, "gene_id"] = "ABSENT"
    table.to_csv(tmp_path / "panel.tsv", sep="\t", index=False)
    with pytest.raises(InputFileError, match="panel.tsv.*ABSENT"):
        resolve_panel(tmp_path / "panel.tsv", store.var)


def test_match_columns_flags_ambiguous_symbols():
    with pytest.raises(InputFileError, match="match several columns"):
        match_columns(
            ["E1"], ["TP53"], ["a", "b", "X"], pd.DataFrame({"symbol": ["TP53", "TP53", "X"]})
        )
    np.testing.assert_array_equal(
        match_columns(["E1", "E2"], ["tp53", "EGFR"], ["egfr", "TP53"]), [1, 0]
    )


def test_match_columns_rejects_repeated_and_pandas_renamed_columns():
    with pytest.raises(
        InputFileError, match=r"in.csv: 1 column name\(s\) occur more than once: TP53"
    ):
        match_columns(["E1"], ["TP53"], ["TP53", "X", "TP53"], source="in.csv")
    with pytest.raises(InputFileError, match=r"appear to be repeated .*TP53 \(also TP53.1\)"):
        match_columns(["E1"], ["TP53"], ["TP53", "X", "TP53.1"])
    np.testing.assert_array_equal(
        match_columns(["E1"], ["TP53"], ["X.1", "TP53", "X"]), [1]
    )  # unrelated renamed columns are fine
