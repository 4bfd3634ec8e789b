"""Gene universes and probe -> gene averaging.

The D-GEX universe (Chen et al. 2016) is 943 landmark genes then 9,520 target genes,
each with the GPL96 (HG-U133A) probe ids whose values D-GEX averages into the gene.
445 Ensembl genes appear twice, once as a landmark (the L1000 probe) and once as a
target (the gene's other probes); the target copy gets the id ``<ensembl>-target`` so
that ``gene_id`` stays unique, and ``ensembl_id`` keeps the plain Ensembl id.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genesel.errors import InputFileError
from genesel.io.source import N_EXAMPLES, MappedRows, MatrixSource

logger = logging.getLogger(__name__)

#: Appended to the Ensembl id of a target gene that is also a landmark gene.
DUPLICATE_TARGET_SUFFIX = "-target"

#: Affymetrix probe-set ids: ``202954_at``, ``201763_s_at``, ``AFFX-BioB-5_at``, ``..._st``.
PROBE_ID_PATTERN = re.compile(r"^(AFFX-[\w.-]+|\d+(_[a-z]+)*_(at|st))$", re.IGNORECASE)
#: Ensembl gene ids, with an optional version.
ENSEMBL_ID_PATTERN = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")

#: Columns of ``var`` that may hold gene symbols, in order of preference.
SYMBOL_COLUMNS = ("symbol", "gene_symbol", "gene_symbols", "feature_name", "gene_name", "Symbol")
#: Columns of ``var`` that may flag the L1000 landmark genes, in order of preference (CMap's
#: gene info calls it ``pr_is_lm``).
LANDMARK_COLUMNS = (
    "landmark",
    "l1000_landmark",
    "is_landmark",
    "pr_is_lm",
    "is_lm",
    "lm",
    "landmark_gene",
)
#: Columns of ``var`` that may hold Entrez gene ids, in order of preference (CMap: ``pr_gene_id``).
ENTREZ_COLUMNS = (
    "entrez_id",
    "entrez",
    "entrezgene",
    "entrez_gene_id",
    "entrezgene_id",
    "pr_gene_id",
    "gene_id",
)
#: Values of a landmark column read as true (case-insensitive); numbers count when non-zero.
TRUE_WORDS = ("true", "t", "yes", "y", "1", "1.0")
#: An Entrez gene id: digits only.
ENTREZ_ID_PATTERN = re.compile(r"^\d+$")


def _read_map_table(source: Any, landmark: bool, where: str) -> pd.DataFrame:
    table = pd.read_csv(
        source, sep="\t", header=None, dtype=str, comment="#", keep_default_na=False
    )
    if table.shape[1] < 3:
        raise InputFileError(
            where,
            f"a gene map needs 3 tab-separated columns (symbol, gene id, probe ids), found {table.shape[1]}",
        )
    table = table.iloc[:, :4] if table.shape[1] >= 4 else table.iloc[:, :3]
    frame = pd.DataFrame(
        {
            "symbol": table.iloc[:, 0].str.strip(),
            "ensembl_id": table.iloc[:, 1].str.strip(),
            "probes": [
                tuple(p.strip() for p in cell.split(",") if p.strip()) for cell in table.iloc[:, 2]
            ],
            "landmark": (
                table.iloc[:, 3].str.strip().str.lower().isin(["true", "1", "yes"]).to_numpy()
                if table.shape[1] >= 4
                else np.full(len(table), landmark)
            ),
        }
    )
    return frame


def _finish_map(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Sort landmarks first, make ``gene_id`` unique and check probes are not shared."""
    frame = pd.concat([frame[frame["landmark"]], frame[~frame["landmark"]]], ignore_index=True)
    gene_id = frame["ensembl_id"].copy()
    repeated_target = gene_id.duplicated(keep="first") & ~frame["landmark"]
    gene_id[repeated_target] = gene_id[repeated_target] + DUPLICATE_TARGET_SUFFIX
    frame.index = pd.Index(gene_id, name="gene_id")
    if not frame.index.is_unique:
        dup = frame.index[frame.index.duplicated()].unique()
        raise InputFileError(where, f"gene ids occur more than once: {list(dup[:N_EXAMPLES])}")
    probes = pd.Series([p for ps in frame["probes"] for p in ps])
    if probes.duplicated().any():
        dup = probes[probes.duplicated()].unique()
        raise InputFileError(
            where, f"probe ids belong to more than one gene: {list(dup[:N_EXAMPLES])}"
        )
    frame["landmark"] = frame["landmark"].astype(bool)
    return frame


