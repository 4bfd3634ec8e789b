"""Delimited text matrices (CSV/TSV, optionally compressed) in either orientation.

The first row holds the column ids and the first column the row ids (R's
``write.table`` layout, without the corner cell, is accepted too). Which axis holds the
genes is given by ``orientation`` or guessed from the ids: the axis whose ids are known
genes (D-GEX/L1000 symbols, Ensembl ids) or probe ids.

Text cannot be sliced by rows, so the matrix is materialised once: in memory when the
file is small (``max_in_memory_bytes``), else streamed in chunks of lines into a
temporary HDF5 file (in ``$TMPDIR``; removed by :meth:`MatrixSource.close`). A
genes-by-samples file is transposed on the way by writing each chunk of gene lines as a
block of columns; the temporary file is chunked in squares so both directions are cheap.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genesel.errors import InputFileError, option_name
from genesel.io.gene_maps import count_known_ids, detect_feature_kind
from genesel.io.source import ORIENTATIONS, MatrixSource, Orientation, check_unique

logger = logging.getLogger(__name__)


#: Files up to this size are read into memory in one go.
DEFAULT_MAX_IN_MEMORY_BYTES = 256 * 1024**2
#: Lines parsed per chunk when streaming a large file.
CHUNK_LINES = 2048
#: Fraction of an axis' ids that must be known gene/probe ids to call it the gene axis.
KNOWN_FRACTION = 0.5


def separator_for(path: Path) -> str:
    """Return the delimiter implied by the file name (``.csv`` -> comma, else tab)."""
    suffixes = [
        s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2", ".xz", ".zip")
    ]
    return "," if suffixes and suffixes[-1] == ".csv" else "\t"


def _csv(path: Path, sep: str, **kwargs: Any) -> Any:
    try:
        return pd.read_csv(path, sep=sep, header=None, **kwargs)
    except pd.errors.EmptyDataError as error:
        raise InputFileError(path, "the file is empty") from error
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot be parsed as delimited text ({error})") from error


def read_labels(path: Path, sep: str) -> tuple[pd.Index, pd.Index]:
    """Return (row ids, column ids) of a delimited matrix without reading its values."""
    header = _csv(path, sep, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
    first_lines = _csv(path, sep, nrows=1, skiprows=1, dtype=str, keep_default_na=False)
    if first_lines.empty:
        raise InputFileError(path, "the matrix is empty (a header but no rows)")
    n_fields = first_lines.shape[1]
    if len(header) == n_fields:
        columns = header[1:]
    elif len(header) == n_fields - 1:
        columns = header
    else:
        raise InputFileError(
            path, f"the header has {len(header)} fields but the first row has {n_fields}"
        )
    rows = _csv(path, sep, skiprows=1, usecols=[0], dtype=str, keep_default_na=False).iloc[:, 0]
    return pd.Index(rows.to_numpy(dtype=str)), pd.Index(np.asarray(columns, dtype=str))


def guess_orientation(
    path: Path,
    row_ids: pd.Index,
    column_ids: pd.Index,
    gene_map: pd.DataFrame | None,
    orientation: str | None,
) -> Orientation:
    """Return which axis holds the features, checking a given ``orientation`` against the ids."""
    if orientation is not None and orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS} or None, not {orientation!r}")
    row_known = sum(count_known_ids(row_ids, gene_map)) / len(row_ids)
    column_known = sum(count_known_ids(column_ids, gene_map)) / len(column_ids)
    columns_are_genes = column_known >= KNOWN_FRACTION and row_known < column_known / 2
    rows_are_genes = row_known >= KNOWN_FRACTION and column_known < row_known / 2
    evidence = (
        "samples-by-genes" if columns_are_genes else "genes-by-samples" if rows_are_genes else None
    )
    if orientation is not None:
        if evidence is not None and evidence != orientation:
            raise InputFileError(
                path,
                f"orientation {orientation!r} contradicts the ids: {row_known:.0%} of the row ids and "
                f"{column_known:.0%} of the column ids are known genes/probes",
                f"pass {option_name('orientation', evidence)}",
            )
        return orientation
    if evidence is None:
        if max(row_known, column_known) == 0:
            problem = "neither the row ids nor the column ids match the D-GEX probe map or the gene lists"
        else:
            problem = (
                f"cannot tell which axis holds the genes ({row_known:.0%} of the row ids and "
                f"{column_known:.0%} of the column ids are known genes/probes)"
            )
        raise InputFileError(
            path,
            problem,
            f"pass {option_name('orientation', 'samples-by-genes')} or 'genes-by-samples'",
        )
    logger.info("%s: guessed orientation %s", path, evidence)
    return evidence  # type: ignore[return-value]


def _numeric(chunk: pd.DataFrame, path: Path, first_line: int) -> np.ndarray:
    """Return the chunk's values as float64, or raise naming the first non-numeric cell."""
    values = (
        chunk.apply(pd.to_numeric, errors="coerce")
        if (chunk.dtypes == np.dtype(object)).any()
        else chunk
    )
    bad = values.isna().to_numpy() & chunk.notna().to_numpy()
    if bad.any():
        row, column = (int(i[0]) for i in np.nonzero(bad))
        raise InputFileError(
            path,
            f"non-numeric value {chunk.iat[row, column]!r} at line {first_line + row + 1} "
            f"(row id {chunk.index[row]!r}), column {column + 2}",
            "the matrix must hold numbers only, apart from the id row and column",
        )
    return values.to_numpy(dtype=np.float64)


