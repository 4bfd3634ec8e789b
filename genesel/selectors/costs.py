"""Per-gene costs and budgets: read a cost table, one cost per store gene, the most genes a budget buys.

:func:`resolve_costs` turns a cost table (a TSV file with columns ``gene`` and ``cost``, a
:class:`pandas.Series` or a dict) into one cost per store gene; genes are matched like gene
lists (:mod:`genesel.selectors.gene_lists`). :func:`genesel.selectors.constraints.resolve_constraints`
checks the budget against them (see docs/methods.md, "Costs and budgets").
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from genesel.errors import ConfigError, GeneselError, InputFileError
from genesel.selectors.gene_lists import named, symbol_groups

logger = logging.getLogger(__name__)

#: Per-gene costs as accepted by :func:`resolve_costs`: a TSV path, or gene -> cost.
CostSpec: TypeAlias = str | os.PathLike[str] | pd.Series | Mapping[str, float] | None
#: Cost of a gene the cost table does not name (``default_cost``).
DEFAULT_COST = 1.0
#: Header names of the gene and cost columns of a cost table, in order of preference.
COST_GENE_COLUMNS = ("gene", "gene_id", "symbol")
COST_COLUMN = "cost"
#: Relative slack on budget comparisons (sums of floats).
BUDGET_RTOL = 1e-9


@dataclass(frozen=True)
class GeneCosts:
    """One cost per store gene, and where the costs came from.

    Attributes
    ----------
    values
        Cost of every store gene (positive, finite), in store order.
    source
        The cost file's path, or ``"series"`` / ``"dict"`` when given in memory.
    sha256
        SHA-256 of the cost file's bytes (of the ``gene<TAB>cost`` lines, sorted, when given
        in memory), recorded so that a panel names the exact costs it was chosen with;
        ``None`` without a cost table (every gene costs ``default_cost``).
    default_cost
        The cost of genes the table does not name.
    """

    values: np.ndarray
    source: str
    sha256: str | None
    default_cost: float = DEFAULT_COST


@dataclass(frozen=True)
class _CostTable:
    """The rows of a cost table before they are checked and matched to the store's genes."""

    names: list[str]
    raw: list[Any]
    rows: list[str]
    source: str
    sha256: str
    path: Path | None = None

    def error(self, problem: str) -> GeneselError:
        """The error of a bad table: naming the file, or the in-memory costs' parameter."""
        if self.path is None:
            return ConfigError(f"gene_cost ({self.source}): {problem}", parameter="gene_cost")
        return InputFileError(
            self.path, problem, "costs must be positive finite numbers, one per gene"
        )


def _table_from_memory(gene_cost: pd.Series | Mapping[str, float]) -> _CostTable:
    """The rows of a Series or dict of costs; the digest is of its sorted ``gene<TAB>cost`` lines."""
    table = (
        pd.Series(gene_cost, dtype=object)
        if isinstance(gene_cost, Mapping)
        else gene_cost.astype(object)
    )
    names = [str(name).strip() for name in table.index]
    raw = table.tolist()
    source = "series" if isinstance(gene_cost, pd.Series) else "dict"
    text = "\n".join(sorted(f"{name}\t{value}" for name, value in zip(names, raw, strict=True)))
    return _CostTable(names, raw, names, source, hashlib.sha256(text.encode()).hexdigest())


def _read_cost_table(path: Path) -> _CostTable:
    """The rows of a cost TSV file; the digest is of the file's bytes."""
    try:
        data = path.read_bytes()
        frame = pd.read_csv(
            path, sep="\t", dtype=str, comment="#", skip_blank_lines=True, keep_default_na=False
        )
    except (
        OSError,
        UnicodeDecodeError,
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
    ) as error:
        raise InputFileError(
            path, f"cannot read the gene cost table ({error})", "a TSV with columns gene and cost"
        ) from None
    columns = {str(c).strip().lower(): c for c in frame.columns}
    gene_column = next((columns[c] for c in COST_GENE_COLUMNS if c in columns), None)
    if gene_column is None or COST_COLUMN not in columns:
        raise InputFileError(
            path,
            f"the gene cost table has columns {list(frame.columns)}",
            "a TSV with a header naming columns gene and cost",
        )
    names = frame[gene_column].astype(str).str.strip().tolist()
    rows = [f"row {i + 2} ({name})" for i, name in enumerate(names)]  # row 1 is the header
    return _CostTable(
        names,
        frame[columns[COST_COLUMN]].tolist(),
        rows,
        str(path),
        hashlib.sha256(data).hexdigest(),
        path,
    )