@functools.cache
def _dgex_gene_map() -> pd.DataFrame:
    data = resources.files("genesel") / "data"
    parts = []
    for name, landmark in (("dgex_map_lm.txt", True), ("dgex_map_tg.txt", False)):
        with (data / name).open("r") as handle:
            parts.append(_read_map_table(handle, landmark, f"genesel/data/{name}"))
    return _finish_map(pd.concat(parts, ignore_index=True), "genesel/data/dgex_map_*.txt")


def dgex_gene_map() -> pd.DataFrame:
    """Return the D-GEX gene universe in D-GEX order (943 landmarks, then 9,520 targets).

    Returns
    -------
    DataFrame indexed by ``gene_id`` (the Ensembl id; ``<ensembl>-target`` for the target
    copy of a landmark gene) with columns ``symbol``, ``ensembl_id``, ``probes`` (tuple of
    GPL96 probe ids) and ``landmark`` (bool).
    """
    return _dgex_gene_map().copy()


def read_gene_map(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a probe -> gene map in the D-GEX layout from a tab-separated file.

    Columns: symbol, gene id, comma-separated probe ids, and optionally a landmark flag
    (``true``/``false``; without it no gene is a landmark). Landmarks are moved first.
    Returns the same frame as :func:`dgex_gene_map`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "gene map file not found")
    return _finish_map(_read_map_table(path, False, str(path)), str(path))


def resolve_gene_map(gene_map: str | os.PathLike[str] | pd.DataFrame | None) -> pd.DataFrame:
    """Return ``gene_map`` as a map frame: ``None`` is D-GEX, a path is read, a frame is kept."""
    if gene_map is None:
        return dgex_gene_map()
    if isinstance(gene_map, pd.DataFrame):
        missing = {"symbol", "probes", "landmark"} - set(gene_map.columns)
        if missing:
            raise ValueError(f"gene map frame lacks columns {sorted(missing)}")
        return gene_map
    return read_gene_map(gene_map)


@functools.cache
def _l1000_landmarks() -> pd.DataFrame:
    with (resources.files("genesel") / "data" / "l1000_landmarks_978.tsv").open("r") as handle:
        return pd.read_csv(handle, sep="\t", dtype={"entrez_id": str, "symbol": str})


def l1000_landmarks() -> pd.DataFrame:
    """Return the official 978 L1000 landmark genes.

    Columns ``entrez_id``, ``symbol`` (the LINCS 2016 symbol) and ``symbol_current`` (the
    symbol of the Entrez id in org.Hs.eg.db 3.16; 47 landmarks were renamed since, e.g.
    AARS -> AARS1, CD97 -> ADGRE5).
    """
    return _l1000_landmarks().copy()


def flag_l1000_landmarks(
    symbols: Iterable[Any], entrez_ids: Iterable[Any] | None = None
) -> np.ndarray:
    """Return a bool array: which genes are L1000 landmark genes.

    A gene with an Entrez id (``entrez_ids``; empty or non-numeric entries count as unknown)
    is a landmark iff that id is one. A gene without one is matched by symbol
    (case-insensitive): first against the landmarks' current symbols, then against their
    2016 symbols for the landmarks not found yet, so that a landmark renamed since 2016 is
    found under its new name and its old symbol, should another gene now bear it, is not
    taken for it.
    """
    table = _l1000_landmarks()
    symbols = [str(s).strip().upper() for s in symbols]
    entrez = [""] * len(symbols) if entrez_ids is None else [_entrez_text(e) for e in entrez_ids]
    if len(entrez) != len(symbols):
        raise ValueError(f"{len(symbols)} symbols but {len(entrez)} Entrez ids")
    flags = np.zeros(len(symbols), dtype=bool)
    landmark_ids = set(table["entrez_id"].astype(str))
    found: set[str] = set()  # landmarks (Entrez ids) already matched
    for i, gene in enumerate(entrez):
        if gene and gene in landmark_ids:
            flags[i] = True
            found.add(gene)
    for column in ("symbol_current", "symbol"):
        if column not in table.columns:
            continue
        by_symbol = dict(
            zip(table[column].str.upper(), table["entrez_id"].astype(str), strict=True)
        )
        matched = set()
        for i, symbol in enumerate(symbols):
            landmark = by_symbol.get(symbol)
            if not entrez[i] and not flags[i] and landmark is not None and landmark not in found:
                flags[i] = True
                matched.add(landmark)
        found |= matched
    return flags


