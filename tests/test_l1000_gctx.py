"""L1000 profiles in: a CMap-layout GCTX with Entrez gene ids as rows, matched to a model's genes."""

from __future__ import annotations

import json
import re

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest

import genesel.cli.main as cli
from genesel.errors import InputFileError
from genesel.evaluate import evaluate_model
from genesel.evaluation_data import open_evaluation_data
from genesel.impute import fit_imputer
from genesel.io.gctx import MATRIX_PATH, read_gctx, write_gctx
from genesel.io.gene_maps import l1000_landmarks
from genesel.store import SPLITS, Store, StoreWriter
from tests.conftest import planted_matrix

N_GENES = 40


@pytest.fixture(scope="module")
def landmark_model(tmp_path_factory):
    """A linear model on a store whose 40 genes are L1000 landmarks named by (made-up) Ensembl ids."""
    root = tmp_path_factory.mktemp("l1000")
    X, drivers = planted_matrix(500, N_GENES, 5, seed=4)
    landmarks = l1000_landmarks().iloc[:N_GENES]
    var = pd.DataFrame(
        {"symbol": landmarks["symbol"].to_numpy(), "landmark": True},
        index=pd.Index([f"ENSG{j:011d}" for j in range(N_GENES)], name="gene_id"),
    )
    splits = np.random.default_rng(0).choice(
        np.array(SPLITS), size=X.shape[0], p=[0.7, 0.15, 0.15]
    )
    with StoreWriter(
        root / "store.h5ad", var=var, split_sizes={s: int((splits == s).sum()) for s in SPLITS}
    ) as writer:
        writer.write_block(X, splits, [f"s{i}" for i in range(X.shape[0])])
        path = writer.close()
    with Store.open(path) as store:
        model = fit_imputer(store, drivers.tolist(), progress=False)
    model.save(root / "model")
    new, _ = planted_matrix(30, N_GENES, 5, seed=4)
    new = new + np.random.default_rng(1).normal(scale=0.1, size=new.shape).astype(np.float32)
    return root, model, landmarks.reset_index(drop=True), new


def _write_l1000_gctx(path, values, entrez, *, symbols=None):
    """A GCTX in CMap's layout (matrix stored samples x genes, rids = Entrez ids, cids = sample ids)."""
    write_gctx(path, values, entrez, [f"CPC006_A549_6H:BRD-{i}" for i in range(values.shape[0])])
    if symbols is not None:
        with h5py.File(path, "a") as handle:
            handle.create_dataset(
                "0/META/ROW/pr_gene_symbol", data=np.array([s.encode() for s in symbols])
            )
    return path


@pytest.fixture
def genesel(monkeypatch):
    monkeypatch.setattr(cli, "SUBCOMMANDS", ("impute", "evaluate"))
    return lambda *argv: cli.main(["-q", *map(str, argv)])


def test_apply_gctx_equals_csv_with_gene_ids(landmark_model, genesel, tmp_path):
    root, model, landmarks, new = landmark_model
    order = np.random.default_rng(2).permutation(N_GENES)
    extra = l1000_landmarks().iloc[N_GENES : N_GENES + 3]  # measured but not in the model: ignored
    values = np.hstack([new[:, order], np.zeros((new.shape[0], 3), np.float32)])
    gctx = _write_l1000_gctx(
        tmp_path / "level3.gctx", values, [*landmarks["entrez_id"][order], *extra["entrez_id"]]
    )
    with h5py.File(gctx, "r") as handle:  # CMap's layout: the matrix is stored samples x genes
        assert handle[MATRIX_PATH].shape == (new.shape[0], N_GENES + 3)
    csv = tmp_path / "measured.csv"
    pd.DataFrame(
        new, columns=model.gene_ids, index=[f"CPC006_A549_6H:BRD-{i}" for i in range(new.shape[0])]
    ).to_csv(csv)

    assert (
        genesel(
            "impute",
            "apply",
            "--model",
            root / "model",
            "--input",
            gctx,
            "--out",
            tmp_path / "from_gctx.h5ad",
        )
        == 0
    )
    assert (
        genesel(
            "impute",
            "apply",
            "--model",
            root / "model",
            "--input",
            csv,
            "--out",
            tmp_path / "from_csv.h5ad",
        )
        == 0
    )
    from_gctx, from_csv = (
        ad.read_h5ad(tmp_path / "from_gctx.h5ad"),
        ad.read_h5ad(tmp_path / "from_csv.h5ad"),
    )
    np.testing.assert_array_equal(from_gctx.X, from_csv.X)
    assert list(from_gctx.obs_names) == list(from_csv.obs_names) and list(
        from_gctx.var_names
    ) == list(model.gene_ids)
    expected = model.predict(new[:, model.panel_indices])
    np.testing.assert_allclose(from_gctx.X, expected, rtol=1e-6)


