"""D-GEX and CAE ``.npy`` matrices of the GEO compendium, read as memory maps.

Two layouts, one per paper, both samples x genes in the D-GEX universe order:

- D-GEX: ``bgedv2_X_{tr,va,te}_float64.npy`` (943 landmarks) and
  ``bgedv2_Y_{tr,va,te}_{0-4760,4760-9520}_float64.npy`` (the 9,520 targets in two halves);
- CAE: ``bgedv2_XY_{tr,va,te}_float32.npy`` (10,463 genes, landmarks first).

The split comes from the file names and is exposed as the ``obs`` column ``split``
(``train``/``validation``/``test``); sample ids are ``<split>_<row>``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genesel.errors import InputFileError
from genesel.io.gene_maps import dgex_gene_map
from genesel.io.source import MatrixSource, SideBySideRows, StackedRows

logger = logging.getLogger(__name__)

SPLIT_NAMES = {"tr": "train", "va": "validation", "te": "test"}
N_LANDMARKS = 943
N_TARGETS = 9520
TARGET_HALVES = ("0-4760", "4760-9520")

DGEX_FILE = re.compile(r"^bgedv2_(X|Y)_(tr|va|te)(?:_(0-4760|4760-9520))?_float(32|64)\.npy$")
CAE_FILE = re.compile(r"^bgedv2_XY_(tr|va|te)_float(32|64)\.npy$")


def is_dgex_npy_name(name: str) -> bool:
    """Whether a file name follows the D-GEX or CAE ``.npy`` naming."""
    return bool(DGEX_FILE.match(name) or CAE_FILE.match(name))


def _load(path: Path, n_columns: int) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputFileError(path, f"cannot be read as a .npy array ({error})") from error
    if array.ndim != 2 or array.shape[1] != n_columns:
        raise InputFileError(
            path, f"has shape {array.shape}, expected (samples, {n_columns})", "is this the D-GEX/CAE file it is named as?"
        )
    if array.dtype.kind != "f":
        raise InputFileError(path, f"has dtype {array.dtype}, expected floating point values")
    return array


def _find(directory: Path, pattern: str) -> Path | None:
    matches = sorted(directory.glob(pattern))
    return matches[0] if matches else None


def read_dgex_npy(path: str | os.PathLike[str]) -> MatrixSource:
    """Open the D-GEX or CAE ``.npy`` files of a directory as one :class:`MatrixSource`.

    Parameters
    ----------
    path
        The directory holding the files, or one of the files (its directory is read, in
        that file's layout). Splits present are stacked as train, validation, test.
    """
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    if not directory.is_dir():
        raise InputFileError(path, "no such file or directory")
    if path.is_file():
        if not is_dgex_npy_name(path.name):
            raise InputFileError(
                path,
                "a lone .npy has no sample or gene ids",
                "save the matrix as .h5ad (with var_names) or use the D-GEX/CAE file names bgedv2_X_tr_float64.npy ...",
            )
        layout = "cae" if CAE_FILE.match(path.name) else "dgex"
    else:
        has_cae = any(CAE_FILE.match(p.name) for p in directory.iterdir())
        has_dgex = any(DGEX_FILE.match(p.name) for p in directory.iterdir())
        if has_cae and has_dgex:
            raise InputFileError(
                directory, "holds both the D-GEX (X/Y) and the CAE (XY) files", "point at one file of the layout to use"
            )
        if not (has_cae or has_dgex):
            raise InputFileError(
                directory,
                "holds no D-GEX (bgedv2_X_tr_float64.npy ...) or CAE (bgedv2_XY_tr_float32.npy ...) files",
            )
        layout = "cae" if has_cae else "dgex"
    parts, splits = [], []
    for short, split in SPLIT_NAMES.items():
        part = _cae_part(directory, short) if layout == "cae" else _dgex_part(directory, short)
        if part is not None:
            parts.append(part)
            splits.append((split, part.shape[0]))
    if not parts:
        raise InputFileError(directory, f"no complete split of the {layout.upper()} layout found")
    genes = dgex_gene_map()
    split_labels = np.concatenate([np.repeat(name, n) for name, n in splits])
    obs_names = np.concatenate([[f"{name}_{i}" for i in range(n)] for name, n in splits])
    obs = pd.DataFrame(
        {"split": pd.Categorical(split_labels, categories=list(SPLIT_NAMES.values()))}, index=obs_names
    )
    logger.info("%s: %s layout, splits %s", directory, layout.upper(), dict(splits))
    return MatrixSource(
        directory,
        StackedRows(parts),
        obs_names=obs_names,
        var_names=genes.index,
        var=genes[["symbol", "landmark"]],
        obs=obs,
        feature_kind="gene",
    )


def _cae_part(directory: Path, short: str) -> Any:
    file = _find(directory, f"bgedv2_XY_{short}_float*.npy")
    return None if file is None else _load(file, N_LANDMARKS + N_TARGETS)


def _dgex_part(directory: Path, short: str) -> Any:
    x_file = _find(directory, f"bgedv2_X_{short}_float*.npy")
    y_files = [_find(directory, f"bgedv2_Y_{short}_{half}_float*.npy") for half in TARGET_HALVES]
    if x_file is None and not any(y_files):
        return None
    if x_file is None or not all(y_files):
        missing = [name for name, f in zip(["X", *TARGET_HALVES], [x_file, *y_files], strict=True) if f is None]
        raise InputFileError(directory, f"split {SPLIT_NAMES[short]!r} lacks its {missing} file(s)")
    x = _load(x_file, N_LANDMARKS)
    halves = [_load(f, N_TARGETS // 2) for f in y_files]  # type: ignore[arg-type]
    for file, half in zip(y_files, halves, strict=True):
        if half.shape[0] != x.shape[0]:
            raise InputFileError(file, f"has {half.shape[0]} samples but {x_file.name} has {x.shape[0]}")
    return SideBySideRows([x, *halves])