def resolve_costs(
    var: pd.DataFrame, gene_cost: CostSpec = None, *, default_cost: float = DEFAULT_COST
) -> GeneCosts:
    """One cost per gene of ``var`` from ``gene_cost`` (genes it does not name cost ``default_cost``).

    ``gene_cost`` is a TSV file with a header naming a gene column (``gene``, ``gene_id`` or
    ``symbol``) and a ``cost`` column, a :class:`pandas.Series` (index: genes) or a dict.
    Genes are matched like ``include`` (ids first, then symbols, case-insensitive; a
    symbol naming several genes costs the same for each); genes of the table that are not
    in the data are ignored (a price list may cover more genes), with a log line.

    Raises
    ------
    InputFileError
        A cost file that cannot be read, lacks the columns, or has costs that are not
        positive finite numbers (naming the rows).
    ConfigError
        The same for in-memory costs, or a bad ``default_cost``.
    """
    default_cost = float(default_cost)
    if not (math.isfinite(default_cost) and default_cost > 0):
        raise ConfigError(
            f"default_cost must be a positive finite number, got {default_cost}",
            parameter="default_cost",
        )
    if gene_cost is None:
        values = np.full(len(var), default_cost)
        return GeneCosts(values, "none", None, default_cost)
    table = (
        _table_from_memory(gene_cost)
        if isinstance(gene_cost, pd.Series | Mapping)
        else _read_cost_table(Path(gene_cost))
    )
    parsed = pd.to_numeric(pd.Series(table.raw, dtype=object), errors="coerce").to_numpy(float)
    bad = [
        f"{row}: {value!r}"
        for row, value, number in zip(table.rows, table.raw, parsed, strict=True)
        if not (math.isfinite(number) and number > 0)
    ]
    if bad:
        raise table.error(f"{len(bad)} cost(s) not a positive finite number: {named(bad)}")
    values = _match_costs(var, table, parsed)
    n_default = int(np.isnan(values).sum())
    if n_default:
        logger.info(
            "gene costs: %d of %d genes not in the table cost the default %g",
            n_default,
            values.size,
            default_cost,
        )
    values[np.isnan(values)] = default_cost
    return GeneCosts(values, table.source, table.sha256, default_cost)


def _match_costs(var: pd.DataFrame, table: _CostTable, parsed: np.ndarray) -> np.ndarray:
    """The cost of each gene of ``var`` by the table (NaN where it names none); logs the unknown names."""
    ids = pd.Index(var.index.astype(str))
    position = {name: i for i, name in enumerate(ids)}
    by_symbol = symbol_groups(var)
    values = np.full(len(var), np.nan)
    unknown: list[str] = []
    conflicts: list[str] = []
    for name, cost in zip(table.names, parsed, strict=True):
        matches = [position[name]] if name in position else by_symbol.get(name.upper(), [])
        if not matches:
            unknown.append(name)
        for match in matches:
            if not np.isnan(values[match]) and values[match] != cost:
                conflicts.append(name)
            values[match] = cost
    if conflicts:
        raise table.error(
            f"{len(conflicts)} gene(s) given different costs: {named(list(dict.fromkeys(conflicts)))}"
        )
    if unknown:
        logger.info(
            "gene costs: %d gene(s) of the table are not in the data and are ignored: %s",
            len(unknown),
            named(unknown),
        )
    return values


def max_panel_size(
    costs: np.ndarray, budget: float, *, include: np.ndarray, exclude: np.ndarray
) -> int:
    """The most genes a panel holding ``include`` can have within ``budget`` (cheapest genes first).

    Raises
    ------
    ConfigError
        The included genes alone cost more than ``budget``.
    """
    spent = float(costs[include].sum())
    limit = budget * (1.0 + BUDGET_RTOL)
    if spent > limit:
        raise ConfigError(
            f"the {include.size} included genes cost {spent:g} in all, more than the budget {budget:g}; raise the budget or include fewer genes",
            parameter="budget",
        )
    pool = np.ones(costs.size, dtype=bool)
    pool[include] = False
    pool[exclude] = False
    cheapest = np.cumsum(np.sort(costs[pool]))
    return int(include.size + np.searchsorted(cheapest, limit - spent, side="right"))


def check_budget(budget: float) -> float:
    """``budget`` as a positive finite float (:class:`ConfigError` otherwise)."""
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise ConfigError(
            f"budget must be a positive number, got {budget!r}", parameter="budget"
        ) from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(
            f"budget must be a positive finite number, got {budget!r}", parameter="budget"
        )
    return value
