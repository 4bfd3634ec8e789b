"""Genes a panel must contain (``include``) or must not contain (``exclude``).

A lab rarely designs a panel from nothing: it already measures some genes (the L1000
landmarks, a vendor's fixed panel) and cannot probe others. :func:`resolve_constraints`
turns the user's gene lists into store column indices, checked against the panel size;
every selector then honours them natively (see docs/methods.md, "Include and exclude"),
and the panel's ``n_genes`` counts the included genes.

A gene list is given as

- ``None`` or an empty list: no constraint;
- the word ``"landmarks"``: the genes flagged ``var["landmark"]``;
- a path of a text file: one gene per line (``#`` comments allowed), or a table with a
  header naming a ``gene_id``, ``gene``, ``symbol`` or ``entrez_id`` column (a ``panel.tsv``
  written by ``genesel select`` works as it is);
- a comma-separated string, or a sequence of strings.

Genes are matched by id (the store's ``var_names``) first, then by symbol (``var["symbol"]``,
case-insensitive).

Costs and budgets follow the same path: :func:`resolve_costs` turns a cost table (a TSV
file with columns ``gene`` and ``cost``, a :class:`pandas.Series` or a dict) into one cost per
store gene, and :func:`resolve_constraints` checks the budget and stores both on the
:class:`GeneConstraints` every selector receives. :meth:`GeneConstraints.fitting` says which
candidates still fit; every budget-aware method chooses only among them (see
docs/methods.md, "Costs and budgets").
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genesel.errors import ConfigError, InputFileError

logger = logging.getLogger(__name__)

#: The word that stands for the store's landmark genes in an include or exclude list.
LANDMARKS_WORD = "landmarks"
#: Header names of the gene column in an include/exclude table file, in order of preference.
GENE_LIST_COLUMNS = ("gene_id", "gene", "symbol", "entrez_id")
#: How many offending genes an error message names.
N_NAMED = 10

#: A gene list as accepted by :func:`parse_gene_list`.
GeneSpec = str | os.PathLike[str] | Sequence[str] | None
#: Per-gene costs as accepted by :func:`resolve_costs`: a TSV path, or gene -> cost.
CostSpec = str | os.PathLike[str] | pd.Series | Mapping[str, float] | None
#: Cost of a gene the cost table does not name (``--default-cost``).
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
class GeneConstraints:
    """Resolved include and exclude lists (store column indices).

    Attributes
    ----------
    include
        Genes every panel contains, in the order given (they lead the panel).
    exclude
        Genes no panel contains.
    costs
        Per-gene costs (``None``: none given and no budget).
    budget
        Most the panel's genes may cost in all (``None``: no budget).
    exact_size
        With a budget: whether the panel must have exactly ``n_genes`` genes (``n_genes`` was
        asked for) or ``n_genes`` is only the most that fit (only a budget was given).
    n_genes
        The panel size these constraints were checked for.
    """

    include: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    exclude: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    costs: GeneCosts | None = None
    budget: float | None = None
    exact_size: bool = True
    n_genes: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "include", np.asarray(self.include, dtype=np.int64).ravel())
        object.__setattr__(self, "exclude", np.asarray(self.exclude, dtype=np.int64).ravel())

    @property
    def empty(self) -> bool:
        """Whether there is no gene-list constraint (include or exclude) at all."""
        return self.include.size == 0 and self.exclude.size == 0

    @property
    def budgeted(self) -> bool:
        """Whether the panel's total cost must stay within :attr:`budget`."""
        return self.budget is not None

    @property
    def cost(self) -> np.ndarray | None:
        """Per-gene costs (store order), or ``None`` without a cost table or budget."""
        return None if self.costs is None else self.costs.values

    def panel_cost(self, genes: Sequence[int] | np.ndarray) -> float | None:
        """Total cost of ``genes`` (``None`` without costs)."""
        return (
            None
            if self.cost is None
            else float(self.cost[np.asarray(genes, dtype=np.int64)].sum())
        )

    def fitting(self, panel: Sequence[int] | np.ndarray, n_genes: int) -> np.ndarray:
        """Boolean mask of the candidates that may join ``panel`` (store column indices).

        A candidate is neither included, excluded nor in ``panel``. Without a budget every
        candidate fits while the panel has fewer than ``n_genes`` genes. With one, a gene
        fits when the panel's cost plus its own stays within the budget and, when
        :attr:`exact_size` (``n_genes`` was asked for), the cheapest completion to
        ``n_genes`` genes still does; so a panel built from fitting genes always reaches
        ``n_genes`` when the cheapest one can. A gene that does not fit never fits later.
        """
        n_vars = self.cost.size if self.cost is not None else None
        panel = np.asarray(panel, dtype=np.int64)
        if n_vars is None:
            raise ValueError("fitting() needs costs; check budgeted first")
        pool = self.candidate_mask(n_vars)
        pool[panel] = False
        needed = n_genes - panel.size
        if needed <= 0:
            return np.zeros(n_vars, dtype=bool)
        if not self.budgeted:
            return pool
        limit = self.budget * (1.0 + BUDGET_RTOL)
        spent = float(self.cost[panel].sum())
        mask = pool & (spent + self.cost <= limit)
        if self.exact_size and needed > 1:
            indices = np.flatnonzero(pool)
            costs = self.cost[indices]
            order = np.argsort(costs, kind="stable")
            cheapest = np.cumsum(costs[order])
            rank = np.empty(indices.size, dtype=np.int64)
            rank[order] = np.arange(indices.size)
            if indices.size < needed:
                return np.zeros(n_vars, dtype=bool)
            others = cheapest[needed - 2]  # the needed - 1 cheapest candidates
            with_self = cheapest[min(needed, indices.size) - 1]
            total = np.where(rank < needed - 1, spent + with_self, spent + costs + others)
            mask[indices] &= total <= limit
        return mask

    def included_mask(self, n_vars: int) -> np.ndarray:
        """Boolean mask (length ``n_vars``) of the included genes."""
        mask = np.zeros(n_vars, dtype=bool)
        mask[self.include] = True
        return mask

    def excluded_mask(self, n_vars: int) -> np.ndarray:
        """Boolean mask (length ``n_vars``) of the excluded genes."""
        mask = np.zeros(n_vars, dtype=bool)
        mask[self.exclude] = True
        return mask

    def candidate_mask(self, n_vars: int) -> np.ndarray:
        """Genes a method may still choose: neither included (already in) nor excluded."""
        return ~(self.included_mask(n_vars) | self.excluded_mask(n_vars))

    def complete(self, ranking: np.ndarray, n_genes: int) -> np.ndarray:
        """The included genes followed by the best-ranked candidates, ``n_genes`` in all.

        ``ranking`` lists gene indices best first (it may hold included or excluded genes;
        they are skipped).
        """
        ranking = np.asarray(ranking, dtype=np.int64)
        allowed = ~np.isin(ranking, np.concatenate([self.include, self.exclude]))
        if self.budgeted:
            return self.complete_within_budget(ranking[allowed], n_genes)
        chosen = ranking[allowed][: n_genes - self.include.size]
        if self.include.size + chosen.size != n_genes:
            raise ConfigError(
                f"only {chosen.size} candidate genes to complete {self.include.size} included genes to {n_genes}"
            )
        return np.concatenate([self.include, chosen])

    def complete_within_budget(
        self, ranking: np.ndarray, n_genes: int, *, stop_at: int | None = None
    ) -> np.ndarray:
        """The included genes, then the genes of ``ranking`` (best first) taken while they fit.

        Genes that do not fit the budget are skipped; the panel ends at ``n_genes`` genes (or
        ``stop_at``, when another method completes it to ``n_genes`` afterwards) or when no
        gene of ``ranking`` fits any more (it may then be shorter than ``n_genes``).
        """
        panel = self.include.tolist()
        fits = self.fitting(panel, n_genes)
        stop_at = n_genes if stop_at is None else min(stop_at, n_genes)
        for gene in np.asarray(ranking, dtype=np.int64):
            if len(panel) >= stop_at:
                break
            if fits[gene]:
                panel.append(int(gene))
                fits = self.fitting(panel, n_genes)
        return np.asarray(panel, dtype=np.int64)

    def record(self, var: pd.DataFrame) -> dict[str, Any]:
        """The gene ids of both lists (and the cost table and budget), for ``config.json``."""
        ids = var.index.astype(str)
        recorded: dict[str, Any] = {}
        if not self.empty:
            recorded.update(include=ids[self.include].tolist(), exclude=ids[self.exclude].tolist())
        if self.costs is not None:
            recorded.update(
                gene_cost=self.costs.source,
                gene_cost_sha256=self.costs.sha256,
                default_cost=self.costs.default_cost,
            )
        if self.budgeted:
            recorded["budget"] = self.budget
        return recorded

    def fingerprint(self) -> dict[str, Any]:
        """What of these constraints identifies a run (for resuming): lists, cost hash, budget."""
        values: dict[str, Any] = {}
        if not self.empty:
            values.update(include=self.include.tolist(), exclude=self.exclude.tolist())
        if self.costs is not None:
            values.update(gene_cost_sha256=self.costs.sha256, default_cost=self.costs.default_cost)
        if self.budgeted:
            values.update(budget=self.budget, exact_size=self.exact_size)
        return values


