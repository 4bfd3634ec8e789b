"""CMap GCTX files (HDF5): the layout of D-GEX's ``bgedv2_QNORM.gctx``.

A GCTX holds ``/0/DATA/0/matrix`` with feature ids in ``/0/META/ROW/id`` and sample ids
in ``/0/META/COL/id``. Following cmapPy, the HDF5 dataset is stored as
(n samples, n features), i.e. transposed relative to the "rows are features" view; files
written the other way round are read through a transposing adapter.

CMap's L1000 files (Level 3/4: the 978 landmarks or 12,328 genes) name their rows by Entrez
gene id. Such rows get an ``entrez_id`` column and a ``symbol``: CMap's own
``pr_gene_symbol`` row field when the file has it, else the symbol of the shipped L1000
landmark table (:func:`genesel.io.gene_maps.l1000_landmarks`), so that models whose genes
are named by Ensembl id or symbol find them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from genesel.errors import InputFileError, option_name
from genesel.io.atomic import atomic_output
from genesel.io.gene_maps import detect_feature_kind, l1000_landmarks
from genesel.io.source import MatrixSource, Orientation, TransposedRows

logger = logging.getLogger(__name__)

MATRIX_PATH = "0/DATA/0/matrix"
ROW_META = "0/META/ROW"
COL_META = "0/META/COL"


#: CMap's GCTX row field with the gene symbol.
CMAP_SYMBOL_FIELD = "pr_gene_symbol"
#: An Entrez gene id: digits only.
ENTREZ_ID_PATTERN = re.compile(r"^\d+$")


def _decode_ids(dataset: h5py.Dataset) -> np.ndarray:
    values = dataset[()]
    if values.dtype.kind in "SO":
        values = np.array(
            [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values], dtype=object
        )
    return np.asarray(values).astype(str)


def _read_meta(group: h5py.Group, length: int) -> pd.DataFrame:
    """Read the 1-D fields of a META group (except ``id``) that have ``length`` entries."""
    columns: dict[str, np.ndarray] = {}
    for key, item in group.items():
        if key == "id" or not isinstance(item, h5py.Dataset) or item.shape != (length,):
            continue
        columns[key] = _decode_ids(item) if item.dtype.kind in "SO" else item[()]
    return pd.DataFrame(columns, index=pd.RangeIndex(length))


def read_gctx(
    path: str | os.PathLike[str],
    *,
    orientation: Orientation | None = None,
    gene_map: pd.DataFrame | None = None,
) -> MatrixSource:
    """Open a GCTX file as a :class:`MatrixSource` (samples x features), lazily.

    Parameters
    ----------
    path
        The ``.gctx`` file.
    orientation
        How the HDF5 matrix is stored: ``"samples-by-genes"`` (cmapPy's convention) or
        ``"genes-by-samples"``. ``None`` infers it from the numbers of row and column ids.
    gene_map
        Probe -> gene map used to recognise probe ids (``None``: D-GEX).
    """
    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise InputFileError(path, f"cannot be opened as a GCTX/HDF5 file ({error})") from error
    try:
        for key in (MATRIX_PATH, f"{ROW_META}/id", f"{COL_META}/id"):
            if key not in handle:
                raise InputFileError(path, f"not a GCTX file: /{key} is missing")
        matrix = handle[MATRIX_PATH]
        feature_ids = _decode_ids(handle[f"{ROW_META}/id"])
        sample_ids = _decode_ids(handle[f"{COL_META}/id"])
        stored = _stored_orientation(
            path, tuple(matrix.shape), len(sample_ids), len(feature_ids), orientation
        )
        data: Any = matrix if stored == "samples-by-genes" else TransposedRows(matrix)
        var = entrez_annotation(
            feature_ids, _read_meta(handle[ROW_META], len(feature_ids)), path=path
        )
        obs = _read_meta(handle[COL_META], len(sample_ids))
        feature_kind = detect_feature_kind(feature_ids, gene_map)
        return MatrixSource(
            path,
            data,
            obs_names=sample_ids,
            var_names=feature_ids,
            var=var,
            obs=obs,
            feature_kind=feature_kind,  # type: ignore[arg-type]
            gene_map=gene_map,
            on_close=[handle.close],
        )
    except BaseException:
        handle.close()
        raise


def entrez_annotation(
    feature_ids: Sequence[str] | np.ndarray,
    var: pd.DataFrame,
    *,
    path: str | os.PathLike[str] = "<gctx>",
) -> pd.DataFrame:
    """Add ``entrez_id`` and ``symbol`` to the row annotation when every row id is an Entrez id.

    The symbol is CMap's ``pr_gene_symbol`` where the file has one, else the shipped L1000
    landmark table's for that Entrez id, else the Entrez id itself (as for files without
    symbols; such a row is found by id only).
    ``var`` is returned unchanged when the ids are not Entrez ids or it has a ``symbol``.
    """
    ids = pd.Index(np.asarray(feature_ids).astype(str))
    if not len(ids) or "symbol" in var.columns or not all(ENTREZ_ID_PATTERN.match(i) for i in ids):
        return var
    var = var.copy()
    landmarks = l1000_landmarks().set_index("entrez_id")["symbol"]
    from_table = landmarks.reindex(ids).fillna("").to_numpy(dtype=object)
    if CMAP_SYMBOL_FIELD in var.columns:
        from_file = var[CMAP_SYMBOL_FIELD].astype(str).to_numpy(dtype=object)
        symbols = np.where(np.isin(from_file, ["", "nan", "-666"]), from_table, from_file)
    else:
        symbols = from_table
    known = symbols != ""
    var["entrez_id"] = ids.to_numpy()
    var["symbol"] = np.where(known, symbols, ids.to_numpy()).astype(str)
    logger.info(
        "%s: %d rows named by Entrez gene id (%d L1000 landmarks); symbols from %s for %d of them",
        path,
        len(ids),
        int(ids.isin(landmarks.index).sum()),
        f"{CMAP_SYMBOL_FIELD} and the landmark table"
        if CMAP_SYMBOL_FIELD in var.columns
        else "the L1000 landmark table",
        int(known.sum()),
    )
    return var


def _stored_orientation(
    path: Path,
    shape: tuple[int, ...],
    n_samples: int,
    n_vars: int,
    orientation: Orientation | None,
) -> Orientation:
    if len(shape) != 2:
        raise InputFileError(path, f"/{MATRIX_PATH} has shape {shape}, expected 2 dimensions")
    fits = {
        "samples-by-genes": shape == (n_samples, n_vars),
        "genes-by-samples": shape == (n_vars, n_samples),
    }
    if orientation is not None:
        if orientation not in fits:
            raise ValueError(f"orientation must be one of {sorted(fits)}, not {orientation!r}")
        if not fits[orientation]:
            raise InputFileError(
                path,
                f"orientation {orientation!r} does not fit: the matrix is {shape[0]} x {shape[1]} with "
                f"{n_vars} row (feature) ids and {n_samples} column (sample) ids",
            )
        return orientation
    matching = [name for name, ok in fits.items() if ok]
    if not matching:
        raise InputFileError(
            path,
            f"the matrix is {shape[0]} x {shape[1]} but there are {n_vars} row (feature) ids "
            f"and {n_samples} column (sample) ids",
        )
    if len(matching) == 2:
        raise InputFileError(
            path,
            "as many samples as features: cannot tell how the matrix is stored",
            f"pass {option_name('orientation', 'samples-by-genes')} (cmapPy's layout) or 'genes-by-samples'",
        )
    return matching[0]  # type: ignore[return-value]


def write_gctx(
    path: str | os.PathLike[str],
    matrix: Any,
    row_ids: Sequence[Any],
    col_ids: Sequence[Any],
    *,
    block_rows: int = 4096,
    compression: str | None = None,
) -> Path:
    """Write a samples x features matrix as a GCTX file in cmapPy's layout, atomically.

    Parameters
    ----------
    path
        Destination ``.gctx``.
    matrix
        Array-like (n samples x n features) with row slicing; written by row blocks.
    row_ids
        Feature ids (GCTX rows), length n features.
    col_ids
        Sample ids (GCTX columns), length n samples.
    block_rows
        Samples written per block.
    compression
        Optional h5py compression (e.g. ``"gzip"``).
    """
    n_samples, n_vars = (int(n) for n in matrix.shape)
    if len(row_ids) != n_vars or len(col_ids) != n_samples:
        raise ValueError(
            f"matrix is {n_samples} samples x {n_vars} features but got "
            f"{len(col_ids)} column (sample) ids and {len(row_ids)} row (feature) ids"
        )
    path = Path(path)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs["version"] = "GCTX1.0"
        chunks = (max(1, min(n_samples, 256)), max(1, min(n_vars, 1024)))
        dataset = handle.create_dataset(
            MATRIX_PATH,
            shape=(n_samples, n_vars),
            dtype=matrix.dtype,
            chunks=chunks,
            compression=compression,
        )
        for start in range(0, n_samples, block_rows):
            dataset[start : start + block_rows] = np.asarray(matrix[start : start + block_rows])
        handle.create_dataset(
            f"{ROW_META}/id", data=np.array([str(i).encode() for i in row_ids], dtype="S")
        )
        handle.create_dataset(
            f"{COL_META}/id", data=np.array([str(i).encode() for i in col_ids], dtype="S")
        )
    return path
