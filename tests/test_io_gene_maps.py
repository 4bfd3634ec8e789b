"""The D-GEX gene universe, L1000 landmarks and probe -> gene averaging on real GPL96 arrays."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from genesel.errors import InputFileError
from genesel.io.gctx import write_gctx
from genesel.io.gene_maps import (
    DUPLICATE_TARGET_SUFFIX,
    annotate_genes,
    average_probes,
    dgex_gene_map,
    flag_l1000_landmarks,
    l1000_landmarks,
    probe_averaging,
    read_gene_map,
)
from genesel.io.open import open_source

FIXTURE = Path(__file__).parent / "data" / "gpl96_74_arrays.h5ad"


@pytest.fixture(scope="module")
def gpl96() -> ad.AnnData:
    return ad.read_h5ad(FIXTURE)


def test_dgex_universe_has_943_landmarks_then_9520_targets():
    genes = dgex_gene_map()
    assert len(genes) == 10_463
    assert genes.index.name == "gene_id" and genes.index.is_unique
    assert genes["landmark"].iloc[:943].all() and not genes["landmark"].iloc[943:].any()
    assert (
        genes.index[0] == "ENSG00000175063" and genes["symbol"].iloc[0] == "UBE2C"
    )  # first line of map_lm
    assert genes["symbol"].iloc[943] == "NXN"  # first line of map_tg
    # 445 genes are both a landmark (L1000 probe) and a target (other probes): distinct ids.
    copies = genes.index[genes.index.str.endswith(DUPLICATE_TARGET_SUFFIX)]
    assert len(copies) == 445
    assert copies.str.removesuffix(DUPLICATE_TARGET_SUFFIX).isin(genes.index[:943]).all()
    all_probes = [p for ps in genes["probes"] for p in ps]
    assert len(all_probes) == len(set(all_probes)) == 16_687
    assert genes.loc["ENSG00000110514", "probes"] == (
        "38398_at",
        "210252_s_at",
    )  # MADD: two probes


def test_l1000_list_and_flags():
    landmarks = l1000_landmarks()
    assert len(landmarks) == 978 and landmarks["symbol"].is_unique
    assert flag_l1000_landmarks(["AARS", "aars", "NOT_A_GENE"]).tolist() == [True, True, False]


def test_annotate_genes_prefers_existing_flag_then_dgex_then_l1000():
    names = pd.Index(["g1", "g2"])
    assert annotate_genes(names, pd.DataFrame({"landmark": [True, False]}, index=names))[
        "landmark"
    ].tolist() == [True, False]
    universe = dgex_gene_map()
    ids = pd.Index([universe.index[0], universe.index[-1]])
    annotated = annotate_genes(ids, pd.DataFrame(index=ids))
    assert annotated["landmark"].tolist() == [True, False]
    assert annotated["symbol"].iloc[0] == "UBE2C"
    symbols = pd.Index(["AARS", "NOT_A_GENE"])
    assert annotate_genes(symbols, pd.DataFrame(index=symbols))["landmark"].tolist() == [
        True,
        False,
    ]


def test_probe_averaging_reports_missing_genes_and_unmatched_probes():
    genes = dgex_gene_map()
    madd = genes.loc["ENSG00000110514"]
    ids = [madd["probes"][1], "not_a_probe", genes["probes"].iloc[0][0]]
    averaging = probe_averaging(ids, path="x.gctx")
    assert list(averaging.genes.index) == [genes.index[0], "ENSG00000110514"]  # map order
    assert averaging.n_unmatched_probes == 1
    assert len(averaging.missing_genes) == len(genes) - 2
    block = np.array([[2.0, 7.0, 4.0]])
    np.testing.assert_allclose(block @ averaging.matrix, [[4.0, 2.0]])


def test_probe_averaging_without_any_match_names_the_file():
    with pytest.raises(InputFileError, match=r"x\.gctx.*none of the 2 feature ids.*'foo'"):
        probe_averaging(["foo", "bar"], path="x.gctx")


def test_custom_gene_map_file(tmp_path):
    path = tmp_path / "map.tsv"
    path.write_text("A\tgA\tp1,p2\ttrue\nB\tgB\tp3\tfalse\n")
    genes = read_gene_map(path)
    assert list(genes.index) == ["gA", "gB"] and genes["landmark"].tolist() == [True, False]
    (tmp_path / "bad.tsv").write_text("A\tgA\tp1\nB\tgB\tp1\n")
    with pytest.raises(InputFileError, match="more than one gene"):
        read_gene_map(tmp_path / "bad.tsv")


def test_real_gpl96_gctx_averages_to_the_full_dgex_universe(gpl96, tmp_path):
    path = write_gctx(tmp_path / "gpl96.gctx", gpl96.X, gpl96.var_names, gpl96.obs_names)
    with open_source(path) as probes:
        assert probes.feature_kind == "probe" and probes.shape == (74, 16_687)
        with average_probes(probes) as genes:
            assert genes.feature_kind == "gene"
            assert genes.n_vars == 10_463
            assert int(genes.var["landmark"].sum()) == 943
            assert int((~genes.var["landmark"]).sum()) == 9_520
            got = np.concatenate([genes.read_rows(a, a + 20) for a in range(0, genes.n_obs, 20)])
    universe = dgex_gene_map()
    column = {p: i for i, p in enumerate(gpl96.var_names)}
    x = np.asarray(gpl96.X, dtype=np.float64)
    expected = np.stack(
        [x[:, [column[p] for p in ps]].mean(axis=1) for ps in universe["probes"]], axis=1
    )
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
    assert list(genes.var_names) == list(universe.index)


def test_landmarks_by_entrez_id_then_current_then_2016_symbol():
    # AARS (Entrez 16) was renamed AARS1, CD97 (976) ADGRE5; ABCF1 (23) kept its name
    by_id = flag_l1000_landmarks(["whatever", "CD97", "ABCF1"], ["16", "1", ""])
    assert by_id.tolist() == [True, False, True], (
        "an Entrez id decides; a gene without one goes by symbol"
    )
    assert flag_l1000_landmarks(["AARS1", "adgre5", "ABCF1", "NOT_A_GENE"]).tolist() == [
        True,
        True,
        True,
        False,
    ]
    # an old symbol counts only when the landmark was not found already under its current one
    assert flag_l1000_landmarks(["AARS1", "AARS"]).tolist() == [True, False]
    assert flag_l1000_landmarks(["AARS"]).tolist() == [True]
    table = l1000_landmarks()
    assert (table["symbol"] != table["symbol_current"]).sum() == 47 and table[
        "symbol_current"
    ].notna().all()


@pytest.mark.parametrize("column", ["l1000_landmark", "is_landmark", "pr_is_lm", "Landmark"])
@pytest.mark.parametrize("values", [[True, False, False], ["TRUE", "false", "NA"], [1, 0, 0]])
def test_annotate_genes_reads_common_landmark_columns(column, values):
    names = pd.Index(["16", "23", "999999"])
    annotated = annotate_genes(
        names, pd.DataFrame({column: values, "symbol": ["AARS1", "ABCF1", "X"]}, index=names)
    )
    assert annotated["landmark"].tolist() == [True, False, False], (
        "the input's own flag wins over the landmark table"
    )


def test_annotate_genes_matches_entrez_ids_before_symbols():
    names = pd.Index(["16", "976", "4000", "23"])
    symbols = [
        "AARS1",
        "ADGRE5",
        "CD97",
        "ABCF1",
    ]  # 4000 is not CD97's gene: the old symbol must not flag it
    annotated = annotate_genes(names, pd.DataFrame({"symbol": symbols}, index=names))
    assert annotated["landmark"].tolist() == [True, True, False, True]
    column = pd.DataFrame(
        {"gene_symbol": symbols, "entrez_id": [16.0, 976.0, 4000.0, np.nan]},
        index=pd.Index(symbols),
    )
    assert annotate_genes(column.index, column)["landmark"].tolist() == [True, True, False, True]
