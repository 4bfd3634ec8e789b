"""Every reader returns the same small matrix, names and row blocks it was given."""

from __future__ import annotations

import os
import warnings

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from genesel.errors import InputFileError
from genesel.io.dgex_npy import N_LANDMARKS, N_TARGETS
from genesel.io.gctx import write_gctx
from genesel.io.gene_maps import dgex_gene_map
from genesel.io.open import open_source
from genesel.io.source import MatrixSource
from genesel.io.text import read_text

N_SAMPLES, N_GENES = 9, 12


@pytest.fixture(scope="module")
def matrix() -> tuple[np.ndarray, pd.Index, pd.Index]:
    rng = np.random.default_rng(0)
    values = rng.normal(8, 2, size=(N_SAMPLES, N_GENES)).astype(np.float32)
    values[values < 7] = 0.0  # some zeros, so sparse storage is meaningful
    genes = dgex_gene_map().index[:N_GENES]
    samples = pd.Index([f"GSM{100 + i}" for i in range(N_SAMPLES)])
    return values, samples, genes


def assert_reads_back(
    source: MatrixSource, values: np.ndarray, samples: pd.Index, genes: pd.Index
) -> None:
    assert source.shape == values.shape
    assert list(source.obs_names) == list(samples)
    assert list(source.var_names) == list(genes)
    assert source.feature_kind == "gene"
    blocks = [source.read_rows(a, min(a + 4, source.n_obs)) for a in range(0, source.n_obs, 4)]
    np.testing.assert_allclose(np.concatenate(blocks), values, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(source.data[2:5, 3:7]), values[2:5, 3:7], rtol=1e-6)
    assert source.read_rows(0, 3).dtype in (np.float32, np.float64)


def test_gctx_cmappy_layout(matrix, tmp_path):
    values, samples, genes = matrix
    path = write_gctx(tmp_path / "m.gctx", values, genes, samples)
    with h5py.File(path) as handle:  # cmapPy stores (samples, features)
        assert handle["0/DATA/0/matrix"].shape == (N_SAMPLES, N_GENES)
        assert handle["0/META/ROW/id"].dtype.kind == "S"
    with open_source(path) as source:
        assert_reads_back(source, values, samples, genes)


def test_gctx_stored_genes_by_samples(matrix, tmp_path):
    values, samples, genes = matrix
    path = tmp_path / "t.gctx"
    with h5py.File(path, "w") as handle:
        handle["0/DATA/0/matrix"] = values.T
        handle["0/META/ROW/id"] = np.array(genes, dtype=object).astype("S")
        handle["0/META/COL/id"] = np.array(samples, dtype=object).astype("S")
        handle["0/META/COL/cell"] = np.array([f"c{i}" for i in range(N_SAMPLES)], dtype="S")
    with open_source(path) as source:
        assert_reads_back(source, values, samples, genes)
        assert list(source.obs["cell"]) == [f"c{i}" for i in range(N_SAMPLES)]


