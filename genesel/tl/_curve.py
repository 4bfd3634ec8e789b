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
from genesel.impute import fit_imputer, make_decoder
from genesel.impute.curve import DEFAULT_RANDOM_PANELS
from genesel.report.curves import RANDOM_METHOD, REFERENCE_METHOD, sizes_around_landmarks
from genesel.selectors.select import select_panel
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
    decoder_params: Mapping[str, Any] | None = None,
    random_panels: int = DEFAULT_RANDOM_PANELS,
    sizes_around_landmarks: bool = True,
    device: str = "auto",
    progress: bool = True,
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
        ``linear``, ``mlp``, ``knn`` or any other registered decoder.
    seeds
        Seeds; the plot shows mean and spread over them.
    split
        Split the errors are measured on (``test`` or ``validation``).
    key_added
        Key of ``.uns`` the table is stored under (a table there is replaced; any other
        record there is an error, so that no other call's record is overwritten).
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
    decoder_params
        Hyperparameters of the decoder, e.g. ``{"hidden": [256]}`` for the MLP; unset ones
        take the decoder class's defaults (MLP: 9000 tanh units, dropout 0.1, learning rate
        decayed by 0.95 per epoch; linear: ridge ``"auto"``).
    random_panels
        With the ``random`` method and the linear decoder: this many seeded random panels per
        size (at least as many as ``seeds``), the random-panel band of the plot.
    sizes_around_landmarks
        Add the landmark count and +-25 % of it to ``sizes`` (when the data has landmarks).
    device
        ``auto``, ``cpu`` or ``cuda``.
    progress
        Show a progress bar over the runs (on by default, as on the command line: the
        curve fits many panels and can take minutes).

    Returns
    -------
    One row per (method, n_genes, seed): ``method``, ``n_genes``, ``seed``, ``decoder``,
    ``landmark_overlap`` (landmark genes in the panel) and every metric of
    :func:`genesel.evaluate.evaluate_model` (``mse_imputed``, its interval, ``mse``, ...).
    Also stored as ``adata.uns[key_added]``; each run's per-sample imputed-gene errors (the
    intervals of :func:`genesel.pl.panel_curve`) as ``adata.uns[key_added + "_per_sample"]``
    (samples x runs, columns in the table's row order). The headline sentence is logged.
    """
    if not sizes or not methods or not seeds:
        raise ConfigError("panel_curve needs at least one size, one method and one seed")
    method_params = {method: dict(values) for method, values in (params or {}).items()}
    make_decoder(decoder, **dict(decoder_params or {}))  # refuse unknown parameters up front
    unknown = sorted(set(method_params) - set(methods))
    if unknown:
        raise ConfigError(f"params given for methods not in methods: {unknown}")
    for key in (key_added, f"{key_added}_per_sample"):
        if key in adata.uns and not isinstance(adata.uns[key], pd.DataFrame):
            raise ConfigError(
                f"adata.uns[{key!r}] holds a record of another call; pass another key_added"
            )
    store = ensure_store(adata, seed=seeds[0], layer=layer)
    sizes = (
        _with_landmark_sizes(sizes, store) if sizes_around_landmarks else [int(k) for k in sizes]
    )
    plan = [
        (method, int(k), int(seed))
        for method in methods
        for k in _sizes_of(method, sizes, store)
        for seed in _seeds_of(method, seeds, decoder, random_panels)
    ]
    rows: list[dict[str, Any]] = []
    per_sample: list[pd.Series] = []
    for method, n_genes, seed in tqdm(plan, desc="panel curve", unit="run", disable=not progress):
        trainer, loader, run = training_configs(
            seed=seed,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            device=device,
            progress=False,
        )
        panel = select_panel(
            store,
            method=method,
            n_genes=n_genes,
            seed=seed,
            params=method_params.get(method),
            trainer=trainer,
            loader=loader,
            run=run,
        )
        model = fit_imputer(
            store,
            list(panel.gene_ids),
            decoder=decoder,
            trainer=trainer,
            run=run,
            loader=loader,
            **dict(decoder_params or {}),
        )
        evaluation = evaluate_model(store, model, split=split, progress=False)
        metrics = evaluation.metrics
        per_sample.append(evaluation.per_sample["mse_imputed"].rename(len(per_sample)))
        overlap = int(store.landmark_mask[panel.gene_indices].sum())
        numbers = {
            k: v for k, v in metrics.items() if isinstance(v, int | float) and k not in CURVE_KEYS
        }
        rows.append(
            {
                "method": method,
                "n_genes": n_genes,
                "seed": seed,
                "decoder": decoder,
                "landmark_overlap": overlap,
                **numbers,
            }
        )
        logger.debug(
            "%s K=%d seed %d: %s imputed-gene MSE %.4g",
            method,
            n_genes,
            seed,
            split,
            metrics["mse_imputed"],
        )
    frame = pd.DataFrame(rows)
    adata.uns[key_added] = frame
    adata.uns[f"{key_added}_per_sample"] = pd.concat(per_sample, axis=1).rename(columns=str)
    logger.info(
        "added uns[%r] (%d runs) and uns[%r]", key_added, len(frame), f"{key_added}_per_sample"
    )
    from genesel.report.headline import headline, match_landmarks

    curves = curve_summary(frame, adata.uns[f"{key_added}_per_sample"])
    logger.info("%s", headline(match_landmarks(curves), curves, decoder=decoder))
    return frame


def curve_summary(
    frame: pd.DataFrame, per_sample: pd.DataFrame | None, *, metric: str = "mse_imputed"
):
    """:class:`~genesel.report.curves.Curves` of a :func:`panel_curve` table, bootstrapped when per-sample errors are given."""
    from genesel.report.curves import summarize_curves

    series = None
    if per_sample is not None and metric == "mse_imputed" and per_sample.shape[1] == len(frame):
        series = [per_sample.iloc[:, i].dropna() for i in range(per_sample.shape[1])]
    return summarize_curves(frame, metric=metric, per_sample=series)


def _with_landmark_sizes(sizes: Sequence[int], store: Store) -> list[int]:
    return sorted(
        {int(k) for k in sizes}
        | sizes_around_landmarks(int(store.landmark_mask.sum()), store.n_vars)
    )


def _seeds_of(method: str, seeds: Sequence[int], decoder: str, random_panels: int) -> list[int]:
    if method == RANDOM_METHOD and decoder == "linear":
        return list(range(max(len(seeds), int(random_panels))))
    return [int(s) for s in seeds]


def _sizes_of(method: str, sizes: Sequence[int], store: Store) -> list[int]:
    if method != REFERENCE_METHOD:
        return [int(k) for k in sizes]
    n_landmarks = int(store.landmark_mask.sum())
    if n_landmarks == 0:
        raise ConfigError(
            "method 'landmarks' needs landmark genes, but var['landmark'] flags none"
        )
    return [n_landmarks]
