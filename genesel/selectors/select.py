"""``select_panel``: the one entry point of selection shared by the CLI, ``tl`` and the workflow."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from genesel.errors import ConfigError
from genesel.loader import LoaderConfig
from genesel.panel import PanelResult
from genesel.run import RunConfig
from genesel.selectors.base import make_selector
from genesel.selectors.constraints import GeneConstraints, resolve_constraints
from genesel.selectors.costs import DEFAULT_COST, CostSpec, resolve_costs
from genesel.selectors.gene_lists import GeneSpec
from genesel.store import Store
from genesel.training import TrainerConfig, trainer_record

logger = logging.getLogger(__name__)


def check_constraints(result: PanelResult, constraints: GeneConstraints) -> np.ndarray:
    """Whether each panel gene is included; raise if the method broke ``constraints``.

    A guard, not a repair: every method honours the lists itself, so a failure here is a
    bug of that method.
    """
    panel = result.gene_indices
    missing = np.setdiff1d(constraints.include, panel)
    present = np.intersect1d(constraints.exclude, panel)
    budget, spent = constraints.budget, constraints.panel_cost(panel)
    over = budget is not None and spent is not None and spent > budget * (1 + 1e-6)
    short = budget is not None and constraints.exact_size and panel.size != constraints.n_genes
    if over or short:
        raise RuntimeError(
            f"{result.method} broke the budget: {panel.size} genes costing {spent:g} for the budget "
            f"{budget:g}{f' and n_genes={constraints.n_genes}' if constraints.exact_size else ''} (a bug; please report it)"
        )
    if missing.size or present.size:
        ids = result.var.index.astype(str)
        raise RuntimeError(
            f"{result.method} broke the gene constraints: included genes missing {ids[missing].tolist()[:10]}, "
            f"excluded genes present {ids[present].tolist()[:10]} (a bug; please report it)"
        )
    return np.isin(panel, constraints.include)


def select_panel(
    store: Store,
    *,
    method: str,
    n_genes: int | None = None,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    trainer: TrainerConfig | None = None,
    loader: LoaderConfig | None = None,
    run: RunConfig | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    refine: bool | dict[str, Any] = False,
    include: GeneSpec = None,
    exclude: GeneSpec = None,
    gene_cost: CostSpec = None,
    default_cost: float = DEFAULT_COST,
    budget: float | None = None,
) -> PanelResult:
    """Select a panel of ``n_genes`` genes with ``method`` and optionally write it to ``out_dir``.

    This is the one entry point shared by the CLI, the scanpy API and the workflow.
    ``seed`` seeds the method (it replaces ``run.seed``); ``run`` says how it runs (device,
    progress bar, precision; ``None``: :class:`~genesel.run.RunConfig`'s defaults) and
    ``trainer`` holds a trained method's hyperparameters (``None``: the defaults).
    ``refine`` (``True`` or options of :func:`genesel.selectors.refine.refine_result`:
    ``ridge``, ``max_swaps``, ``moments``, ``max_memory_gib``) then swaps panel genes for
    outside genes while that lowers the validated ridge imputation error (any method).

    ``include`` and ``exclude`` (gene ids or symbols: a list, a comma-separated string, a
    file, or the word ``"landmarks"``; see :mod:`genesel.selectors.gene_lists`) fix genes
    in the panel and keep genes out of it; ``n_genes`` counts the included genes. Every
    method honours them natively; the included genes lead the panel and ``panel.tsv`` marks
    them ``included`` (the others ``selected``). With as many included genes as
    ``n_genes`` the panel is the included genes and no method runs.

    ``gene_cost`` (a TSV file with columns ``gene`` and ``cost``, a Series or a dict; genes it
    does not name cost ``default_cost``) and ``budget`` bound the panel's total cost: the
    included genes count towards it. With ``budget`` and no ``n_genes`` the panel has as
    many genes as the method fits within it; with both, exactly ``n_genes`` genes within
    it. greedy, lassonet and logitnormal use the costs natively (also without a budget);
    see docs/methods.md, "Costs and budgets". ``panel.tsv`` then gets a ``cost`` column and
    the total cost, budget and cost table hash in its header.
    """
    if n_genes is None and budget is None:
        raise ConfigError(
            "n_genes is required (or a budget, to fit as many genes as it allows)",
            parameter="n_genes",
        )
    if n_genes is not None:
        if not isinstance(n_genes, int | np.integer) or n_genes < 1:
            raise ConfigError(
                f"n_genes must be a positive integer, got {n_genes!r}", parameter="n_genes"
            )
        if n_genes >= store.n_vars:
            raise ConfigError(
                f"n_genes={n_genes} must be smaller than the number of genes in the data ({store.n_vars})",
                parameter="n_genes",
            )
    if budget is not None and refine:
        raise ConfigError(
            "refine is not supported with a budget (a swap may break it); drop refine or the budget",
            parameter="refine",
        )
    store.require_split("train")
    costs = (
        None
        if gene_cost is None and budget is None
        else resolve_costs(store.var, gene_cost, default_cost=default_cost)
    )
    constraints = resolve_constraints(
        store.var, n_genes, include=include, exclude=exclude, costs=costs, budget=budget
    )
    assert constraints.n_genes is not None  # resolve_constraints sets the panel size
    n_genes = int(constraints.n_genes)
    selector = make_selector(method, n_genes=n_genes, seed=seed, params=params)
    selector.constrain(constraints)
    work_dir = None if out_dir is None else Path(out_dir)
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    trainer = trainer or TrainerConfig()
    run = RunConfig(seed=seed) if run is None else replace(run, seed=seed)
    if selector.n_free == 0:
        logger.info(
            "%s: all %d panel genes are included; nothing to select", method, selector.n_genes
        )
        result = PanelResult(
            method=method,
            n_genes=selector.n_genes,
            seed=seed,
            gene_indices=constraints.include,
            var=store.var,
            extra={"ranking": "the included genes, in the order given"},
        )
    else:
        result = selector.select(
            store, trainer=trainer, loader=loader, run=run, work_dir=work_dir, resume=resume
        )
    result.config = {
        "params": selector.hyperparameters(),
        "trainer": trainer_record(trainer, run) if selector.trainable else None,
        **result.config,
    }
    result.config.update(constraints.record(store.var))
    if refine:
        from genesel.selectors.refine import refine_result

        options = dict(refine) if isinstance(refine, dict) else {}
        unknown = sorted(set(options) - {"ridge", "max_swaps", "moments", "max_memory_gib"})
        if unknown:
            raise ConfigError(
                f"refine has no option(s) {unknown}; it accepts ridge, max_swaps, moments, max_memory_gib",
                parameter="refine",
            )
        result = refine_result(
            store,
            result,
            work_dir=work_dir,
            progress=run.progress,
            constraints=constraints,
            **options,
        )
        result.config["refine"] = options or True
    result.included = check_constraints(result, constraints)
    costs = constraints.costs
    if costs is not None:
        result.costs = costs.values[result.gene_indices]
        result.extra["total_cost"] = float(result.costs.sum())
        if costs.sha256 is not None:
            result.extra["gene_cost_sha256"] = costs.sha256
        if constraints.budgeted:
            result.extra["budget"] = constraints.budget
            if not constraints.exact_size:
                logger.info(
                    "%s: %d genes fit the budget %g (total cost %g)",
                    method,
                    result.n_genes,
                    constraints.budget,
                    result.extra["total_cost"],
                )
    if work_dir is not None:
        result.write(work_dir)
    return result