def _entrez_text(value: Any) -> str:
    """An Entrez id as digits (``"16"``, ``16``, ``16.0``), or ``""`` when unknown."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    return text if ENTREZ_ID_PATTERN.match(text) else ""


def landmark_column(var: pd.DataFrame) -> str | None:
    """The column of ``var`` that flags landmarks (see :data:`LANDMARK_COLUMNS`), if any."""
    lowered = {str(c).lower(): c for c in var.columns}
    return next((lowered[name] for name in LANDMARK_COLUMNS if name in lowered), None)


def read_flags(values: pd.Series) -> np.ndarray:
    """A landmark column as booleans: bools as they are, numbers non-zero, words in :data:`TRUE_WORDS`."""
    if pd.api.types.is_bool_dtype(values):
        return values.fillna(False).astype(bool).to_numpy()
    if pd.api.types.is_numeric_dtype(values):
        return values.fillna(0).to_numpy() != 0
    return values.astype(str).str.strip().str.lower().isin(TRUE_WORDS).to_numpy()


def entrez_ids_of(var_names: pd.Index, var: pd.DataFrame) -> pd.Series | None:
    """Entrez ids from an Entrez column (:data:`ENTREZ_COLUMNS`) or numeric var names, or None."""
    lowered = {str(c).lower(): c for c in var.columns}
    for name in ENTREZ_COLUMNS:
        if name in lowered:
            values = pd.Series([_entrez_text(v) for v in var[lowered[name]]], index=var_names)
            if (values != "").mean() > 0.5:
                return values
    names = pd.Series([_entrez_text(v) for v in var_names], index=var_names)
    return names if (names != "").mean() > 0.5 else None


def symbols_of(var_names: pd.Index, var: pd.DataFrame) -> pd.Series:
    """Return gene symbols for ``var``: a symbol column if there is one, else the names."""
    for column in SYMBOL_COLUMNS:
        if column in var.columns:
            return var[column].astype(str).set_axis(var_names)
    return pd.Series(np.asarray(var_names, dtype=str), index=var_names)


def annotate_genes(var_names: pd.Index, var: pd.DataFrame) -> pd.DataFrame:
    """Return ``symbol`` and ``landmark`` for gene-level features.

    A landmark column already in ``var`` (``landmark``, ``l1000_landmark``, ``is_landmark``,
    ``pr_is_lm``, ...; see :data:`LANDMARK_COLUMNS`) is kept; else genes of the D-GEX
    universe (matched by ``gene_id``) take its landmark flag; else landmarks are the L1000
    genes matched by Entrez id (an Entrez column or numeric var names), then by current
    symbol, then by 2016 symbol (:func:`flag_l1000_landmarks`).
    """
    symbols = symbols_of(var_names, var)
    column = landmark_column(var)
    if column is not None:
        landmark = read_flags(var[column])
        logger.info(
            "landmarks: %d genes flagged by the input's %r column", int(landmark.sum()), column
        )
    else:
        universe = _dgex_gene_map()
        known = var_names.isin(universe.index)
        if known.mean() > 0.5:
            landmark = (
                universe["landmark"].reindex(var_names).fillna(False).astype(bool).to_numpy()
            )
            symbols = universe["symbol"].reindex(var_names).fillna(symbols)
        else:
            entrez = entrez_ids_of(var_names, var)
            landmark = flag_l1000_landmarks(symbols, None if entrez is None else entrez.to_numpy())
    return pd.DataFrame({"symbol": symbols.to_numpy(), "landmark": landmark}, index=var_names)


def count_known_ids(
    ids: Sequence[Any] | np.ndarray, gene_map: pd.DataFrame | None = None
) -> tuple[int, int]:
    """Count how many ``ids`` look like probe ids and how many look like gene ids.

    Probes: in the map's probe ids or shaped like Affymetrix probe sets. Genes: a map
    ``gene_id``/Ensembl id/symbol, an L1000 symbol, or shaped like an Ensembl id.
    """
    gene_map = _dgex_gene_map() if gene_map is None else gene_map
    names = pd.Index(np.asarray(ids).astype(str))
    probes = {p for ps in gene_map["probes"] for p in ps}
    is_probe = names.isin(list(probes)) | np.array(
        [bool(PROBE_ID_PATTERN.match(i)) for i in names], dtype=bool
    )
    gene_names = set(gene_map.index) | set(gene_map["symbol"].str.upper())
    if "ensembl_id" in gene_map.columns:
        gene_names |= set(gene_map["ensembl_id"])
    gene_names |= set(_l1000_landmarks()["symbol"].str.upper())
    upper = names.str.upper()
    is_gene = upper.isin(list(gene_names)) | names.isin(list(gene_names))
    is_gene |= np.array([bool(ENSEMBL_ID_PATTERN.match(i)) for i in names], dtype=bool)
    return int(is_probe.sum()), int((is_gene & ~is_probe).sum())


def detect_feature_kind(
    ids: Sequence[Any] | np.ndarray, gene_map: pd.DataFrame | None = None
) -> str:
    """Return ``"probe"`` when most ``ids`` look like probe ids, else ``"gene"``."""
    n_probe, n_gene = count_known_ids(ids, gene_map)
    return "probe" if n_probe > max(n_gene, len(ids) // 2) else "gene"


@dataclass(frozen=True)
class ProbeAveraging:
    """A probe -> gene averaging of a source's columns.

    Attributes
    ----------
    matrix
        Sparse (n source probes x n genes) float64: ``block @ matrix`` averages probes.
    genes
        The genes kept, in map order, indexed by ``gene_id``: ``symbol``, ``landmark``,
        ``n_probes`` (probes present and averaged).
    missing_genes
        Map genes with none of their probes in the source (dropped).
    n_unmatched_probes
        Source probes that belong to no map gene (ignored).
    """

    matrix: sp.csr_matrix
    genes: pd.DataFrame
    missing_genes: pd.Index
    n_unmatched_probes: int


def probe_averaging(
    probe_ids: Sequence[Any],
    gene_map: pd.DataFrame | None = None,
    *,
    path: str | os.PathLike[str] = "<input>",
) -> ProbeAveraging:
    """Build the sparse matrix that averages a source's probes into the map's genes.

    Parameters
    ----------
    probe_ids
        The source's feature ids (columns), in order.
    gene_map
        A map frame (see :func:`dgex_gene_map`); ``None`` is the D-GEX map.
    path
        The source file, named in errors.

    Raises
    ------
    InputFileError
        If no probe of the source belongs to any gene of the map.
    """
    gene_map = _dgex_gene_map() if gene_map is None else gene_map
    column_of = {str(p): i for i, p in enumerate(probe_ids)}
    rows, cols, weights, n_probes = [], [], [], []
    kept: list[int] = []
    for gene_index, probes in enumerate(gene_map["probes"]):
        present = [column_of[p] for p in probes if p in column_of]
        if not present:
            continue
        gene_column = len(kept)
        kept.append(gene_index)
        n_probes.append(len(present))
        rows.extend(present)
        cols.extend([gene_column] * len(present))
        weights.extend([1.0 / len(present)] * len(present))
    if not kept:
        raise InputFileError(
            path,
            f"none of the {len(column_of)} feature ids is a probe of the {len(gene_map)}-gene map, "
            f"e.g. {list(column_of)[:N_EXAMPLES]}",
            "use GPL96 (HG-U133A) probe ids, pass a matching probe_map, or gene-level data",
        )
    matrix = sp.csr_matrix(
        (weights, (rows, cols)), shape=(len(column_of), len(kept)), dtype=np.float64
    )
    genes = gene_map.iloc[kept][["symbol", "landmark"]].copy()
    genes["n_probes"] = np.asarray(n_probes, dtype=np.int64)
    missing = gene_map.index[np.setdiff1d(np.arange(len(gene_map)), kept)]
    used = np.zeros(len(column_of), dtype=bool)
    used[rows] = True
    n_unmatched = int((~used).sum())
    logger.info(
        "%s: %d probes averaged into %d genes (%d landmarks); %d probes belong to no gene",
        path,
        int(used.sum()),
        len(kept),
        int(genes["landmark"].sum()),
        n_unmatched,
    )
    if len(missing):
        logger.warning(
            "%s: %d of %d genes have none of their probes in the data and are dropped, e.g. %s",
            path,
            len(missing),
            len(gene_map),
            list(missing[:N_EXAMPLES]),
        )
    return ProbeAveraging(
        matrix=matrix, genes=genes, missing_genes=missing, n_unmatched_probes=n_unmatched
    )


def average_probes(source: MatrixSource, gene_map: pd.DataFrame | None = None) -> MatrixSource:
    """Return a gene-level view of a probe-level ``source`` (probes averaged per gene).

    The view reads lazily: each row block of probes becomes genes by one sparse product.
    Closing the view closes ``source``.
    """
    if source.feature_kind != "probe":
        raise ValueError(f"{source.path}: the features are already genes")
    gene_map = gene_map if gene_map is not None else source.gene_map
    averaging = probe_averaging(source.var_names, gene_map, path=source.path)
    dtype = np.float32 if np.dtype(source.data.dtype) == np.float32 else np.float64
    matrix = averaging.matrix

    def to_genes(block: np.ndarray) -> np.ndarray:
        return np.asarray(block @ matrix, dtype=dtype)

    return MatrixSource(
        source.path,
        MappedRows(source.data, to_genes, matrix.shape[1], dtype),
        obs_names=source.obs_names,
        var_names=averaging.genes.index,
        var=averaging.genes,
        obs=source.obs,
        feature_kind="gene",
        uns=source.uns,
        on_close=[source.close],
    )
