"""Preprocessing into a store: probe averaging, log2, duplicates, split, QN, train statistics."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from genesel.cli import preprocess as preprocess_cli
from genesel.errors import ConfigError, InputFileError
from genesel.io.gene_maps import dgex_gene_map
from genesel.io.open import open_source
from genesel.io.source import DenseRows, MatrixSource
from genesel.preprocess import preprocess
from genesel.split import assign_splits
from genesel.store import Store
from genesel.transforms import quantile_normalize_rows

FIXTURE = Path(__file__).parent / "data" / "gpl96_74_arrays.h5ad"
GENES = dgex_gene_map()


def log_scale_data(n_obs: int = 60, n_genes: int = 30, seed: int = 0) -> ad.AnnData:
    """Log2-like expression of D-GEX genes, with a simulator-like ``uns``."""
    rng = np.random.default_rng(seed)
    values = (
        rng.normal(8, 1.5, size=(n_obs, 1)) * 0.1
        + rng.normal(7, 2, size=(1, n_genes))
        + rng.normal(0, 1, size=(n_obs, n_genes))
    )
    var = pd.DataFrame(
        {
            "symbol": GENES["symbol"].iloc[:n_genes].to_numpy(),
            "noise_var": np.arange(n_genes, dtype=float),
        },
        index=GENES.index[:n_genes],
    )
    obs = pd.DataFrame(
        {"cluster": pd.Categorical(rng.integers(0, 3, n_obs).astype(str))},
        index=[f"sample_{i:03d}" for i in range(n_obs)],
    )
    return ad.AnnData(
        values.astype(np.float32),
        obs=obs,
        var=var,
        uns={"genesel": {"noise_floor": 0.3, "simulation": {"seed": 1}}},
    )


def read_store(path: Path) -> ad.AnnData:
    return ad.read_h5ad(path)


def expected_order(labels: np.ndarray) -> np.ndarray:
    """Input row indices in store order: train, validation, test, input order within each."""
    return np.concatenate(
        [np.flatnonzero(labels == name) for name in ("train", "validation", "test")]
    )


def test_store_layout_statistics_on_train_only(tmp_path):
    adata = log_scale_data()
    path = preprocess(adata, tmp_path / "store.h5ad", seed=5, block_rows=7, progress=False)
    store = read_store(path)
    labels = assign_splits(adata.n_obs, seed=5)
    order = expected_order(labels)
    assert list(store.obs_names) == list(adata.obs_names[order])
    assert store.obs["split"].tolist() == list(labels[order])
    assert list(store.obs["cluster"]) == list(adata.obs["cluster"].iloc[order])
    np.testing.assert_array_equal(store.X, adata.X[order])
    train = adata.X[labels == "train"].astype(np.float64)
    np.testing.assert_allclose(
        store.var["mean"], train.mean(axis=0), rtol=1e-8
    )  # float32 data, float64 accumulation
    np.testing.assert_allclose(store.var["std"], train.std(axis=0), rtol=1e-8)
    assert not np.allclose(
        store.var["mean"], adata.X.astype(np.float64).mean(axis=0), rtol=1e-6
    )  # not all samples
    assert store.var.index.name == "gene_id"
    assert store.var["noise_var"].tolist() == list(np.arange(30.0))  # input annotation kept
    assert (
        store.var["landmark"].dtype == bool and store.var["landmark"].iloc[:3].all()
    )  # D-GEX landmarks
    info = store.uns["genesel"]
    assert info["noise_floor"] == 0.3 and info["simulation"]["seed"] == 1
    assert info["log2_applied"] is False or info["log2_applied"] == 0
    assert info["seed"] == 5 and info["statistics"] == "train split only"
    with Store.open(path) as opened:
        assert opened.noise_floor == 0.3
        assert opened.split_indices("validation").tolist() == list(
            range(int((labels == "train").sum()), int((labels != "test").sum()))
        )


def test_in_memory_and_backed_give_identical_stores(tmp_path):
    adata = log_scale_data(n_obs=40)
    adata.write_h5ad(tmp_path / "input.h5ad")
    backed = ad.read_h5ad(tmp_path / "input.h5ad", backed="r")
    first = preprocess(
        adata,
        tmp_path / "a.h5ad",
        quantile_normalize=True,
        remove_duplicates=True,
        block_rows=9,
        progress=False,
    )
    second = preprocess(
        backed,
        tmp_path / "b.h5ad",
        quantile_normalize=True,
        remove_duplicates=True,
        block_rows=9,
        progress=False,
    )
    backed.file.close()
    a, b = read_store(first), read_store(second)
    np.testing.assert_array_equal(a.X, b.X)
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)
    ua, ub = dict(a.uns["genesel"]), dict(b.uns["genesel"])
    assert ua.pop("input") == "<AnnData>" and ub.pop("input") == str(tmp_path / "input.h5ad")
    np.testing.assert_array_equal(ua.pop("quantile_reference"), ub.pop("quantile_reference"))
    assert ua.keys() == ub.keys()
    assert all(np.all(ua[k] == ub[k]) for k in ua if k != "simulation")


def direct_quantile_normalize(values: np.ndarray, train: np.ndarray) -> np.ndarray:
    """In-memory QN written independently: ranks with ties, reference from train rows."""
    reference = np.sort(values[train], axis=1).mean(axis=0)
    out = np.empty_like(values)
    for i, row in enumerate(values):
        low = rankdata(row, method="min").astype(int) - 1
        high = rankdata(row, method="max").astype(int)
        out[i] = [reference[a:b].mean() for a, b in zip(low, high, strict=True)]
    return out


def test_quantile_normalisation_equals_direct_computation(tmp_path):
    adata = log_scale_data(n_obs=50, n_genes=25, seed=3)
    adata.X = np.round(adata.X, 0)  # many ties
    path = preprocess(
        adata, tmp_path / "qn.h5ad", quantile_normalize=True, seed=2, block_rows=8, progress=False
    )
    store = read_store(path)
    labels = assign_splits(adata.n_obs, seed=2)
    expected = direct_quantile_normalize(adata.X.astype(np.float64), labels == "train")
    np.testing.assert_allclose(
        store.X, expected[expected_order(labels)].astype(np.float32), rtol=1e-6
    )
    np.testing.assert_allclose(
        store.uns["genesel"]["quantile_reference"],
        np.sort(adata.X[labels == "train"].astype(np.float64), axis=1).mean(axis=0),
    )


def test_quantile_normalize_rows_without_ties_uses_the_reference_exactly():
    block = np.array([[3.0, 1.0, 2.0], [0.5, 0.7, 0.1]])
    reference = np.array([10.0, 20.0, 30.0])
    np.testing.assert_array_equal(
        quantile_normalize_rows(block, reference), [[30, 10, 20], [20, 30, 10]]
    )
    np.testing.assert_array_equal(
        quantile_normalize_rows(np.array([[1.0, 1.0, 2.0]]), reference), [[15, 15, 30]]
    )


def test_real_gpl96_probes_to_genes(tmp_path):
    path = preprocess(FIXTURE, tmp_path / "gpl96.h5ad", block_rows=32, progress=False)
    store = read_store(path)
    assert store.shape == (74, 10_463)
    assert int(store.var["landmark"].sum()) == 943
    assert list(store.var_names) == list(GENES.index)
    assert store.var.loc["ENSG00000110514", "n_probes"] == 2
    source = ad.read_h5ad(FIXTURE)
    madd = (
        source[store.obs_names, list(GENES.loc["ENSG00000110514", "probes"])]
        .X.astype(np.float64)
        .mean(axis=1)
    )
    np.testing.assert_allclose(store[:, "ENSG00000110514"].X.ravel(), madd, rtol=1e-6)
    info = store.uns["genesel"]
    assert info["input_features"] == "probe" and info["log2_applied"] == 0  # log2 RMA/MAS5 already
    assert info["probe_averaging"]["n_genes_without_probes"] == 0


def test_log2_auto_is_robust_to_a_few_negative_values(tmp_path, caplog):
    logged = log_scale_data(n_obs=60)
    linear = logged.copy()
    linear.X = np.exp2(linear.X) - 1
    linear.X[
        5, 3
    ] = -2.0  # one background-corrected value below zero used to keep the data un-logged
    with caplog.at_level(logging.WARNING, logger="genesel"):
        store = read_store(preprocess(linear, tmp_path / "lin.h5ad", progress=False))
    assert store.uns["genesel"]["log2_applied"]
    assert "<AnnData>: log2='auto': 99.9th percentile" in caplog.text
    assert (
        "1 of 1800 sampled values negative" in caplog.text
        and "ignoring the negative values" in caplog.text
    )
    row = store.obs_names.get_loc(logged.obs_names[5])
    assert store.X[row, 3] == 0.0  # set to 0 before log2
    order = store.obs_names.get_indexer(pd.Index(logged.obs_names))
    mask = np.ones(logged.shape, dtype=bool)
    mask[5, 3] = False
    np.testing.assert_allclose(store.X[order][mask], logged.X[mask], atol=1e-4)

    caplog.clear()
    many = linear.copy()
    many.X[:, :2] = -1.0  # 7% negative: not clearly linear, left alone with a warning
    with caplog.at_level(logging.WARNING, logger="genesel"):
        store = read_store(preprocess(many, tmp_path / "many.h5ad", progress=False))
    assert not store.uns["genesel"]["log2_applied"] and "too many are negative" in caplog.text

    caplog.clear()
    close = logged.copy()
    close.X = close.X * (60 / np.quantile(close.X, 0.999))  # 99.9th percentile 60: linear, barely
    with caplog.at_level(logging.WARNING, logger="genesel"):
        store = read_store(preprocess(close, tmp_path / "close.h5ad", progress=False))
    assert (
        store.uns["genesel"]["log2_applied"] and "close call: 99.9th percentile 60" in caplog.text
    )


def test_log2_decisions(tmp_path):
    logged = log_scale_data(n_obs=30)
    linear = logged.copy()
    linear.X = np.exp2(linear.X) - 1
    store = read_store(preprocess(linear, tmp_path / "lin.h5ad", progress=False))
    assert store.uns["genesel"]["log2_applied"]
    order = store.obs_names.get_indexer(pd.Index(logged.obs_names))
    np.testing.assert_allclose(store.X[order], logged.X, atol=1e-4)
    with pytest.raises(InputFileError, match="looks log-scale already"):
        preprocess(logged, tmp_path / "again.h5ad", log2=True, progress=False)
    forced = read_store(
        preprocess(logged, tmp_path / "forced.h5ad", log2="yes", force_log=True, progress=False)
    )
    assert forced.uns["genesel"]["log2_applied"]
    negative = logged.copy()
    negative.X = negative.X - 8
    with pytest.raises(InputFileError, match="negative values"):
        preprocess(negative, tmp_path / "neg.h5ad", log2=True, force_log=True, progress=False)
    mixed = log_scale_data(n_obs=200)
    mixed.X[100] = 1000.0  # a row the log2="auto" sample does not see looks linear
    with pytest.raises(InputFileError, match="sample 'sample_100'.*not log-scale"):
        preprocess(mixed, tmp_path / "mixed.h5ad", block_rows=4, progress=False)
    assert not (tmp_path / "mixed.h5ad").exists()
    with pytest.raises(ConfigError, match="log2='maybe'"):
        preprocess(logged, tmp_path / "x.h5ad", log2="maybe", progress=False)


def test_non_finite_value_fails_cleanly(tmp_path):
    adata = log_scale_data(n_obs=40)
    adata.X[33, 4] = np.nan
    adata.write_h5ad(tmp_path / "bad.h5ad")
    out = tmp_path / "out" / "store.h5ad"
    out.parent.mkdir()
    with pytest.raises(
        InputFileError,
        match=r"bad\.h5ad: non-finite value nan at row 33 \(sample 'sample_033'\), gene '"
        + GENES.index[4],
    ):
        preprocess(
            tmp_path / "bad.h5ad", out, log2="no", block_rows=5, progress=False
        )  # fails while writing
    assert not out.exists()
    assert list(out.parent.iterdir()) == []  # no temporary file left behind


def test_duplicates_removed(tmp_path):
    adata = log_scale_data(n_obs=40)
    adata.X[10] = adata.X[3]  # exact
    adata.X[20] = adata.X[5] + 2e-4  # near
    adata.X[30] = adata.X[6] + 0.1  # distinct
    path = preprocess(
        adata, tmp_path / "dedup.h5ad", remove_duplicates=True, block_rows=6, progress=False
    )
    store = read_store(path)
    assert store.n_obs == 38
    assert "sample_010" not in store.obs_names and "sample_020" not in store.obs_names
    assert "sample_030" in store.obs_names
    info = store.uns["genesel"]
    assert info["n_duplicates_removed"] == 2
    assert list(info["duplicate_samples"]) == ["sample_010", "sample_020"]
    assert list(info["duplicate_of"]) == ["sample_003", "sample_005"]
    assert sum(info["split_sizes"].values()) == 38


def test_split_column_from_dgex_npy(tmp_path):
    rng = np.random.default_rng(4)
    for short, n in (("tr", 6), ("va", 3), ("te", 2)):
        np.save(
            tmp_path / f"bgedv2_XY_{short}_float32.npy",
            rng.normal(7, 1, size=(n, 10_463)).astype(np.float32),
        )
    path = preprocess(tmp_path, tmp_path / "store.h5ad", split_column="split", progress=False)
    store = read_store(path)
    assert store.obs["split"].tolist() == ["train"] * 6 + ["validation"] * 3 + ["test"] * 2
    assert store.obs_names[6] == "validation_0"
    with pytest.raises(InputFileError, match="no sample column 'batch'"):
        preprocess(tmp_path, tmp_path / "other.h5ad", split_column="batch", progress=False)


def test_constant_gene_gets_unit_std(tmp_path):
    adata = log_scale_data(n_obs=30)
    adata.X[:, 2] = 5.0
    store = read_store(preprocess(adata, tmp_path / "c.h5ad", progress=False))
    assert store.var["std"].iloc[2] == 1.0 and store.var["constant"].iloc[2]
    assert not store.var["constant"].iloc[[0, 1, 3]].any()


class CountingRows(DenseRows):
    """Records the largest row range read, to show nothing loads the whole matrix."""

    largest = 0

    def _rows(self, start: int, stop: int) -> np.ndarray:
        CountingRows.largest = max(CountingRows.largest, stop - start)
        return super()._rows(start, stop)


def test_reads_by_blocks_only(tmp_path):
    adata = log_scale_data(n_obs=100)
    with h5py.File(tmp_path / "m.h5", "w") as handle:
        handle["X"] = adata.X
    with h5py.File(tmp_path / "m.h5", "r") as handle:
        source = MatrixSource(
            tmp_path / "m.h5",
            CountingRows(handle["X"]),
            obs_names=adata.obs_names,
            var_names=adata.var_names,
            var=adata.var,
        )
        preprocess(
            source,
            tmp_path / "s.h5ad",
            quantile_normalize=True,
            remove_duplicates=True,
            block_rows=10,
            progress=False,
        )
    assert 0 < CountingRows.largest <= 10


def test_cli_runs_preprocess(tmp_path):
    parser = argparse.ArgumentParser(prog="genesel")
    preprocess_cli.add_parser(parser.add_subparsers())
    text = tmp_path / "m.tsv"
    log_scale_data(n_obs=30).to_df().T.to_csv(text, sep="\t")  # genes x samples
    args = parser.parse_args(
        [
            "preprocess",
            str(text),
            "--out",
            str(tmp_path / "s.h5ad"),
            "--sizes",
            "20",
            "5",
            "--quantile-normalize",
        ]
    )
    args.progress = False
    assert args.func(args) == 0
    with Store.open(tmp_path / "s.h5ad") as store:
        assert store.uns["split_sizes"] == {"train": 20, "validation": 5, "test": 5}
        assert store.uns["quantile_normalize"]
    with pytest.raises(ConfigError, match="--sizes"):
        args = parser.parse_args(
            ["preprocess", str(text), "--out", str(tmp_path / "t.h5ad"), "--sizes", "20"]
        )
        args.func(args)


def test_output_must_differ_from_input(tmp_path):
    adata = log_scale_data(n_obs=30)
    adata.write_h5ad(tmp_path / "same.h5ad")
    with pytest.raises(ConfigError, match="is the input"):
        preprocess(tmp_path / "same.h5ad", tmp_path / "same.h5ad", progress=False)
    with open_source(tmp_path / "same.h5ad") as source:  # a source passed in stays open
        preprocess(source, tmp_path / "other.h5ad", progress=False)
        assert source.read_rows(0, 2).shape == (2, 30)


def test_gene_level_input_keeps_its_landmark_column_and_matches_entrez_ids(tmp_path):
    """A gene-level set indexed by Entrez id: its own l1000_landmark column wins; without one,
    renamed landmarks (AARS1, ADGRE5) are found by Entrez id, not missed by the 2016 symbols."""
    rng = np.random.default_rng(0)
    names = ["16", "976", "23", "4000", "5000", "6000"]
    symbols = ["AARS1", "ADGRE5", "ABCF1", "CD97", "G5", "G6"]
    values = rng.normal(7, 1, size=(40, len(names))).astype(np.float32)
    flagged = ad.AnnData(
        values,
        var=pd.DataFrame(
            {"symbol": symbols, "l1000_landmark": [True, False, False, False, True, False]},
            index=names,
        ),
    )
    store = read_store(preprocess(flagged, tmp_path / "flagged.h5ad", seed=0, progress=False))
    assert store.var["landmark"].tolist() == [True, False, False, False, True, False]
    plain = ad.AnnData(values, var=pd.DataFrame({"symbol": symbols}, index=names))
    store = read_store(preprocess(plain, tmp_path / "plain.h5ad", seed=0, progress=False))
    assert store.var["landmark"].tolist() == [True, True, True, False, False, False]


def test_cli_leaves_every_default_to_preprocess() -> None:
    """Options not given on the command line are not passed: preprocess() owns the defaults."""
    parser = argparse.ArgumentParser()
    preprocess_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["preprocess", "in.h5ad", "--out", "out.h5ad"])
    assert {name: getattr(args, name) for name in preprocess_cli._OPTIONS} == dict.fromkeys(
        preprocess_cli._OPTIONS
    )
