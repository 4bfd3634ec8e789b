"""``genesel impute fit|apply`` and ``genesel evaluate`` end to end."""

from __future__ import annotations

import json
import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import genesel.cli.main as cli
from genesel.impute import load_model
from genesel.store import Store


@pytest.fixture
def genesel(monkeypatch):
    """Run the ``genesel`` command with only the subcommands these tests need registered."""
    monkeypatch.setattr(cli, "SUBCOMMANDS", ("impute", "evaluate"))
    return lambda *argv: cli.main(["-q", *map(str, argv)])


def test_fit_evaluate_apply(genesel, planted_store, panel_file, tmp_path, caplog):
    store, drivers = planted_store
    assert (
        genesel(
            "impute",
            "fit",
            "--data",
            store.path,
            "--panel",
            panel_file,
            "--out",
            tmp_path / "lin",
            "--block-rows",
            50,
        )
        == 0
    )
    assert (
        genesel(
            "evaluate",
            "--data",
            store.path,
            "--model",
            tmp_path / "lin",
            "--out",
            tmp_path / "eval" / "metrics.json",
        )
        == 0
    )
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert (
        metrics["decoder"] == "linear"
        and metrics["split"] == "test"
        and (tmp_path / "eval" / "per_gene.tsv").exists()
    )

    rows = store.split_indices("test")
    values = store.read_rows(rows, standardize=False)
    expected = load_model(tmp_path / "lin").predict(values[:, drivers])
    # genes x samples CSV with symbols (orientation detected from the panel genes)
    table = pd.DataFrame(values.T, index=store.var["symbol"], columns=[f"s{i}" for i in rows])
    table.to_csv(tmp_path / "measured.csv")
    with caplog.at_level(logging.INFO, logger="genesel"):
        code = cli.main(
            [
                "impute",
                "apply",
                "--model",
                str(tmp_path / "lin"),
                "--input",
                str(tmp_path / "measured.csv"),
                "--out",
                str(tmp_path / "full.h5ad"),
            ]
        )
    assert code == 0 and f"written to {tmp_path / 'full.h5ad'}" in caplog.text
    full = ad.read_h5ad(tmp_path / "full.h5ad")
    assert (
        full.obs_names.tolist() == table.columns.tolist()
        and full.var["measured"].sum() == drivers.size
    )
    np.testing.assert_allclose(full.X, expected, rtol=1e-6)
    # backed .h5ad input with gene ids
    ad.AnnData(values, var=pd.DataFrame(index=store.var.index)).write_h5ad(
        tmp_path / "measured.h5ad"
    )
    assert (
        genesel(
            "impute",
            "apply",
            "--model",
            tmp_path / "lin",
            "--input",
            tmp_path / "measured.h5ad",
            "--out",
            tmp_path / "full2.h5ad",
            "--batch-rows",
            8,
        )
        == 0
    )
    np.testing.assert_allclose(ad.read_h5ad(tmp_path / "full2.h5ad").X, expected, rtol=1e-6)


def test_apply_reports_missing_genes(genesel, planted_store, panel_file, tmp_path, caplog):
    store, drivers = planted_store
    assert (
        genesel(
            "impute",
            "fit",
            "--data",
            store.path,
            "--panel",
            panel_file,
            "--out",
            tmp_path / "m",
            "--decoder",
            "knn",
        )
        == 0
    )
    values = store.read_rows(store.split_indices("test"), standardize=False)
    keep = np.setdiff1d(np.arange(store.n_vars), drivers[:2])
    pd.DataFrame(values[:, keep], columns=store.var["symbol"].iloc[keep]).to_csv(
        tmp_path / "lacking.csv"
    )
    with caplog.at_level(logging.ERROR, logger="genesel"):
        code = genesel(
            "impute",
            "apply",
            "--model",
            tmp_path / "m",
            "--input",
            tmp_path / "lacking.csv",
            "--out",
            tmp_path / "x.h5ad",
        )
    assert code == 1
    missing = store.var["symbol"].iloc[drivers[:2]].tolist()
    assert "lacking.csv: 2 of 5 panel genes are missing" in caplog.text and all(
        name in caplog.text for name in missing
    )
    assert not (tmp_path / "x.h5ad").exists()


