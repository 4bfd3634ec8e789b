"""Bad inputs fail with an InputFileError (or ConfigError for options) naming the file."""

from __future__ import annotations

import os
import warnings

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest

from genesel.errors import ConfigError, InputFileError
from genesel.io.gctx import write_gctx
from genesel.io.gene_maps import dgex_gene_map
from genesel.io.open import open_source

GENES = list(dgex_gene_map().index[:4])


def expect_error(path, match: str, **options) -> InputFileError:
    with pytest.raises(InputFileError, match=match) as info:
        open_source(path, **options)
    assert str(path) in str(info.value)
    return info.value


def test_missing_file(tmp_path):
    expect_error(tmp_path / "absent.h5ad", "no such file")


def test_unknown_format(tmp_path):
    path = tmp_path / "m.xlsx"
    path.write_bytes(b"PK")
    error = expect_error(path, "unknown format")
    assert "format=" in error.hint
    with pytest.raises(ConfigError, match="'parquet'"):
        open_source(path, format="parquet")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("x")
    path.chmod(0)
    expect_error(path, "not readable")


def test_corrupt_files(tmp_path):
    for name in ("m.h5ad", "m.gctx"):
        (tmp_path / name).write_text("not hdf5")
        expect_error(tmp_path / name, "cannot be opened")
    with h5py.File(tmp_path / "other.gctx", "w") as handle:
        handle["x"] = np.ones(3)
    expect_error(tmp_path / "other.gctx", "not a GCTX file")


def test_text_wrong_or_ambiguous_orientation(tmp_path):
    path = tmp_path / "m.csv"
    pd.DataFrame(np.ones((2, 4)), index=["GSM1", "GSM2"], columns=GENES).to_csv(path)
    error = expect_error(path, "contradicts the ids", orientation="genes-by-samples")
    assert "samples-by-genes" in error.hint
    both = tmp_path / "both.csv"
    pd.DataFrame(np.ones((4, 4)), index=GENES, columns=GENES).to_csv(both)
    expect_error(both, "cannot tell which axis")
    neither = tmp_path / "neither.csv"
    pd.DataFrame(np.ones((2, 2)), index=["s1", "s2"], columns=["foo", "bar"]).to_csv(neither)
    error = expect_error(neither, "neither the row ids nor the column ids match")
    assert "orientation" in error.hint
    with open_source(neither, orientation="samples-by-genes") as source:  # the user may insist
        assert source.feature_kind == "gene"


def test_gctx_shape_mismatch_and_ambiguity(tmp_path):
    path = tmp_path / "bad.gctx"
    with h5py.File(path, "w") as handle:
        handle["0/DATA/0/matrix"] = np.ones((3, 5))
        handle["0/META/ROW/id"] = np.array(GENES, dtype="S")
        handle["0/META/COL/id"] = np.array(["a", "b", "c"], dtype="S")
    expect_error(path, "4 row .feature. ids")
    square = write_gctx(tmp_path / "square.gctx", np.ones((4, 4)), GENES, ["a", "b", "c", "d"])
    expect_error(square, "cannot tell how the matrix is stored")
    with open_source(square, orientation="samples-by-genes") as source:
        assert source.shape == (4, 4)
    tall = write_gctx(tmp_path / "tall.gctx", np.ones((2, 4)), GENES, ["a", "b"])
    expect_error(tall, "does not fit", orientation="genes-by-samples")


def test_probe_ids_matching_no_gene(tmp_path):
    from genesel.io.gene_maps import average_probes

    path = tmp_path / "p.csv"
    pd.DataFrame(
        np.ones((2, 3)), index=["GSM1", "GSM2"], columns=["1_at", "2_at", "3_s_at"]
    ).to_csv(path)
    with open_source(path) as source:
        assert source.feature_kind == "probe"
        with pytest.raises(InputFileError, match=r"p\.csv.*none of the 3 feature ids"):
            average_probes(source)


def test_duplicate_ids(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text(f",{GENES[0]},{GENES[0]},{GENES[1]}\nGSM1,1,2,3\nGSM2,4,5,6\n")
    expect_error(path, f"feature id.*{GENES[0]}")
    rows = tmp_path / "duprows.csv"
    rows.write_text(f",{GENES[0]},{GENES[1]}\nGSM1,1,2\nGSM1,4,5\n")
    expect_error(rows, "sample id.*GSM1")
    with warnings.catch_warnings():  # anndata warns about the duplicates we want
        warnings.simplefilter("ignore")
        adata = ad.AnnData(np.ones((2, 2)), var=pd.DataFrame(index=[GENES[0], GENES[0]]))
        adata.write_h5ad(tmp_path / "dup.h5ad")
    expect_error(tmp_path / "dup.h5ad", "occur more than once")
    gctx = write_gctx(tmp_path / "dup.gctx", np.ones((2, 3)), [GENES[0]] * 3, ["a", "b"])
    expect_error(gctx, "feature id")


def test_non_numeric_cells(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text(f"\t{GENES[0]}\t{GENES[1]}\nGSM1\t1\t2\nGSM2\t3\toops\n")
    error = expect_error(path, "non-numeric value 'oops' at line 3")
    assert "GSM2" in error.problem
    from genesel.io.text import read_text

    with pytest.raises(InputFileError, match="oops"):
        read_text(path, max_in_memory_bytes=0)


def test_empty_matrices(tmp_path):
    header_only = tmp_path / "h.csv"
    header_only.write_text(f",{GENES[0]}\n")
    expect_error(header_only, "empty")
    blank = tmp_path / "blank.csv"
    blank.write_text("")
    expect_error(blank, "empty")
    adata = ad.AnnData(np.ones((0, 3)), var=pd.DataFrame(index=GENES[:3]))
    adata.write_h5ad(tmp_path / "e.h5ad")
    expect_error(tmp_path / "e.h5ad", "empty")


def test_npy_problems(tmp_path):
    lone = tmp_path / "matrix.npy"
    np.save(lone, np.ones((2, 3)))
    expect_error(lone, "lone .npy")
    np.save(tmp_path / "bgedv2_XY_tr_float32.npy", np.ones((2, 5), dtype=np.float32))
    expect_error(tmp_path, r"shape \(2, 5\), expected \(samples, 10463\)")
    partial = tmp_path / "partial"
    partial.mkdir()
    np.save(partial / "bgedv2_X_tr_float64.npy", np.ones((2, 943)))
    expect_error(partial, "lacks its")
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_error(empty, "unknown format")


def test_options_that_do_not_apply(tmp_path):
    adata = ad.AnnData(np.ones((2, 2)), var=pd.DataFrame(index=GENES[:2]))
    adata.write_h5ad(tmp_path / "m.h5ad")
    with pytest.raises(ConfigError, match="orientation"):
        open_source(tmp_path / "m.h5ad", orientation="genes-by-samples")
    expect_error(tmp_path / "m.h5ad", "no layer 'counts'", layer="counts")