def _write_dgex_npy(directory, rows: dict[str, int], seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    full = []
    for short, n in rows.items():
        part = rng.normal(size=(n, N_LANDMARKS + N_TARGETS))
        np.save(directory / f"bgedv2_X_{short}_float64.npy", part[:, :N_LANDMARKS])
        np.save(
            directory / f"bgedv2_Y_{short}_0-4760_float64.npy",
            part[:, N_LANDMARKS : N_LANDMARKS + 4760],
        )
        np.save(
            directory / f"bgedv2_Y_{short}_4760-9520_float64.npy", part[:, N_LANDMARKS + 4760 :]
        )
        full.append(part)
    return np.concatenate(full)


def test_dgex_npy_layout(tmp_path):
    expected = _write_dgex_npy(tmp_path, {"tr": 4, "va": 2, "te": 3})
    with open_source(tmp_path) as source:
        assert source.shape == (9, 10_463)
        assert list(source.var_names) == list(dgex_gene_map().index)
        assert source.obs["split"].tolist() == ["train"] * 4 + ["validation"] * 2 + ["test"] * 3
        assert source.obs_names[4] == "validation_0"
        np.testing.assert_array_equal(source.read_rows(3, 7), expected[3:7])  # crosses two splits
        assert int(source.var["landmark"].sum()) == 943
    with open_source(tmp_path / "bgedv2_X_va_float64.npy") as source:  # a file opens its directory
        assert source.n_obs == 9


def test_dgex_npy_gene_order_files(tmp_path):
    """D-GEX shuffled its genes and wrote the order to bgedv2_GTEx_1000G_{lm,tg}.txt."""
    _write_dgex_npy(tmp_path, {"tr": 2})
    genes = dgex_gene_map()
    rng = np.random.default_rng(5)
    shuffled = np.concatenate([rng.permutation(943), 943 + rng.permutation(9520)])
    for name, rows in (("lm", shuffled[:943]), ("tg", shuffled[943:])):
        lines = [
            f"{genes['ensembl_id'].iloc[i]}\t0\t{','.join(genes['probes'].iloc[i])}\n"
            for i in rows
        ]
        (tmp_path / f"bgedv2_GTEx_1000G_{name}.txt").write_text("".join(lines))
    with open_source(tmp_path) as source:
        assert list(source.var_names) == list(genes.index[shuffled])
        assert (
            source.var["landmark"].iloc[:943].all() and not source.var["landmark"].iloc[943:].any()
        )
    (tmp_path / "bgedv2_GTEx_1000G_tg.txt").write_text("ENSG1\t0\tnot_a_probe\n" * 9520)
    with pytest.raises(InputFileError, match="line 1: probes 'not_a_probe'"):
        open_source(tmp_path)


def test_cae_npy_layout(tmp_path):
    rng = np.random.default_rng(2)
    parts = {s: rng.normal(size=(n, 10_463)).astype(np.float32) for s, n in (("tr", 3), ("te", 2))}
    for short, part in parts.items():
        np.save(tmp_path / f"bgedv2_XY_{short}_float32.npy", part)
    with open_source(tmp_path, format="npy") as source:
        assert source.data.dtype == np.float32
        assert source.obs["split"].tolist() == ["train"] * 3 + ["test"] * 2
        np.testing.assert_array_equal(
            source.read_rows(0, 5), np.concatenate([parts["tr"], parts["te"]])
        )


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_anndata_files(matrix, tmp_path, sparse, suffix):
    values, samples, genes = matrix
    adata = ad.AnnData(
        sp.csr_matrix(values) if sparse else values,
        obs=pd.DataFrame({"batch": ["a", "b", "c"] * 3}, index=samples),
        var=pd.DataFrame(
            {"symbol": dgex_gene_map()["symbol"].iloc[:N_GENES].to_numpy()}, index=genes
        ),
        uns={"noise_floor": 0.25},
    )
    adata.layers["doubled"] = adata.X * 2
    path = tmp_path / f"m{suffix}"
    if suffix == ".h5ad":
        adata.write_h5ad(path)
    else:
        with warnings.catch_warnings():  # anndata's notice about the zarr v2 default
            warnings.simplefilter("ignore", UserWarning)
            adata.write_zarr(path)
    with open_source(path) as source:
        assert_reads_back(source, values, samples, genes)
        assert source.uns["noise_floor"] == 0.25
        assert list(source.obs["batch"]) == ["a", "b", "c"] * 3
        assert type(source.data).__name__ == (
            "SparseRows" if sparse else "Dataset" if suffix == ".h5ad" else "DenseRows"
        )
    with open_source(path, layer="doubled") as source:
        np.testing.assert_allclose(source.read_rows(0, N_SAMPLES), values * 2, rtol=1e-6)


def test_in_memory_and_backed_anndata(matrix, tmp_path):
    values, samples, genes = matrix
    adata = ad.AnnData(values, obs=pd.DataFrame(index=samples), var=pd.DataFrame(index=genes))
    with open_source(adata) as source:
        assert_reads_back(source, values, samples, genes)
    adata.write_h5ad(tmp_path / "b.h5ad")
    backed = ad.read_h5ad(tmp_path / "b.h5ad", backed="r")
    with open_source(backed) as source:
        assert source.path == tmp_path / "b.h5ad"
        assert_reads_back(source, values, samples, genes)
    backed.file.close()


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize("orientation", ["samples-by-genes", "genes-by-samples"])
def test_text_both_orientations(matrix, tmp_path, orientation, in_memory):
    values, samples, genes = matrix
    frame = pd.DataFrame(values, index=samples, columns=genes)
    if orientation == "genes-by-samples":
        frame = frame.T
        path = tmp_path / "m.tsv"
        frame.to_csv(path, sep="\t")
    else:
        path = tmp_path / "m.csv"
        frame.to_csv(path)
    with read_text(path, max_in_memory_bytes=1 << 30 if in_memory else 0) as source:
        assert_reads_back(source, values, samples, genes)
        temporary = None if in_memory else source.data.file.filename
    if temporary is not None:
        assert not os.path.exists(temporary)  # the temporary copy is removed on close
    with open_source(path, orientation=orientation) as source:  # explicit orientation agrees
        assert source.shape == values.shape


def test_text_without_corner_cell(tmp_path):
    genes = dgex_gene_map().index[:3]
    path = tmp_path / "r.txt"
    path.write_text("\t".join(genes) + "\ns1\t1\t2\t3\ns2\t4\t5\t6\n")  # R write.table layout
    with open_source(path) as source:
        assert list(source.obs_names) == ["s1", "s2"]
        np.testing.assert_array_equal(source.read_rows(0, 2), [[1, 2, 3], [4, 5, 6]])


def test_probe_level_text_is_recognised(tmp_path):
    probes = ["202954_at", "219222_at", "201763_s_at"]
    path = tmp_path / "p.csv"
    pd.DataFrame(np.ones((2, 3)), index=["GSM1", "GSM2"], columns=probes).T.to_csv(path)
    with open_source(path) as source:
        assert source.feature_kind == "probe" and list(source.var_names) == probes
