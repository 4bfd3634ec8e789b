"""Rebuild tests/data/gpl96_74_arrays.h5ad from the two real GPL96 AnnData files.

Usage: python tests/data/make_gpl96_74_arrays.py /work/shared/data/gpl96
Keeps the probes used by the D-GEX maps (16,687 of 22,283), float32 rounded to a 2**-12
grid, gzip + shuffle.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd

from genesel.io.gene_maps import dgex_gene_map

GRID = 2.0**12
SOURCES = {"bladderbatch": "bladderbatch_GPL96_probes.h5ad", "GSE781": "GSE781_GPL96_probes.h5ad"}


def main(folder: str) -> None:
    gene_map = dgex_gene_map()
    probes = {p for ps in gene_map["probes"] for p in ps}
    parts = []
    for dataset, name in SOURCES.items():
        adata = ad.read_h5ad(Path(folder) / name)
        adata = adata[:, sorted(probes & set(adata.var_names))].copy()
        adata.obs = pd.DataFrame({"dataset": dataset}, index=adata.obs_names)
        adata.var = pd.DataFrame(index=adata.var_names)
        parts.append(adata)
    adata = ad.concat(parts, join="inner", merge="first")
    # Round to a 2**-12 grid (max change 1.2e-4 log2 units, far below array noise) so that
    # the low mantissa bits are zero and the file compresses under 4 MB.
    adata.X = (np.round(np.asarray(adata.X, dtype=np.float64) * GRID) / GRID).astype(np.float32)
    adata.obs["dataset"] = adata.obs["dataset"].astype("category")
    adata.uns["provenance"] = (
        "74 real GPL96 arrays: 57 bladderbatch (log2 RMA) + 17 GSE781 (log2 MAS5), "
        "restricted to the 16,687 probes of the D-GEX maps; see tests/data/README.md"
    )
    out = Path(__file__).with_name("gpl96_74_arrays.h5ad")
    draft = out.with_suffix(".draft.h5ad")
    adata.write_h5ad(draft)
    # Copy into a fresh file with X recompressed by shuffle + gzip (write_h5ad has no shuffle).
    with h5py.File(draft, "r") as source, h5py.File(out, "w") as target:
        target.attrs.update(dict(source.attrs))
        for key in source:
            if key != "X":
                source.copy(source[key], target, name=key)
        dataset = target.create_dataset(
            "X",
            data=adata.X,
            chunks=(adata.n_obs, 1024),
            compression="gzip",
            compression_opts=9,
            shuffle=True,
        )
        dataset.attrs.update(dict(source["X"].attrs))
    draft.unlink()
    print(out, adata.shape, out.stat().st_size / 1e6, "MB")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/gpl96")
