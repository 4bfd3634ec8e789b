"""AnnData inputs: ``.h5ad`` and ``.zarr`` files (read lazily) and in-memory AnnData.

Files are opened with h5py/zarr and only ``obs``, ``var`` and ``uns`` are read into
memory (with :func:`anndata.io.read_elem`); ``X`` or the chosen layer stays on disk and is
sliced by row blocks: a dense matrix directly, a sparse one through AnnData's
``sparse_dataset`` with each block densified. This is what ``read_h5ad(backed="r")``
does for ``X``, extended to layers (which backed mode would load whole) and to zarr
(which ``read_zarr`` would load whole).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genesel.errors import InputFileError
from genesel.io.gene_maps import detect_feature_kind
from genesel.io.source import DenseRows, MatrixSource, SparseRows

logger = logging.getLogger(__name__)

SPARSE_ENCODINGS = ("csr_matrix", "csc_matrix")


def _read_elem(element: Any) -> Any:
    from anndata.io import read_elem

    return read_elem(element)


def _matrix_element(group: Any, path: Path, layer: str | None) -> Any:
    if layer is None:
        if "X" not in group:
            raise InputFileError(path, "has no X matrix", "pass layer=... to read a layer instead")
        return group["X"]
    if "layers" not in group or layer not in group["layers"]:
        available = sorted(group["layers"].keys()) if "layers" in group else []
        raise InputFileError(path, f"has no layer {layer!r}", f"available layers: {available}")
    return group["layers"][layer]


def _lazy_rows(element: Any, path: Path) -> Any:
    """Wrap a dense or sparse on-disk matrix element so that row slices return dense blocks."""
    encoding = element.attrs.get("encoding-type", "array")
    if isinstance(encoding, bytes):
        encoding = encoding.decode()
    if encoding in SPARSE_ENCODINGS:
        from anndata.io import sparse_dataset

        if encoding == "csc_matrix":
            logger.warning(
                "%s: the matrix is stored CSC (by column); reading it by rows is slow. "
                "Convert it to CSR or dense first for large data.",
                path,
            )
        return SparseRows(sparse_dataset(element))
    if not hasattr(element, "shape") or len(element.shape) != 2:
        raise InputFileError(
            path, f"the matrix is stored as {encoding!r}, not as a 2-D array or sparse matrix"
        )
    if element.dtype.kind not in "fiub":
        raise InputFileError(path, f"the matrix has non-numeric dtype {element.dtype}")
    return element if hasattr(element, "id") else DenseRows(element)  # h5py Datasets slice as-is


def read_anndata_file(
    path: str | os.PathLike[str],
    *,
    layer: str | None = None,
    gene_map: pd.DataFrame | None = None,
) -> MatrixSource:
    """Open an ``.h5ad`` file or ``.zarr`` directory as a lazy :class:`MatrixSource`.

    Parameters
    ----------
    path
        The ``.h5ad`` file or ``.zarr`` store.
    layer
        Read this layer instead of ``X``.
    gene_map
        Probe -> gene map used to recognise probe ids (``None``: D-GEX).
    """
    path = Path(path)
    is_zarr = path.is_dir() or path.suffix == ".zarr"
    try:
        if is_zarr:
            import zarr

            group = zarr.open_group(str(path), mode="r")
            closers: list[Any] = []
        else:
            import h5py

            group = h5py.File(path, "r")
            closers = [group.close]
    except Exception as error:  # h5py raises OSError, zarr several kinds
        kind = "zarr store" if is_zarr else "HDF5 (.h5ad) file"
        raise InputFileError(path, f"cannot be opened as a {kind} ({error})") from error
    try:
        data = _lazy_rows(_matrix_element(group, path, layer), path)
        obs = _read_elem(group["obs"]) if "obs" in group else None
        var = _read_elem(group["var"]) if "var" in group else None
        if obs is None or var is None:
            raise InputFileError(path, "is not an AnnData file (obs or var missing)")
        uns = _read_uns(group, path)
        return MatrixSource(
            path,
            data,
            obs_names=obs.index,
            var_names=var.index,
            var=var,
            obs=obs,
            feature_kind=detect_feature_kind(var.index, gene_map),  # type: ignore[arg-type]
            uns=uns,
            gene_map=gene_map,
            on_close=closers,
        )
    except BaseException:
        for close in closers:
            close()
        raise


def _uns_errors() -> tuple[type[Exception], ...]:
    """What reading an exotic ``uns`` raises: HDF5/IO errors, bad values, no reader registered."""
    errors: tuple[type[Exception], ...] = (
        OSError,
        ValueError,
        TypeError,
        KeyError,
        NotImplementedError,
    )
    try:  # an element encoding anndata has no reader for; the class is private to anndata
        from anndata._io.specs.registry import IORegistryError
    except ImportError:
        return errors
    return (*errors, IORegistryError)


def _read_uns(group: Any, path: Path) -> dict[str, Any]:
    if "uns" not in group:
        return {}
    try:
        return dict(_read_elem(group["uns"]))
    except _uns_errors() as error:  # an exotic uns must not block reading the matrix
        logger.warning("%s: could not read uns (%s); ignoring it", path, error)
        return {}


def source_from_anndata(
    adata: Any, *, layer: str | None = None, gene_map: pd.DataFrame | None = None
) -> MatrixSource:
    """Wrap an AnnData (in memory or opened with ``backed="r"``) as a :class:`MatrixSource`.

    The AnnData is not copied and is not closed by :meth:`MatrixSource.close`.
    """
    matrix = adata.X if layer is None else adata.layers[layer] if layer in adata.layers else None
    path = Path(adata.filename) if getattr(adata, "isbacked", False) else Path("<AnnData>")
    if matrix is None:
        raise InputFileError(
            path,
            "the AnnData has no X" if layer is None else f"the AnnData has no layer {layer!r}",
        )
    if sp.issparse(matrix) or type(matrix).__name__.endswith(("CSRDataset", "CSCDataset")):
        data: Any = SparseRows(matrix)
    elif isinstance(matrix, np.ndarray) or hasattr(matrix, "id"):
        data = matrix
    else:
        data = DenseRows(matrix)
    return MatrixSource(
        path,
        data,
        obs_names=adata.obs_names,
        var_names=adata.var_names,
        var=adata.var,
        obs=adata.obs,
        feature_kind=detect_feature_kind(adata.var_names, gene_map),  # type: ignore[arg-type]
        uns=dict(adata.uns),
        gene_map=gene_map,
    )
