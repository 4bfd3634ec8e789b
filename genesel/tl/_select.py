"""``genesel.tl.select_panel``: choose a gene panel on an AnnData."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from anndata import AnnData

from genesel.selectors.costs import DEFAULT_COST, CostSpec
from genesel.selectors.gene_lists import GeneSpec
from genesel.selectors.select import select_panel as _select_panel
from genesel.tl._prepare import ensure_store
from genesel.tl._utils import add_record, copy_or_self, training_configs, uns_safe

logger = logging.getLogger(__name__)

#: Entries of ``uns[key_added]`` a call writes; a repeated call replaces them, other entries
#: (:func:`genesel.tl.prepare`'s ``"prepare"`` record under the default key) stay.
SELECT_RECORD_KEYS = (
    "method",
    "n_genes",
    "seed",
    "layer",
    "params",
    "panel",
    "included",
    "converged",
    "mean_max_probability",
    "unique_percent",
    "history",
    "total_cost",
    "budget",
    "gene_cost_sha256",
)


def select_panel(
    adata: AnnData,
    *,
    n_genes: int | None = None,
    method: str,
    key_added: str = "genesel",
    seed: int = 0,
    layer: str | None = None,
    params: dict[str, Any] | None = None,
    epochs: int | None = None,
    min_steps: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    device: str | None = None,
    progress: bool = True,
    refine: bool | dict[str, Any] = False,
    include: GeneSpec = None,
    exclude: GeneSpec = None,
    gene_cost: CostSpec = None,
    default_cost: float = DEFAULT_COST,
    budget: float | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Select a panel of ``n_genes`` genes that best predicts all the others.

    The same selection as ``genesel select`` on a preprocessed store. An ``adata`` without
    ``obs["genesel_split"]`` and ``var["genesel_mean"]``/``var["genesel_std"]`` is first annotated by
    :func:`genesel.tl.prepare` (with this ``seed`` and ``layer``). Works on in-memory and
    backed AnnData.

    Parameters
    ----------
    adata
        Samples x genes; log-normalised values (for scanpy's bundled data, ``adata.raw.to_adata()``).
    n_genes
        Panel size K, included genes among them (``landmarks`` only accepts the number of
        landmark genes, plus any included ones); ``None`` with a ``budget``: as many genes
        as fit within it.
    method
        ``cae``, ``ipcae``, ``lassonet``, ``logitnormal``, ``logitnormal-hnet``,
        ``landmarks``, ``random``, ``hvg``, ``qr`` or ``greedy``.
    key_added
        Prefix of the ``.var`` columns and key in ``.uns`` written.
    seed
        Seed of the selection (and of the split, when ``adata`` is prepared here).
    layer
        Layer to read instead of ``X``.
    params
        Method hyperparameters, e.g. ``{"gjsd_weight": 0.1}``; unknown keys are rejected.
    epochs
        Epoch budget of trained methods (raised on small data to reach ``min_steps``);
        ``None``: :class:`~genesel.training.TrainerConfig`'s, 100.
    min_steps
        Plan at least this many optimizer steps; ``None``: the method's default (CAE and
        IP-CAE 1,000, which on scanpy's 700-cell example means about 330 epochs of 3 steps;
        they stop once converged).
    batch_size
        Minibatch size of trained methods; ``None``: :class:`~genesel.loader.LoaderConfig`'s, 256.
    learning_rate
        Adam learning rate of trained methods; ``None``: :class:`~genesel.training.TrainerConfig`'s, 0.001.
    device
        ``auto`` (CUDA when available), ``cpu`` or ``cuda``; ``None``:
        :class:`~genesel.run.RunConfig`'s, ``auto``.
    progress
        Show a progress bar while training (as the command line does).
    refine
        Then swap panel genes for outside genes while that lowers the validated ridge
        imputation error (``True``, or options ``ridge``, ``max_swaps``, ``moments``).
    include
        Genes the panel must contain (ids or symbols of ``adata.var``: a list, a
        comma-separated string, a file, or ``"landmarks"``); ``n_genes`` counts them. Every
        method honours them natively; see :func:`genesel.selectors.select_panel`.
    exclude
        Genes the panel must not contain (same forms as ``include``).
    gene_cost
        Per-gene costs: a TSV path (columns ``gene``, ``cost``), a :class:`pandas.Series`
        or a dict (genes: ids or symbols of ``adata.var``). greedy, lassonet and
        logitnormal weigh genes by cost; cae/ipcae refuse costs.
    default_cost
        Cost of the genes ``gene_cost`` does not name.
    budget
        Most the panel's genes may cost in all, included genes among them; see
        :func:`genesel.selectors.select_panel` and docs/methods.md, "Costs and budgets".
    copy
        Work on a copy of ``adata`` and return it.

    Returns
    -------
    ``None``, or the annotated copy when ``copy=True``. Sets

    ``adata.var[f"{key_added}_selected"]``
        Whether a gene is in the panel.
    ``adata.var[f"{key_added}_rank"]``
        Rank in the panel (1 = most important), NaN outside it.
    ``adata.var[f"{key_added}_included"]``
        Whether a panel gene was fixed by ``include`` rather than selected.
    ``adata.var[f"{key_added}_cost"]``
        With ``gene_cost`` or ``budget``: each panel gene's cost (NaN outside the panel).
    ``adata.uns[key_added]``
        Added to what is there (under the default key, :func:`genesel.tl.prepare`'s
        ``"prepare"`` record stays): ``method``, ``n_genes``, ``seed``, ``params`` (every hyperparameter), ``panel``
        (gene ids, best first) and, for trained methods, ``history`` (per-epoch losses) and
        ``converged`` (with ``mean_max_probability`` and ``unique_percent`` for CAE/IP-CAE; a
        warning is logged when training ended unconverged), and with costs ``total_cost``,
        ``budget`` and ``gene_cost_sha256``.
    """
    adata = copy_or_self(adata, copy)
    store = ensure_store(adata, seed=seed, layer=layer)
    trainer, loader, run = training_configs(
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        device=device,
        progress=progress,
        min_steps=min_steps,
    )
    result = _select_panel(
        store,
        method=method,
        n_genes=n_genes,
        seed=seed,
        params=params,
        trainer=trainer,
        loader=loader,
        run=run,
        refine=refine,
        include=include,
        exclude=exclude,
        gene_cost=gene_cost,
        default_cost=default_cost,
        budget=budget,
    )
    rank = np.full(adata.n_vars, np.nan)
    rank[result.gene_indices] = np.arange(1, result.n_genes + 1)
    adata.var[f"{key_added}_selected"] = ~np.isnan(rank)
    adata.var[f"{key_added}_rank"] = rank
    included = np.zeros(adata.n_vars, dtype=bool)
    included[result.gene_indices[result.included]] = True
    adata.var[f"{key_added}_included"] = included
    info: dict[str, Any] = {
        "method": method,
        "n_genes": int(result.n_genes),
        "seed": int(seed),
        "layer": layer or "X",
        "params": uns_safe(result.config),
        "panel": [str(g) for g in result.gene_ids],
        "included": [str(g) for g in result.gene_ids[result.included]],
    }
    if result.costs is not None:
        cost = np.full(adata.n_vars, np.nan)
        cost[result.gene_indices] = result.costs
        adata.var[f"{key_added}_cost"] = cost
    for key in (
        "converged",
        "mean_max_probability",
        "unique_percent",
        "total_cost",
        "budget",
        "gene_cost_sha256",
    ):
        if key in result.extra and result.extra[key] is not None:
            info[key] = uns_safe(result.extra[key])
    if result.history is not None:
        info["history"] = uns_safe(result.history)
    add_record(adata, key_added, info, replaces=SELECT_RECORD_KEYS)
    logger.info(
        "added var[%r], var[%r], var[%r] and uns[%r]: %d genes by %s",
        f"{key_added}_selected",
        f"{key_added}_rank",
        f"{key_added}_included",
        key_added,
        result.n_genes,
        method,
    )
    return adata if copy else None
