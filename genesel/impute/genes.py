"""Find panel genes among the genes of a store or of new data, by gene id or symbol.

Pure functions over name lists: they return column indices or raise an error that
names every gene that could not be found.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from genesel.errors import ConfigError, InputFileError

logger = logging.getLogger(__name__)

#: ``var`` columns of new data that may hold gene ids, besides ``var_names``.
ID_COLUMNS = ("gene_id", "gene_ids", "ensembl_id", "ensembl", "gene_ensembl", "entrez_id")
#: ``var`` columns of new data that may hold gene symbols (``pr_gene_symbol``: CMap's GCTX row field).
SYMBOL_COLUMNS = (
    "symbol",
    "gene_symbol",
    "gene_symbols",
    "feature_name",
    "gene_name",
    "Symbol",
    "pr_gene_symbol",
)
#: How :func:`locate_columns` found a gene, by its stage code.
MATCH_STAGES = ("gene_id", "symbol", "symbol ignoring case")
#: How many missing genes an error message lists before abbreviating.
MAX_LISTED = 25
#: Gene names as the matching functions accept them: a list, an array or a pandas Index.
Names: TypeAlias = Sequence[str] | np.ndarray | pd.Index


def panel_gene_ids(panel: Any) -> tuple[list[str] | None, list[int] | None, Path | None]:
    """Normalise the accepted panel forms to gene names or column indices.

    Parameters
    ----------
    panel
        A ``panel.tsv`` path (or a directory holding one), a table from
        :func:`genesel.panel.read_panel` (``gene_id`` column), an object with a
        ``gene_ids`` attribute (:class:`~genesel.panel.PanelResult`), a sequence of
        gene ids/symbols, or a sequence of integer column indices.

    Returns
    -------
    names, indices, path
        Exactly one of ``names`` and ``indices`` is set; ``path`` is the panel file, if any.
    """
    if isinstance(panel, str | os.PathLike):
        from genesel.panel import read_panel

        path = Path(panel)
        table = read_panel(path)
        return (
            table["gene_id"].astype(str).tolist(),
            None,
            path / "panel.tsv" if path.is_dir() else path,
        )
    if isinstance(panel, pd.DataFrame):
        column = panel["gene_id"] if "gene_id" in panel.columns else panel.index.to_series()
        return column.astype(str).tolist(), None, None
    if hasattr(panel, "gene_ids"):
        return [str(g) for g in panel.gene_ids], None, None
    items = list(panel)
    if not items:
        raise ConfigError("the panel is empty; give at least one gene")
    if all(isinstance(g, int | np.integer) for g in items):
        return None, [int(g) for g in items], None
    return [str(g) for g in items], None, None


def resolve_panel(panel: Any, var: pd.DataFrame) -> np.ndarray:
    """Return the column indices of ``panel``'s genes in a store's ``var``.

    Genes are looked up by gene id (``var.index``), then by ``var["symbol"]`` when the
    symbol is unique. Order is kept; duplicates and unknown genes are errors.
    """
    names, indices, path = panel_gene_ids(panel)
    n_genes = len(var)
    if indices is not None:
        bad = [i for i in indices if not 0 <= i < n_genes]
        if bad:
            raise ConfigError(
                f"panel column indices {bad[:MAX_LISTED]} are outside 0..{n_genes - 1}"
            )
        result = np.asarray(indices, dtype=np.int64)
    else:
        assert names is not None  # panel_gene_ids gives names whenever it gives no indices
        lookup = _first_position(var.index.astype(str))
        symbols = _unique_positions(var["symbol"].astype(str)) if "symbol" in var.columns else {}
        result = np.empty(len(names), dtype=np.int64)
        missing = []
        for k, name in enumerate(names):
            position = lookup.get(name, symbols.get(name))
            if position is None:
                missing.append(name)
            else:
                result[k] = position
        if missing:
            problem = f"{len(missing)} of {len(names)} panel genes are not in the data: {_listing(missing)}"
            hint = "select the panel on the same store, or pass gene ids that are in the store's var_names"
            if path is not None:
                raise InputFileError(path, problem, hint)
            raise ConfigError(f"{problem} ({hint})")
    if len(np.unique(result)) != len(result):
        repeated = pd.Index(result).duplicated()
        raise ConfigError(
            f"the panel names some genes twice: {_listing(var.index[result[repeated]].astype(str).tolist())}"
        )
    if len(result) >= n_genes:
        raise ConfigError(
            f"the panel has {len(result)} genes but the data only {n_genes}; nothing is left to impute"
        )
    return result


@dataclass(frozen=True)
class ColumnMatch:
    """Where each of a list of genes sits among the columns of some data.

    Attributes
    ----------
    columns
        Column of each gene; ``-1`` when not found, ``-2`` when several columns match.
    stages
        How each gene was found: an index into :data:`MATCH_STAGES` (``-1`` when not found).
    ambiguous
        ``"SYMBOL (ID) in columns [...]"`` for every gene that several columns match.
    """

    columns: np.ndarray
    stages: np.ndarray
    ambiguous: list[str]

    @property
    def found(self) -> np.ndarray:
        """Boolean mask of the genes found in exactly one column."""
        return self.columns >= 0

    def counts(self) -> dict[str, int]:
        """Genes found at each stage, by stage name."""
        return {name: int((self.stages == k).sum()) for k, name in enumerate(MATCH_STAGES)}


def locate_columns(
    gene_ids: Names,
    symbols: Names,
    var_names: Names,
    var: pd.DataFrame | None = None,
    *,
    source: str | os.PathLike[str] = "<input>",
) -> ColumnMatch:
    """Find genes among the columns of data, by gene id, then symbol, then symbol ignoring case.

    A gene matches a column whose name (``var_names`` or an id column of ``var``, see
    :data:`ID_COLUMNS`) equals its id; failing that, a column whose name or symbol column
    (:data:`SYMBOL_COLUMNS`) equals its symbol, first exactly, then ignoring case. Unlike
    :func:`match_columns` it raises only for repeated column names, and reports the genes it
    could not place in the result.
    """
    columns = pd.Index(np.asarray(var_names).astype(str))
    if not columns.is_unique:
        repeated = columns[columns.duplicated()].unique().tolist()
        raise InputFileError(
            source,
            f"{len(repeated)} column name(s) occur more than once: {_listing(repeated)}",
            "give one column per gene (average repeated probes first, e.g. with genesel preprocess)",
        )
    id_sources = [columns] + _columns(var, ID_COLUMNS)
    symbol_sources = [columns] + _columns(var, SYMBOL_COLUMNS)
    result = np.full(len(gene_ids), -1, dtype=np.int64)
    stage_of = np.full(len(gene_ids), -1, dtype=np.int64)
    ambiguous: list[str] = []
    stages = (
        (id_sources, gene_ids, False),
        (symbol_sources, symbols, False),
        (symbol_sources, symbols, True),
    )
    for stage, (sources, keys, fold) in enumerate(stages):
        todo = np.flatnonzero(result == -1)
        if not todo.size:
            break
        for names in sources:
            positions = _positions(names, fold=fold)
            for k in todo.tolist():
                if result[k] != -1:
                    continue
                key = str(keys[k]).upper() if fold else str(keys[k])
                found = positions.get(key)
                if found is None or key in ("", "NAN"):
                    continue
                if len(found) > 1:
                    ambiguous.append(
                        f"{symbols[k]} ({gene_ids[k]}) in columns {[str(columns[i]) for i in found[:3]]}"
                    )
                    result[k] = -2
                else:
                    result[k] = found[0]
                    stage_of[k] = stage
    return ColumnMatch(result, stage_of, ambiguous)


def match_columns(
    panel_ids: Names,
    panel_symbols: Names,
    var_names: Names,
    var: pd.DataFrame | None = None,
    *,
    source: str | os.PathLike[str] = "<input>",
) -> np.ndarray:
    """Find each panel gene among the columns of new data.

    A panel gene matches a column whose name (``var_names`` or an id column of ``var``)
    equals its gene id; failing that, a column whose name or symbol column equals its
    symbol, first exactly, then ignoring case. Extra columns are ignored.

    Returns
    -------
    The column index of every panel gene, in panel order.

    Raises
    ------
    InputFileError
        Naming every panel gene that is missing, or matched by several columns.
    """
    match = locate_columns(panel_ids, panel_symbols, var_names, var, source=source)
    require_panel(match, panel_ids, panel_symbols, source=source, var_names=var_names)
    counts = match.counts()
    if counts["gene_id"] < len(panel_ids):
        logger.info(
            "%s: panel genes found by %s",
            source,
            ", ".join(f"{name}: {n}" for name, n in counts.items() if n),
        )
    return match.columns


def require_panel(
    match: ColumnMatch,
    panel_ids: Names,
    panel_symbols: Names,
    *,
    source: str | os.PathLike[str],
    var_names: Names | None = None,
    hint: str = "the input must measure every panel gene; columns are matched by gene id or symbol",
) -> None:
    """Raise an :class:`InputFileError` naming the panel genes ``match`` did not place once.

    With ``var_names``, a matched column ``G`` beside ``G.1`` (pandas' name for a second ``G``
    column) is refused too.
    """
    if match.ambiguous:
        raise InputFileError(
            source,
            f"{len(match.ambiguous)} panel genes match several columns: {'; '.join(match.ambiguous[:MAX_LISTED])}",
            "give one column per gene (average probes into genes first, e.g. with genesel preprocess)",
        )
    if var_names is not None:
        _check_renamed_duplicates(
            source, match.columns, pd.Index(np.asarray(var_names).astype(str))
        )
    missing = np.flatnonzero(match.columns < 0)
    if missing.size:
        listed = [f"{panel_symbols[k]} ({panel_ids[k]})" for k in missing.tolist()]
        raise InputFileError(
            source,
            f"{missing.size} of {len(panel_ids)} panel genes are missing: {_listing(listed)}",
            hint,
        )


def _check_renamed_duplicates(
    source: str | os.PathLike[str], result: np.ndarray, var_names: pd.Index
) -> None:
    """Refuse a matched column ``G`` next to ``G.1``: pandas' name for a second ``G`` column."""
    present = set(var_names)
    renamed = []
    for position in result[result >= 0]:
        name = str(var_names[position])
        copies = [f"{name}.{k}" for k in range(1, 10) if f"{name}.{k}" in present]
        if copies:
            renamed.append(f"{name} (also {', '.join(copies)})")
    if renamed:
        raise InputFileError(
            source,
            f"{len(renamed)} panel gene column(s) appear to be repeated (pandas renames a second GENE column GENE.1): "
            f"{_listing(renamed)}",
            "give one column per gene; read text tables with genesel, which rejects repeated names",
        )


def _columns(var: pd.DataFrame | None, names: Sequence[str]) -> list[pd.Index]:
    if var is None:
        return []
    return [pd.Index(var[c].astype(str).to_numpy()) for c in names if c in var.columns]


def _positions(names: pd.Index, *, fold: bool) -> dict[str, list[int]]:
    keys = names.str.upper() if fold else names
    positions: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        positions.setdefault(str(key), []).append(i)
    return positions


def _first_position(names: pd.Index) -> dict[str, int]:
    positions: dict[str, int] = {}
    for i, name in enumerate(names):
        positions.setdefault(name, i)
    return positions


def _unique_positions(names: pd.Series) -> dict[str, int]:
    counts = names.value_counts()
    return {name: i for i, name in enumerate(names) if counts[name] == 1}


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown if len(items) <= MAX_LISTED else f"{shown}, ... ({len(items) - MAX_LISTED} more)"
