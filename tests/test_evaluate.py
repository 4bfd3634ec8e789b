"""Evaluation metrics equal a direct in-memory computation."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from genesel.errors import InputFileError
from genesel.evaluate import evaluate_model
from genesel.impute import fit_imputer
from genesel.run import RunConfig
from genesel.store import Store
from tests.conftest import planted_matrix, write_store


@pytest.mark.parametrize("decoder", ["linear", "knn"])
def test_metrics_equal_direct_numpy(planted_store, decoder):
    store, drivers = planted_store
    model = fit_imputer(
        store,
        drivers.tolist(),
        decoder=decoder,
        progress=False,
        **({"max_reference": 150} if decoder == "knn" else {}),
    )
    evaluation = evaluate_model(store, model, split="test", block_rows=13, progress=False)

    raw = store.read_rows(store.split_indices("test"), standardize=False).astype(np.float64)
    mean, std = store.var["mean"].to_numpy(), store.var["std"].to_numpy()
    truth = (raw - mean) / std
    if decoder == "linear":
        weight = model.module[0].weight.detach().double().numpy()
        bias = model.module[0].bias.detach().double().numpy()
        predicted = truth[:, drivers] @ weight.T + bias
    else:  # brute-force nearest neighbours
        reference = model.module.reference.double().numpy()
        distance = ((truth[:, None, drivers] - reference[None, :, drivers]) ** 2).sum(-1)
        nearest = np.argsort(distance, axis=1, kind="stable")[:, :10]
        predicted = reference[nearest].mean(axis=1)
    predicted[:, drivers] = truth[:, drivers]
    error = predicted - truth
    mse, mae = (error**2).mean(0), np.abs(error).mean(0)
    r = np.array([np.corrcoef(truth[:, j], predicted[:, j])[0, 1] for j in range(store.n_vars)])
    other = np.setdiff1d(np.arange(store.n_vars), drivers)

    per_gene = evaluation.per_gene
    np.testing.assert_allclose(per_gene["mse"], mse, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(per_gene["mae"], mae, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(
        per_gene["mse_original"], ((error * std) ** 2).mean(0), rtol=1e-5, atol=1e-9
    )
    np.testing.assert_allclose(
        per_gene["mae_original"], np.abs(error * std).mean(0), rtol=1e-5, atol=1e-9
    )
    np.testing.assert_allclose(per_gene["pearson_r"].to_numpy()[other], r[other], rtol=1e-5)
    m = evaluation.metrics
    assert (
        m["n_samples"] == raw.shape[0]
        and m["n_imputed"] == other.size
        and m["n_genes"] == drivers.size
        and m["n_vars"] == raw.shape[1]
    )
    assert m["mse"] == pytest.approx(mse.mean(), rel=1e-5)
    assert m["mse_imputed"] == pytest.approx(mse[other].mean(), rel=1e-5)
    assert m["mae_imputed"] == pytest.approx(mae[other].mean(), rel=1e-5)
    assert m["mse_imputed_original"] == pytest.approx(
        ((error[:, other] * std[other]) ** 2).mean(), rel=1e-5
    )
    assert m["mae_original"] == pytest.approx(np.abs(error * std).mean(), rel=1e-5)
    assert m["pearson_r_median"] == pytest.approx(np.median(r[other]), rel=1e-5)
    assert m["noise_floor"] == 0.01  # the fixture's recorded value
    assert (
        per_gene["measured"].sum() == drivers.size
        and (per_gene.loc[per_gene["measured"], "mse"] == 0).all()
    )


def test_write_puts_per_gene_table_beside_the_metrics(planted_store, tmp_path):
    store, drivers = planted_store
    evaluation = evaluate_model(
        store,
        fit_imputer(store, drivers.tolist(), progress=False),
        split="validation",
        progress=False,
    )
    evaluation.write(tmp_path / "out")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (
        metrics["split"] == "validation"
        and metrics["mse_imputed"] == evaluation.metrics["mse_imputed"]
    )
    table = pd.read_csv(tmp_path / "out" / "per_gene.tsv", sep="\t", index_col=0)
    assert table.index.tolist() == store.var.index.tolist()
    assert list(table.columns) == [
        "symbol",
        "measured",
        "mse",
        "mae",
        "mse_original",
        "mae_original",
        "pearson_r",
    ]
    evaluation.write(tmp_path / "linear_test.json")
    assert (tmp_path / "linear_test.per_gene.tsv").exists()


def test_evaluation_needs_the_model_panel_genes(planted_store, tmp_path):
    store, drivers = planted_store
    model = fit_imputer(store, drivers.tolist(), progress=False)
    X, _ = planted_matrix(50, 20, 3)
    lacking = [f"GENE{j} (ENSG{j:011d})" for j in drivers if j >= 20]
    assert lacking  # the fixture's drivers reach past the other store's 20 genes
    with Store.open(write_store(tmp_path / "other.h5ad", X)) as other:
        with pytest.raises(
            InputFileError,
            match=rf"{len(lacking)} of 5 panel genes are missing: {re.escape(lacking[0])}.*every panel gene",
        ):
            evaluate_model(other, model, progress=False)


def test_evaluation_matches_reordered_store_genes(planted_store, tmp_path):
    store, drivers = planted_store
    model = fit_imputer(store, drivers.tolist(), run=RunConfig(device="cpu", progress=False))
    expected = evaluate_model(store, model, progress=False).per_gene
    raw = store.read_rows(np.arange(store.n_obs), standardize=False)
    order = np.random.default_rng(0).permutation(store.n_vars)
    from genesel.store import StoreWriter

    var = store.var.iloc[order][["symbol", "landmark"]]
    splits = store.obs["split"].to_numpy()
    sizes = {name: int((splits == name).sum()) for name in ("train", "validation", "test")}
    with StoreWriter(tmp_path / "shuffled.h5ad", var=var, split_sizes=sizes) as writer:
        writer.write_block(raw[:, order], splits, store.obs.index)
        writer.close()
    with Store.open(tmp_path / "shuffled.h5ad") as shuffled:
        got = evaluate_model(shuffled, model, progress=False).per_gene
    pd.testing.assert_frame_equal(got, expected, rtol=1e-5)
