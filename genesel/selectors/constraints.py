"""Genes a panel must contain (``include``) or must not contain (``exclude``), and what it may cost.

A lab rarely designs a panel from nothing: it already measures some genes (the L1000
landmarks, a vendor's fixed panel) and cannot probe others. :func:`resolve_constraints`
turns the user's gene lists (:mod:`genesel.selectors.gene_lists`) into store column
indices, checked against the panel size; every selector then honours them natively (see
docs/methods.md, "Include and exclude"), and the panel's ``n_genes`` counts the included
genes.

Costs and budgets follow the same path: :func:`resolve_constraints` checks the budget
against the per-gene costs (:mod:`genesel.selectors.costs`) and stores both on the
:class:`GeneConstraints` every selector receives. :meth:`GeneConstraints.fitting` says which
candidates still fit; every budget-aware method chooses only among them (see
docs/methods.md, "Costs and budgets").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from genesel.errors import ConfigError
from genesel.selectors.costs import (
    BUDGET_RTOL,
    GeneCosts,
    check_budget,
    max_panel_size,
    resolve_costs,
)
from genesel.selectors.gene_lists import GeneSpec, named, parse_gene_list, resolve_genes


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
        cost = self.cost
        panel = np.asarray(panel, dtype=np.int64)
        if cost is None:
            raise ValueError("fitting() needs costs; check budgeted first")
        n_vars = cost.size
        pool = self.candidate_mask(n_vars)
        pool[panel] = False
        needed = n_genes - panel.size
        if needed <= 0:
            return np.zeros(n_vars, dtype=bool)
        if self.budget is None:  # not budgeted
            return pool
        limit = self.budget * (1.0 + BUDGET_RTOL)
        spent = float(cost[panel].sum())
        mask = pool & (spent + cost <= limit)
        if self.exact_size and needed > 1:
            indices = np.flatnonzero(pool)
            costs = cost[indices]
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
    if budget is not None:
        budget = check_budget(budget)
        if costs is None:
            costs = resolve_costs(var)
        largest = max_panel_size(costs.values, budget, include=included, exclude=excluded)
        if n_genes is None:
            n_genes, exact_size = min(largest, len(var) - 1), False
            if n_genes < 1:
                raise ConfigError(
                    f"no gene fits the budget {budget:g}: the cheapest gene costs {costs.values.min():g}",
                    parameter="budget",
                )
        if exact_size and largest < n_genes:
            raise ConfigError(
                f"no panel of n_genes={n_genes} fits the budget {budget:g}: the included genes and the cheapest others fit only "
                f"{largest} genes; raise the budget, lower n_genes, or give only the budget",
                parameter="budget",
            )
    elif n_genes is None:
        raise ConfigError("give n_genes, a budget, or both", parameter="n_genes")
    ids = var.index.astype(str)
    both = np.intersect1d(included, excluded)
    if both.size:
        raise ConfigError(
            f"{both.size} gene(s) both included and excluded: {named(ids[both].tolist())}; remove them from one list",
            parameter="exclude",
        )
    if included.size > n_genes:
        raise ConfigError(
            f"{included.size} genes are included but the panel has n_genes={n_genes} (which counts the included genes); "
            f"raise n_genes to at least {included.size} or include fewer genes",
            parameter="n_genes",
        )
    candidates = len(var) - included.size - excluded.size
    needed = n_genes - included.size
    if candidates < needed:
        raise ConfigError(
            f"the panel needs {needed} genes besides the {included.size} included, but only {candidates} of the data's "
            f"{len(var)} genes are neither included nor excluded ({excluded.size} excluded); lower n_genes or exclude fewer genes",
            parameter="n_genes",
        )
    return GeneConstraints(
        included, excluded, costs=costs, budget=budget, exact_size=exact_size, n_genes=int(n_genes)
    )
