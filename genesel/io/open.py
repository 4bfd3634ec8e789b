"""open_source: one entry point that picks the reader for an expression matrix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from genesel.errors import ConfigError, InputFileError
from genesel.io.source import ORIENTATIONS, MatrixSource, Orientation, is_orientation

#: Accepted values of ``format`` and what they read.
FORMATS = {
    "gctx": "CMap GCTX (HDF5), e.g. D-GEX's bgedv2_QNORM.gctx",
    "h5ad": "AnnData .h5ad (X or a layer, dense or sparse)",
    "zarr": "AnnData .zarr store",
    "csv": "comma-separated text, ids in the first row and column",
    "tsv": "tab-separated text, ids in the first row and column",
    "npy": "D-GEX (bgedv2_X/Y_*.npy) or CAE (bgedv2_XY_*.npy) files, or their directory",
}
_EXTENSIONS = {
    ".gctx": "gctx",
    ".h5ad": "h5ad",
    ".zarr": "zarr",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".npy": "npy",
}
_COMPRESSION = (".gz", ".bz2", ".xz", ".zip")


def detect_format(path: str | os.PathLike[str]) -> str:
    """Return the format name of ``path`` from its extension (or contents for directories)."""
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in _COMPRESSION]
    if suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    if path.is_dir():
        if (path / ".zattrs").exists() or (path / "zarr.json").exists():
            return "zarr"
        from genesel.io.dgex_npy import is_dgex_npy_name

        if any(is_dgex_npy_name(p.name) for p in path.iterdir()):
            return "npy"
    if suffixes and suffixes[-1] in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as handle:
                return "gctx" if "0/DATA/0/matrix" in handle else "h5ad"
        except OSError as error:
            raise InputFileError(path, f"cannot be opened as an HDF5 file ({error})") from error
    raise InputFileError(
        path,
        "unknown format",
        f"use one of the extensions {sorted(_EXTENSIONS)} or pass format= one of {sorted(FORMATS)}",
    )


def open_source(
    path: str | os.PathLike[str] | Any,
    *,
    format: str | None = None,
    orientation: str | None = None,
    layer: str | None = None,
    probe_map: str | os.PathLike[str] | pd.DataFrame | None = None,
) -> MatrixSource:
    """Open an expression matrix as a lazy samples x features :class:`MatrixSource`.

    Parameters
    ----------
    path
        A file or directory (see :data:`FORMATS`), or an AnnData object.
    format
        Force a format instead of guessing it from the extension.
    orientation
        ``"samples-by-genes"`` or ``"genes-by-samples"``, for text and GCTX files;
        ``None`` infers it.
    layer
        AnnData layer to read instead of ``X`` (``.h5ad``/``.zarr``/AnnData only).
    probe_map
        Probe -> gene map (a D-GEX-style file or frame, see
        :func:`genesel.io.gene_maps.read_gene_map`); ``None`` is the D-GEX map.

    Returns
    -------
    An open :class:`MatrixSource`; close it (or use ``with``) when done.
    """
    from genesel.io.gene_maps import resolve_gene_map

    gene_map = None if probe_map is None else resolve_gene_map(probe_map)
    if not isinstance(path, (str, os.PathLike)):
        from genesel.io.anndata_source import source_from_anndata

        _reject_option(orientation, "orientation", "an AnnData object")
        return source_from_anndata(path, layer=layer, gene_map=gene_map)
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file or directory")
    if not os.access(path, os.R_OK):
        raise InputFileError(path, "is not readable", "check the file permissions")
    fmt = (format or detect_format(path)).lower()
    if fmt not in FORMATS:
        raise ConfigError(f"format {format!r} is not one of {sorted(FORMATS)}")
    if fmt in ("h5ad", "zarr"):
        from genesel.io.anndata_source import read_anndata_file

        _reject_option(
            orientation, "orientation", f"{fmt} files (they are always samples x genes)"
        )
        return read_anndata_file(path, layer=layer, gene_map=gene_map)
    _reject_option(layer, "layer", f"{fmt} files")
    checked = _checked_orientation(orientation) if fmt in ("gctx", "csv", "tsv") else None
    if fmt == "gctx":
        from genesel.io.gctx import read_gctx

        return read_gctx(path, orientation=checked, gene_map=gene_map)
    if fmt in ("csv", "tsv"):
        from genesel.io.text import read_text

        return read_text(
            path, orientation=checked, sep="," if fmt == "csv" else "\t", gene_map=gene_map
        )
    from genesel.io.dgex_npy import read_dgex_npy

    _reject_option(orientation, "orientation", "D-GEX/CAE .npy files (they are samples x genes)")
    return read_dgex_npy(path)


def _reject_option(value: Any, name: str, where: str) -> None:
    if value is not None:
        raise ConfigError(f"option {name}={value!r} does not apply to {where}; leave it out")


def _checked_orientation(orientation: str | None) -> Orientation | None:
    if orientation is None:
        return None
    if not is_orientation(orientation):
        raise ValueError(f"orientation must be one of {ORIENTATIONS} or None, not {orientation!r}")
    return orientation
