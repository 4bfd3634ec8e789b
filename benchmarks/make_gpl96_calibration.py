"""Compute the calibration statistics of ``genesel.simulate`` from real GPL96 arrays.

For maintainers: reads the 74 real HG-U133A (GPL96) arrays in ``/work/shared/data/gpl96``
and writes ``genesel/data/gpl96_calibration.npz``. Tests and users never run this; the
package ships its small output.

Processing mirrors the GEO compendium (``bgedv2_QNORM``) that D-GEX used:

1. the arrays (log2; RMA for the bladder set, MAS5 for GSE781) are quantile normalised
   together at probe level, onto the mean of the sorted arrays;
2. each D-GEX gene's expression is the mean of its probes
   (:func:`genesel.io.gene_maps.dgex_gene_map`, landmarks first);
3. per gene: mean and standard deviation over the 74 arrays; plus the eigenvalue
   spectrum of the gene-gene correlation matrix (fractions of total variance).

Usage::

    python benchmarks/make_gpl96_calibration.py [--shared /work/shared] [--out genesel/data/gpl96_calibration.npz]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import anndata as ad
import numpy as np

from genesel.io.atomic import atomic_output
from genesel.io.gene_maps import dgex_gene_map, probe_averaging

logger = logging.getLogger("make_gpl96_calibration")

ARRAY_FILES = ("bladderbatch_GPL96_probes.h5ad", "GSE781_GPL96_probes.h5ad")
REPO = Path(__file__).resolve().parents[1]


def quantile_normalise(X: np.ndarray) -> np.ndarray:
    """Quantile-normalise the rows (samples) of ``X`` onto their mean sorted row."""
    order = np.argsort(X, axis=1, kind="stable")
    reference = np.sort(X, axis=1).mean(axis=0)
    out = np.empty_like(X)
    np.put_along_axis(out, order, np.broadcast_to(reference, X.shape), axis=1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("/work/shared"))
    parser.add_argument("--out", type=Path, default=REPO / "genesel/data/gpl96_calibration.npz")
    parser.add_argument("--n-eigenvalues", type=int, default=73)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    arrays = [ad.read_h5ad(args.shared / "data/gpl96" / name) for name in ARRAY_FILES]
    probes = arrays[0].var_names
    for adata in arrays[1:]:
        if not adata.var_names.equals(probes):
            adata._inplace_subset_var(probes)
    X = np.vstack([np.asarray(a.X, dtype=np.float64) for a in arrays])
    logger.info("%d arrays x %d probes", *X.shape)
    X = quantile_normalise(X)

    genes = dgex_gene_map()
    averaging = probe_averaging(probes, genes)
    if len(averaging.missing_genes):
        raise SystemExit(
            f"genes without probes on the arrays: {list(averaging.missing_genes[:5])}"
        )
    expression = np.asarray(X @ averaging.matrix)

    mean = expression.mean(axis=0)
    sd = expression.std(axis=0, ddof=1)
    standardised = (expression - mean) / np.where(sd > 0, sd, 1.0)
    singular = np.linalg.svd(standardised, compute_uv=False)
    eigen = singular**2 / (singular**2).sum()
    logger.info(
        "gene means %.2f..%.2f (median %.2f), sds %.3f..%.3f (median %.3f)",
        mean.min(),
        mean.max(),
        np.median(mean),
        sd.min(),
        sd.max(),
        np.median(sd),
    )
    logger.info("leading correlation eigenvalue fractions: %s", np.round(eigen[:8], 4))

    with atomic_output(args.out) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(
                handle,
                gene_id=np.array(genes.index, dtype="S"),
                landmark=genes["landmark"].to_numpy(),
                mean=mean.astype(np.float32),
                sd=sd.astype(np.float32),
                eigenvalue_fraction=eigen[: args.n_eigenvalues].astype(np.float32),
                n_arrays=np.int64(X.shape[0]),
                source=np.array(
                    "74 GPL96 arrays: bladderbatch (57, RMA) + GSE781 (17, MAS5); probe-level quantile normalisation, D-GEX probe averaging"
                ),
            )
    logger.info("wrote %s (%d bytes)", args.out, args.out.stat().st_size)


if __name__ == "__main__":
    main()
