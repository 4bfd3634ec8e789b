"""``genesel.tl.panel_curve``: imputation error against panel size for several methods."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from anndata import AnnData
from tqdm.auto import tqdm

from genesel.errors import ConfigError
from genesel.evaluate import evaluate_model
from genesel.impute import fit_imputer
from genesel.report.curves import REFERENCE_METHOD
from genesel.selectors.base import select_panel
from genesel.store import Store
from genesel.tl._prepare import ensure_store
from genesel.tl._utils import training_configs

logger = logging.getLogger(__name__)

#: Columns of the frame, before the metrics.
CURVE_KEYS = ("method", "n_genes", "seed", "decoder", "landmark_overlap")


def panel_curve(
    adata: AnnData,
    *,
    sizes: Sequence[int],
    methods: Sequence[str],
    decoder: str = "linear",
    seeds: Sequence[int] = (0,),
    split: str = "test",
    key_added: str = "genesel_curve",
    layer: str | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    epochs: int = 100,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    hidden: Sequence[int] = (256,),
    device: str = "auto",
    progress: bool = False,
) -> pd.DataFrame:
    """Select panels of several sizes with several methods and measure their imputation error.

    For every method, size and seed: select a panel on the train split, fit ``decoder``
    from it to all genes, and evaluate on ``split``. The ``landmarks`` method runs once per
    seed at its own size (the number of landmark genes). Plot the result with
    :func:`genesel.pl.panel_curve`.

    Parameters
    ----------
    adata
        Samples x genes (prepared by :func:`genesel.tl.prepare` when not yet).
    sizes
        Panel sizes.
    methods
        Selection methods (see :func:`genesel.tl.select_panel`).
    decoder
        ``linear``, ``mlp`` or ``knn``.
    seeds
        Seeds; the plot shows mean and spread over them.
    split
        Split the errors are measured on (``test`` or ``validation``).
    key_added
        Key of ``.uns`` the table is stored under.
    layer
        Layer to read instead of ``X``.
    params
        Hyperparameters per method, e.g. ``{"cae": {"gjsd_weight": 0.0}}``.
    epochs
        Epoch budget of trained selectors and of the MLP decoder.
    batch_size
        Minibatch size of trained models.
    learning_rate
        Adam learning rate of trained models.
    hidden
        Hidden widths of the MLP decoder.
    device
        ``auto``, ``cpu`` or ``cuda``.
    progress
        Show a progress bar over the runs.

    Returns
    -------
    One row per (method, n_genes, seed): ``method``, ``n_genes``, ``seed``, ``decoder``,
    ``landmark_overlap`` (landmark genes in the panel) and every metric of
    :func:`genesel.evaluate.evaluate_model` (``mse``, ``mae``, ``mse_unmeasured``, ...).
    Also stored as ``adata.uns[key_added]``.
    """
    if not sizes or not methods or not seeds:
        raise ConfigError("panel_curve needs at least one size, one method and one seed")
    params = dict(params or {})
    unknown = sorted(set(params) - set(methods))
    if unknown:
        raise ConfigError(f"params given for methods not in methods: {unknown}")
    store = ensure_store(adata, seed=seeds[0], layer=layer)
    plan = [(method, int(k), int(seed)) for method in methods for k in _sizes_of(method, sizes, store) for seed in seeds]
    rows = []
    for method, n_genes, seed in tqdm(plan, desc="panel curve", unit="run", disable=not progress):
        trainer, loader = training_configs(
            seed=seed, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, device=device, progress=False
        )
        panel = select_panel(store, method=method, n_genes=n_genes, seed=seed, params=params.get(method), trainer=trainer, loader=loader)
        if decoder == "mlp":
            trainer.lr_decay = 0.95
        model = fit_imputer(store, list(panel.gene_ids), decoder=decoder, hidden=tuple(hidden), trainer=trainer, loader=loader, progress=False)
        metrics = evaluate_model(store, model, split=split, progress=False).metrics
        overlap = int(store.landmark_mask[panel.gene_indices].sum())
        numbers = {k: v for k, v in metrics.items() if isinstance(v, int | float) and k not in CURVE_KEYS}
        rows.append({"method": method, "n_genes": n_genes, "seed": seed, "decoder": decoder, "landmark_overlap": overlap, **numbers})
        logger.info("%s K=%d seed %d: %s MSE %.4g", method, n_genes, seed, split, metrics["mse"])
    frame = pd.DataFrame(rows)
    adata.uns[key_added] = frame
    logger.info("added uns[%r]: %d runs", key_added, len(frame))
    return frame


def _sizes_of(method: str, sizes: Sequence[int], store: Store) -> list[int]:
    if method != REFERENCE_METHOD:
        return [int(k) for k in sizes]
    n_landmarks = int(store.landmark_mask.sum())
    if n_landmarks == 0:
        raise ConfigError("method 'landmarks' needs landmark genes, but var['landmark'] flags none")
    return [n_landmarks]