def parse_gene_list(spec: GeneSpec, *, what: str = "genes") -> list[str]:
    """The gene names of ``spec`` (see the module docstring), in order, without repeats.

    Raises
    ------
    InputFileError
        A file that cannot be read or holds no gene.
    """
    if spec is None:
        return []
    if isinstance(spec, os.PathLike):
        names = _read_gene_file(Path(spec), what)
    elif isinstance(spec, str):
        text = spec.strip()
        if not text:
            return []
        path = Path(text)
        if text.lower() != LANDMARKS_WORD and "," not in text and path.is_file():
            names = _read_gene_file(path, what)
        else:
            names = [part.strip() for part in text.split(",")]
    else:
        names = [str(part).strip() for part in spec]
    return list(dict.fromkeys(name for name in names if name))


def _read_gene_file(path: Path, what: str) -> list[str]:
    try:
        lines = [line.rstrip("\n") for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot read the {what} list ({error})") from None
    lines = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise InputFileError(
            path, f"the {what} list holds no gene", "one gene id or symbol per line"
        )
    header = [cell.strip().lower() for cell in lines[0].split("\t")]
    column = next((name for name in GENE_LIST_COLUMNS if name in header), None)
    if column is not None:
        position = header.index(column)
        return [
            cells[position].strip()
            for cells in (line.split("\t") for line in lines[1:])
            if len(cells) > position
        ]
    return [line.split("\t")[0].split(",")[0].strip() for line in lines]


def resolve_genes(
    names: Sequence[str], var: pd.DataFrame, *, what: str, prefer_landmarks: bool = True
) -> np.ndarray:
    """Store column indices of ``names`` (ids first, then symbols, case-insensitive).

    The word ``landmarks`` stands for every gene flagged ``var["landmark"]``. A symbol that
    names several genes gives all of them when ``prefer_landmarks`` is false (an exclusion
    removes the gene whatever copy), else its one landmark copy (the D-GEX universe holds 445
    genes twice, as landmark and as target) or an error.

    Raises
    ------
    ConfigError
        Naming the genes that are not in the data, or symbols that stay ambiguous.
    """
    ids = pd.Index(var.index.astype(str))
    position = pd.Series(np.arange(ids.size), index=ids)
    symbols = (
        var["symbol"].astype(str).str.upper()
        if "symbol" in var.columns
        else pd.Series(ids.str.upper(), index=var.index)
    )
    by_symbol = pd.Series(np.arange(ids.size)).groupby(symbols.to_numpy()).apply(list).to_dict()
    landmark = (
        var["landmark"].to_numpy(bool)
        if "landmark" in var.columns
        else np.zeros(ids.size, dtype=bool)
    )
    found: list[int] = []
    unknown: list[str] = []
    ambiguous: list[str] = []
    for name in names:
        if name.lower() == LANDMARKS_WORD and name not in position.index:
            flagged = np.flatnonzero(landmark)
            if flagged.size == 0:
                raise ConfigError(
                    f"{what}: the data has no landmark genes (var['landmark'] is all False), so 'landmarks' names none"
                )
            found.extend(flagged.tolist())
        elif name in position.index:
            found.append(int(position[name]))
        elif name.upper() in by_symbol:
            matches = by_symbol[name.upper()]
            if len(matches) > 1 and prefer_landmarks:
                flagged = [m for m in matches if landmark[m]]
                if len(flagged) != 1:
                    ambiguous.append(name)
                    continue
                matches = flagged
            found.extend(matches)
        else:
            unknown.append(name)
    if unknown:
        raise ConfigError(
            f"{what}: {len(unknown)} gene(s) not in the data (matched by gene id, then symbol): {_named(unknown)}; "
            "check the names against the store's var (gene_id, symbol)"
        )
    if ambiguous:
        raise ConfigError(
            f"{what}: symbol(s) naming several genes of the data: {_named(ambiguous)}; give their gene ids instead"
        )
    return np.asarray(list(dict.fromkeys(found)), dtype=np.int64)


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
        raise ConfigError(f"default_cost must be a positive finite number, got {default_cost}")
    if gene_cost is None:
        values = np.full(len(var), default_cost)
        return GeneCosts(values, "none", None, default_cost)
    if isinstance(gene_cost, pd.Series | Mapping):
        table = (
            pd.Series(gene_cost, dtype=object)
            if isinstance(gene_cost, Mapping)
            else gene_cost.astype(object)
        )
        names = [str(name).strip() for name in table.index]
        raw = table.tolist()
        source = "series" if isinstance(gene_cost, pd.Series) else "dict"
        text = "\n".join(
            sorted(f"{name}\t{value}" for name, value in zip(names, raw, strict=True))
        )
        digest = hashlib.sha256(text.encode()).hexdigest()
        fail = lambda problem: ConfigError(f"gene_cost ({source}): {problem}")
        rows = names
    else:
        path = Path(gene_cost)
        try:
            data = path.read_bytes()
            frame = pd.read_csv(
                path,
                sep="\t",
                dtype=str,
                comment="#",
                skip_blank_lines=True,
                keep_default_na=False,
            )
        except (
            OSError,
            UnicodeDecodeError,
            pd.errors.ParserError,
            pd.errors.EmptyDataError,
        ) as error:
            raise InputFileError(
                path,
                f"cannot read the gene cost table ({error})",
                "a TSV with columns gene and cost",
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
        raw = frame[columns[COST_COLUMN]].tolist()
        source, digest = str(path), hashlib.sha256(data).hexdigest()
        fail = lambda problem: InputFileError(
            path, problem, "costs must be positive finite numbers, one per gene"
        )
        rows = [f"row {i + 2} ({name})" for i, name in enumerate(names)]  # row 1 is the header
    parsed = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce").to_numpy(float)
    bad = [
        f"{row}: {value!r}"
        for row, value, number in zip(rows, raw, parsed, strict=True)
        if not (math.isfinite(number) and number > 0)
    ]
    if bad:
        raise fail(f"{len(bad)} cost(s) not a positive finite number: {_named(bad)}")
    ids = pd.Index(var.index.astype(str))
    position = {name: i for i, name in enumerate(ids)}
    symbols = (
        var["symbol"].astype(str).str.upper().to_numpy()
        if "symbol" in var.columns
        else ids.str.upper().to_numpy()
    )
    by_symbol = pd.Series(np.arange(ids.size)).groupby(symbols).apply(list).to_dict()
    values = np.full(len(var), np.nan)
    unknown: list[str] = []
    conflicts: list[str] = []
    for name, cost in zip(names, parsed, strict=True):
        matches = [position[name]] if name in position else by_symbol.get(name.upper(), [])
        if not matches:
            unknown.append(name)
        for match in matches:
            if not np.isnan(values[match]) and values[match] != cost:
                conflicts.append(name)
            values[match] = cost
    if conflicts:
        raise fail(
            f"{len(conflicts)} gene(s) given different costs: {_named(list(dict.fromkeys(conflicts)))}"
        )
    if unknown:
        logger.info(
            "gene costs: %d gene(s) of the table are not in the data and are ignored: %s",
            len(unknown),
            _named(unknown),
        )
    n_default = int(np.isnan(values).sum())
    if n_default:
        logger.info(
            "gene costs: %d of %d genes not in the table cost the default %g",
            n_default,
            values.size,
            default_cost,
        )
    values[np.isnan(values)] = default_cost
    return GeneCosts(values, source, digest, default_cost)


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
            f"the {include.size} included genes cost {spent:g} in all, more than the budget {budget:g}; raise the budget or include fewer genes"
        )
    pool = np.ones(costs.size, dtype=bool)
    pool[include] = False
    pool[exclude] = False
    cheapest = np.cumsum(np.sort(costs[pool]))
    return int(include.size + np.searchsorted(cheapest, limit - spent, side="right"))


def resolve_constraints(
    var: pd.DataFrame,
    n_genes: int | None,
    *,
    include: GeneSpec = None,
    exclude: GeneSpec = None,
    costs: GeneCosts | None = None,
    budget: float | None = None,
    exact_size: bool = True,
) -> GeneConstraints:
    """Resolve and check ``include`` and ``exclude`` (and a budget) for a panel of ``n_genes`` genes.

    With a ``budget`` (and ``costs``, from :func:`resolve_costs`), ``exact_size`` says whether
    ``n_genes`` was asked for (the panel then has exactly ``n_genes`` genes) or is only the
    most genes that fit (:func:`max_panel_size`; the method fits as many as it can).
    ``n_genes=None`` (only a budget) sets ``n_genes`` to that most, capped at the number of
    genes less one, and ``exact_size`` to false; the result's ``n_genes`` holds it.

    Raises
    ------
    ConfigError
        A gene both included and excluded, more included genes than ``n_genes``, fewer
        candidate genes (neither included nor excluded) than the panel still needs, included
        genes costing more than the budget, or no ``n_genes``-gene panel within it; each
        message names the genes or numbers at fault.
    """
    included = resolve_genes(parse_gene_list(include, what="include"), var, what="include")
    excluded = resolve_genes(
        parse_gene_list(exclude, what="exclude"), var, what="exclude", prefer_landmarks=False
    )
    if n_genes is None and budget is None:
        raise ConfigError("give n_genes, a budget, or both")
    if budget is not None:
        budget = _check_budget(budget)
        if costs is None:
            costs = resolve_costs(var)
        largest = max_panel_size(costs.values, budget, include=included, exclude=excluded)
        if n_genes is None:
            n_genes, exact_size = min(largest, len(var) - 1), False
            if n_genes < 1:
                raise ConfigError(
                    f"no gene fits the budget {budget:g}: the cheapest gene costs {costs.values.min():g}"
                )
        if exact_size and largest < n_genes:
            raise ConfigError(
                f"no panel of n_genes={n_genes} fits the budget {budget:g}: the included genes and the cheapest others fit only "
                f"{largest} genes; raise the budget, lower n_genes, or give only the budget"
            )
    ids = var.index.astype(str)
    both = np.intersect1d(included, excluded)
    if both.size:
        raise ConfigError(
            f"{both.size} gene(s) both included and excluded: {_named(ids[both].tolist())}; remove them from one list"
        )
    if included.size > n_genes:
        raise ConfigError(
            f"{included.size} genes are included but the panel has n_genes={n_genes} (which counts the included genes); "
            f"raise n_genes to at least {included.size} or include fewer genes"
        )
    candidates = len(var) - included.size - excluded.size
    needed = n_genes - included.size
    if candidates < needed:
        raise ConfigError(
            f"the panel needs {needed} genes besides the {included.size} included, but only {candidates} of the data's "
            f"{len(var)} genes are neither included nor excluded ({excluded.size} excluded); lower n_genes or exclude fewer genes"
        )
    return GeneConstraints(
        included, excluded, costs=costs, budget=budget, exact_size=exact_size, n_genes=int(n_genes)
    )


def _check_budget(budget: float) -> float:
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise ConfigError(f"budget must be a positive number, got {budget!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"budget must be a positive finite number, got {budget!r}")
    return value


def _named(names: Sequence[Any]) -> str:
    shown = ", ".join(str(n) for n in list(names)[:N_NAMED])
    return shown + (f" and {len(names) - N_NAMED} more" if len(names) > N_NAMED else "")