@pytest.mark.parametrize("layout", ["csv-columns", "tsv-rows", "h5ad"])
def test_apply_rejects_a_duplicated_gene_column(
    genesel, planted_store, panel_file, tmp_path, caplog, layout
):
    """A second copy of a panel gene (pandas would rename it GENE.1 and use the first) is refused by name."""
    store, drivers = planted_store
    assert (
        genesel(
            "impute",
            "fit",
            "--data",
            store.path,
            "--panel",
            panel_file,
            "--out",
            tmp_path / "m",
            "--decoder",
            "knn",
        )
        == 0
    )
    values = store.read_rows(store.split_indices("test")[:6], standardize=False)
    symbols = store.var["symbol"].tolist()
    twice = symbols[drivers[0]]
    table = pd.DataFrame(
        np.hstack([values, values[:, drivers[:1]] + 5]),
        columns=symbols + [twice],
        index=[f"s{i}" for i in range(6)],
    )
    if layout == "csv-columns":
        source = tmp_path / "twice.csv"
        table.to_csv(source)
    elif layout == "tsv-rows":
        source = tmp_path / "twice.tsv"
        table.T.to_csv(source, sep="\t")
    else:
        source = tmp_path / "twice.h5ad"
        with pytest.warns(UserWarning):  # anndata warns about non-unique var_names, and keeps them
            ad.AnnData(
                table.to_numpy(np.float32),
                obs=pd.DataFrame(index=table.index),
                var=pd.DataFrame(index=table.columns),
            ).write_h5ad(source)
    with caplog.at_level(logging.ERROR, logger="genesel"):
        code = genesel(
            "impute",
            "apply",
            "--model",
            tmp_path / "m",
            "--input",
            source,
            "--out",
            tmp_path / "x.h5ad",
        )
    assert code == 1
    assert f"{source}: 1 gene id(s) occur more than once, e.g. ['{twice}']" in caplog.text
    assert not (tmp_path / "x.h5ad").exists()


def test_mlp_fit_resumes_and_cleans_its_checkpoint(genesel, planted_store, panel_file, tmp_path):
    store, _ = planted_store
    args = [
        "impute",
        "fit",
        "--data",
        store.path,
        "--panel",
        panel_file,
        "--decoder",
        "mlp",
        "--param",
        "hidden=[16, 8]",
        "--param",
        "activation=leaky_relu",
        "--device",
        "cpu",
        "--batch-size",
        64,
    ]
    assert genesel(*args, "--out", tmp_path / "a", "--epochs", 1, "--keep-checkpoint") == 0
    assert (tmp_path / "a" / "checkpoint.pt").exists()
    assert genesel(*args, "--out", tmp_path / "a", "--epochs", 3, "--resume") == 0
    assert not (tmp_path / "a" / "checkpoint.pt").exists()
    resumed = load_model(tmp_path / "a")
    assert resumed.training["resumed_from_epoch"] == 1 and len(resumed.history) == 3
    assert resumed.params == {"hidden": [16, 8], "activation": "leaky_relu", "dropout": 0.1}
    assert resumed.training["trainer"]["lr_decay"] == 0.95
    assert genesel(*args, "--out", tmp_path / "b", "--epochs", 3) == 0
    with Store.open(store.path) as reopened:
        z = reopened.read_rows(reopened.split_indices("test"))[:, resumed.panel_indices]
    np.testing.assert_array_equal(
        resumed.predict_standardized(z), load_model(tmp_path / "b").predict_standardized(z)
    )


def test_fit_several_panels_in_one_process(genesel, planted_store, panel_file, tmp_path):
    """Several --panel values: one model (and metrics file) per panel, as separate runs give."""
    store, drivers = planted_store
    other = tmp_path / "other.tsv"
    pd.read_csv(panel_file, sep="\t").iloc[:3].to_csv(other, sep="\t", index=False)
    outs, metrics = [tmp_path / "a", tmp_path / "b"], [tmp_path / "a.json", tmp_path / "b.json"]
    common = [
        "impute",
        "fit",
        "--data",
        store.path,
        "--decoder",
        "mlp",
        "--param",
        "hidden=[8]",
        "--epochs",
        2,
    ]
    assert (
        genesel(
            *common,
            "--panel",
            panel_file,
            other,
            "--out",
            *outs,
            "--metrics",
            *metrics,
            "--seed",
            3,
            4,
        )
        == 0
    )
    assert (
        genesel(
            *common,
            "--panel",
            other,
            "--out",
            tmp_path / "alone",
            "--metrics",
            tmp_path / "alone.json",
            "--seed",
            4,
        )
        == 0
    )
    assert load_model(tmp_path / "a").n_genes == 5 and load_model(tmp_path / "b").n_genes == 3
    assert (
        json.loads((tmp_path / "b.json").read_text())["mse"]
        == json.loads((tmp_path / "alone.json").read_text())["mse"]
    )
    assert (
        genesel(*common, "--panel", panel_file, other, "--out", tmp_path / "c") == 1
    )  # one --out for two panels