def test_gctx_symbols_from_cmap_row_field(landmark_model, tmp_path):
    _, model, landmarks, new = landmark_model
    made_up = [
        str(90_000_000 + j) for j in range(N_GENES)
    ]  # Entrez ids the landmark table does not know
    gctx = _write_l1000_gctx(
        tmp_path / "level4.gctx", new, made_up, symbols=landmarks["symbol"].tolist()
    )
    with read_gctx(gctx) as source:
        assert (
            list(source.var["entrez_id"]) == made_up
            and list(source.var["symbol"]) == landmarks["symbol"].tolist()
        )
        np.testing.assert_allclose(
            model.impute(source).X, model.predict(new[:, model.panel_indices]), rtol=1e-6
        )


def test_gctx_missing_panel_gene_is_named(landmark_model, genesel, tmp_path, caplog):
    root, model, landmarks, new = landmark_model
    lost = int(model.panel_indices[1])
    keep = np.setdiff1d(np.arange(N_GENES), [lost])
    gctx = _write_l1000_gctx(
        tmp_path / "partial.gctx", new[:, keep], landmarks["entrez_id"][keep].tolist()
    )
    assert (
        genesel(
            "impute",
            "apply",
            "--model",
            root / "model",
            "--input",
            gctx,
            "--out",
            tmp_path / "x.h5ad",
        )
        != 0
    )
    named = f"{landmarks['symbol'][lost]} ({model.gene_ids[lost]})"
    assert re.search(
        rf"partial\.gctx: 1 of 5 panel genes are missing: {re.escape(named)}", caplog.text
    )
    with open_evaluation_data(gctx) as data, pytest.raises(InputFileError, match=re.escape(named)):
        evaluate_model(data, model, progress=False)


def test_evaluate_gctx(landmark_model, genesel, tmp_path):
    root, model, landmarks, new = landmark_model
    gctx = _write_l1000_gctx(tmp_path / "all.gctx", new, landmarks["entrez_id"].tolist())
    out = tmp_path / "eval" / "metrics.json"
    assert genesel("evaluate", "--model", root / "model", "--data", gctx, "--out", out) == 0
    metrics = json.loads(out.read_text())
    truth = (new.astype(np.float64) - model.mean) / model.std
    predicted = model.predict_standardized(truth[:, model.panel_indices]).astype(np.float64)
    imputed = ~model.measured_mask
    assert metrics["n_samples"] == new.shape[0]
    assert metrics["mse_imputed"] == pytest.approx(
        ((predicted - truth)[:, imputed] ** 2).mean(), rel=1e-6
    )
    assert (
        metrics["transfer"]["matched_by"] == "symbol"
        and metrics["transfer"]["n_matched"] == N_GENES
    )


def test_evaluate_gctx_in_its_own_units(landmark_model, tmp_path):
    _, model, landmarks, new = landmark_model
    gctx = _write_l1000_gctx(tmp_path / "own.gctx", new, landmarks["entrez_id"].tolist())
    with open_evaluation_data(gctx, statistics=True, block_rows=7) as data:
        metrics = evaluate_model(data, model, standardize="data", progress=False).metrics
    values = new.astype(np.float64)
    truth = (values - values.mean(axis=0)) / values.std(
        axis=0
    )  # the file's own statistics over all samples
    predicted = model.predict_standardized(truth[:, model.panel_indices]).astype(np.float64)
    imputed = ~model.measured_mask
    assert metrics["mse_imputed"] == pytest.approx(
        ((predicted - truth)[:, imputed] ** 2).mean(), rel=1e-6
    )
    assert metrics["transfer"]["standardize"] == "data"


def test_entrez_rows_outside_the_landmarks_keep_their_id_as_symbol(tmp_path):
    entrez = [*l1000_landmarks()["entrez_id"][:2], "90000001"]
    with read_gctx(
        _write_l1000_gctx(tmp_path / "mixed.gctx", np.zeros((4, 3), np.float32), entrez)
    ) as source:
        assert list(source.var["symbol"]) == [*l1000_landmarks()["symbol"][:2], "90000001"]
        assert list(source.var["entrez_id"]) == entrez
