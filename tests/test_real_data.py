"""benchmarks/real_data.py helpers, on tiny frames (no Debian or R packages needed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "real_data.py"
_spec = importlib.util.spec_from_file_location("real_data", _PATH)
real_data = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("real_data", real_data)  # dataclasses look their module up
_spec.loader.exec_module(real_data)


def test_collapse_averages_features_of_one_gene_and_drops_unmapped() -> None:
    expr = pd.DataFrame(
        [[1.0, 3.0, 5.0, 9.0], [2.0, 4.0, 6.0, 9.0]], columns=["p1", "p2", "p3", "p4"]
    )
    genes, n_features, stats = real_data.collapse_to_genes(
        expr, pd.Series({"p1": "7", "p2": "7", "p3": "5"})
    )
    assert list(genes.columns) == ["5", "7"]
    np.testing.assert_allclose(genes["7"], [2.0, 3.0])
    assert n_features.to_dict() == {"5": 1, "7": 2}
    assert stats == {"features": 4, "features_mapped": 3, "genes": 2}


def test_landmarks_match_entrez_then_current_then_2016_symbol() -> None:
    landmarks = pd.DataFrame(
        {
            "entrez_id": ["1", "2", "3"],
            "symbol": ["A", "OLD_B", "C"],
            "symbol_current": ["A", "B", "C1"],
        }
    )
    entrez = pd.Series(["1", "20", "30", "40", "50"])
    symbol = pd.Series(["x", "B", "C", "D", ""])
    assert real_data.flag_landmarks(entrez, symbol, landmarks).tolist() == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_finish_filters_annotates_and_records_provenance(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    expr = pd.DataFrame(
        rng.normal(size=(6, 4)), index=[f"s{i}" for i in range(6)], columns=["1", "2", "3", "4"]
    )
    expr["4"] = 5.0  # zero variance
    expr["1"] *= 10  # most variable
    built = real_data.Built(
        expr=expr,
        obs=pd.DataFrame({"subject": list("aabbcc"), "age": np.arange(6.0)}, index=expr.index),
        n_features=pd.Series({"1": 1, "2": 2, "3": 1, "4": 1}),
        platform="test array",
        units="log2",
        sources=[{"package": "pkg", "version": "1.0", "installer": "pypi", "file": "data/x"}],
        steps=["read"],
        counts_like=False,
        group="subject",
    )
    landmarks = pd.DataFrame({"entrez_id": ["2"], "symbol": ["G2"], "symbol_current": ["G2"]})
    adata = real_data.finish(
        "toy", built, {"1": "G1", "2": "G2", "3": "G3"}, landmarks, top_genes=2
    )
    assert adata.shape == (6, 2) and "1" in adata.var_names and "4" not in adata.var_names
    assert adata.obs["group"].tolist() == list("aabbcc")
    path = tmp_path / "toy.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    prov = back.uns["provenance"]
    assert prov["sources"]["0"]["package"] == "pkg" and prov["group"] == "subject"
    assert any("zero variance" in step for step in prov["transformations"])
    assert back.var.loc[back.var_names, "symbol"].tolist() == [
        {"1": "G1", "2": "G2", "3": "G3"}[g] for g in back.var_names
    ]


def test_missing_r_package_names_the_apt_command(tmp_path: Path) -> None:
    with pytest.raises(
        real_data.MissingSource, match=r"apt-get install --no-install-recommends r-bioc-all"
    ):
        real_data.r_package("ALL", "r-bioc-all", tmp_path)
