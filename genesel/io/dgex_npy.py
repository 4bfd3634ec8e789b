"""D-GEX and CAE ``.npy`` matrices of the GEO compendium, read as memory maps.

Two layouts, one per paper, both samples x genes in the D-GEX universe order:

- D-GEX: ``bgedv2_X_{tr,va,te}_float64.npy`` (943 landmarks) and
  ``bgedv2_Y_{tr,va,te}_{0-4760,4760-9520}_float64.npy`` (the 9,520 targets in two halves);
- CAE: ``bgedv2_XY_{tr,va,te}_float32.npy`` (10,463 genes, landmarks first).

The split comes from the file names and is exposed as the ``obs`` column ``split``
(``train``/``validation``/``test``); sample ids are ``<split>_<row>``.

D-GEX's ``bgedv2.py`` shuffled the landmark and the target genes (unseeded) before
writing the matrices, and wrote the order it used to ``bgedv2_GTEx_1000G_lm.txt`` and
``bgedv2_GTEx_1000G_tg.txt`` (Ensembl id, probe indices, probe ids). When these files
sit next to the ``.npy`` files they give the gene of each column; without them the
columns are assumed to follow the map order (``genesel/data/dgex_map_*.txt``), with a
warning.
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

#: D-GEX's record of the (shuffled) gene order of its matrices: landmarks, targets.
GENE_ORDER_FILES = ("bgedv2_GTEx_1000G_lm.txt", "bgedv2_GTEx_1000G_tg.txt")

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
            path,
            f"has shape {array.shape}, expected (samples, {n_columns})",
            "is this the D-GEX/CAE file it is named as?",
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
                directory,
                "holds both the D-GEX (X/Y) and the CAE (XY) files",
                "point at one file of the layout to use",
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
    order = read_gene_order(directory)
    if order is None:
        logger.warning(
            "%s: no %s; assuming the columns follow the D-GEX map order. D-GEX's own bgedv2.py "
            "shuffled the genes and wrote their order to these files: put them next to the .npy files.",
            directory,
            " / ".join(GENE_ORDER_FILES),
        )
    else:
        genes = genes.loc[order]
    split_labels = np.concatenate([np.repeat(name, n) for name, n in splits])
    obs_names = np.concatenate([[f"{name}_{i}" for i in range(n)] for name, n in splits])
    obs = pd.DataFrame(
        {"split": pd.Categorical(split_labels, categories=list(SPLIT_NAMES.values()))},
        index=obs_names,
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


def read_gene_order(directory: Path) -> pd.Index | None:
    """Return the gene ids of the matrix columns from D-GEX's gene order files, if present.

    Each line of ``bgedv2_GTEx_1000G_{lm,tg}.txt`` holds an Ensembl id, probe indices and
    probe ids; genes are matched to the D-GEX map by their probe ids.
    """
    files = [directory / name for name in GENE_ORDER_FILES]
    if not all(f.is_file() for f in files):
        return None
    genes = dgex_gene_map()
    gene_of_probe = {p: gene for gene, probes in genes["probes"].items() for p in probes}
    order = []
    for file, expected in zip(files, (N_LANDMARKS, N_TARGETS), strict=True):
        table = pd.read_csv(file, sep="\t", header=None, dtype=str, keep_default_na=False)
        if len(table) != expected or table.shape[1] < 3:
            raise InputFileError(
                file, f"expected {expected} lines of 3 tab-separated fields, found {table.shape}"
            )
        for line, probes in enumerate(table.iloc[:, 2], start=1):
            matched = {gene_of_probe.get(p.strip()) for p in probes.split(",")}
            if len(matched) != 1 or None in matched:
                raise InputFileError(
                    file, f"line {line}: probes {probes!r} do not name one D-GEX gene"
                )
            order.append(matched.pop())
    index = pd.Index(order, name="gene_id")
    if not index.is_unique or set(index[:N_LANDMARKS]) != set(genes.index[genes["landmark"]]):
        raise InputFileError(
            files[0], "the gene order files do not list each D-GEX landmark and target once"
        )
    return index


def _cae_part(directory: Path, short: str) -> Any:
    file = _find(directory, f"bgedv2_XY_{short}_float*.npy")
    return None if file is None else _load(file, N_LANDMARKS + N_TARGETS)


def _dgex_part(directory: Path, short: str) -> Any:
    x_file = _find(directory, f"bgedv2_X_{short}_float*.npy")
    y_files = [_find(directory, f"bgedv2_Y_{short}_{half}_float*.npy") for half in TARGET_HALVES]
    if x_file is None and not any(y_files):
        return None
    if x_file is None or not all(y_files):
        missing = [
            name
            for name, f in zip(["X", *TARGET_HALVES], [x_file, *y_files], strict=True)
            if f is None
        ]
        raise InputFileError(
            directory, f"split {SPLIT_NAMES[short]!r} lacks its {missing} file(s)"
        )
    y_paths = [f for f in y_files if f is not None]  # all there: checked above
    x = _load(x_file, N_LANDMARKS)
    halves = [_load(f, N_TARGETS // 2) for f in y_paths]
    for file, half in zip(y_paths, halves, strict=True):
        if half.shape[0] != x.shape[0]:
            raise InputFileError(
                file, f"has {half.shape[0]} samples but {x_file.name} has {x.shape[0]}"
            )
    return SideBySideRows([x, *halves])