def read_text(
    path: str | os.PathLike[str],
    *,
    orientation: Orientation | None = None,
    sep: str | None = None,
    gene_map: pd.DataFrame | None = None,
    max_in_memory_bytes: int = DEFAULT_MAX_IN_MEMORY_BYTES,
) -> MatrixSource:
    """Open a CSV/TSV matrix as a :class:`MatrixSource` (samples x features).

    Parameters
    ----------
    path
        The text file (``.csv``, ``.tsv``, ``.txt``, optionally ``.gz``).
    orientation
        ``"samples-by-genes"`` (a row per sample) or ``"genes-by-samples"``; ``None``
        guesses it from the ids and raises if the guess is ambiguous.
    sep
        Delimiter (default: from the extension).
    gene_map
        Probe -> gene map used to recognise ids (``None``: D-GEX).
    max_in_memory_bytes
        Larger files go through a temporary HDF5 copy instead of memory.
    """
    path = Path(path)
    sep = sep or separator_for(path)
    row_ids, column_ids = read_labels(path, sep)
    orientation = guess_orientation(path, row_ids, column_ids, gene_map, orientation)
    samples, features = (
        (row_ids, column_ids) if orientation == "samples-by-genes" else (column_ids, row_ids)
    )
    check_unique(path, samples, "sample")
    check_unique(path, features, "feature")
    if not len(samples) or not len(features):
        raise InputFileError(
            path, f"the matrix is empty ({len(samples)} samples x {len(features)} features)"
        )
    transpose = orientation == "genes-by-samples"
    on_close: list[Any] = []
    if path.stat().st_size <= max_in_memory_bytes:
        values = _numeric(_csv(path, sep, skiprows=1, index_col=0), path, first_line=1)
        if values.shape != (len(row_ids), len(column_ids)):
            raise InputFileError(
                path,
                f"found {values.shape[0]} x {values.shape[1]} values for {len(row_ids)} x {len(column_ids)} ids",
            )
        data: Any = np.ascontiguousarray(values.T if transpose else values)
    else:
        data, on_close = _to_temporary_h5(path, sep, len(row_ids), len(column_ids), transpose)
    return MatrixSource(
        path,
        data,
        obs_names=samples,
        var_names=features,
        feature_kind=detect_feature_kind(features, gene_map),  # type: ignore[arg-type]
        gene_map=gene_map,
        on_close=on_close,
    )


def _to_temporary_h5(
    path: Path, sep: str, n_rows: int, n_columns: int, transpose: bool
) -> tuple[Any, list[Any]]:
    import h5py

    directory = Path(tempfile.mkdtemp(prefix="genesel-text-"))
    logger.info("%s: large text file, converting to a temporary HDF5 copy in %s", path, directory)
    handle = None
    try:
        handle = h5py.File(directory / "matrix.h5", "w")
        shape = (n_columns, n_rows) if transpose else (n_rows, n_columns)
        side = 512
        dataset = handle.create_dataset(
            "matrix",
            shape=shape,
            dtype=np.float64,
            chunks=(min(shape[0], side), min(shape[1], side)),
        )
        start = 0
        for chunk in _csv(path, sep, skiprows=1, index_col=0, chunksize=CHUNK_LINES):
            values = _numeric(chunk, path, first_line=1 + start)
            if values.shape[1] != n_columns:
                raise InputFileError(
                    path,
                    f"line {start + 2} has {values.shape[1] + 1} fields, expected {n_columns + 1}",
                )
            stop = start + values.shape[0]
            if transpose:
                dataset[:, start:stop] = values.T
            else:
                dataset[start:stop] = values
            start = stop
        handle.flush()
    except BaseException:
        if handle is not None:
            handle.close()
        shutil.rmtree(directory, ignore_errors=True)
        raise

    def remove() -> None:
        handle.close()
        shutil.rmtree(directory, ignore_errors=True)

    return dataset, [remove]
