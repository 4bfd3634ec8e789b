"""``genesel.tl.evaluate``: a model's errors on an AnnData, its own data or another data set."""

from __future__ import annotations

import logging
import os
from typing import Any

from anndata import AnnData

from genesel.evaluate import DEFAULT_STANDARDIZE, Evaluation, evaluate_model
from genesel.impute import ImputationModel, load_model
from genesel.tl._prepare import ensure_store

logger = logging.getLogger(__name__)


def evaluate(
    adata: AnnData,
    model: ImputationModel | str | os.PathLike[str],
    *,
    split: str = "test",
    standardize: str = DEFAULT_STANDARDIZE,
    seed: int = 0,
    layer: str | None = None,
    device: str | None = None,
    progress: bool = False,
) -> Evaluation:
    """Impute a split of ``adata`` from the model's panel genes and measure the errors.

    ``adata`` may be another data set than the one the model was fitted on (a transfer):
    genes are matched by gene id, then symbol, in any order; every panel gene must be there
    (an error names the missing ones), missing target genes are left out of the scores.

    Parameters
    ----------
    adata
        Samples with measured values of (at least) the model's panel genes; prepared by
        :func:`genesel.tl.prepare` (done here with ``seed`` when it was not).
    model
        A fitted :class:`~genesel.impute.ImputationModel` or the directory of one.
    split
        ``"test"`` (default), ``"validation"`` or ``"train"``.
    standardize
        ``"model"``: the model's train mean and std (its training data's; default);
        ``"data"``: ``adata``'s own train statistics.
    seed
        Seed of the split, when ``adata`` is prepared here.
    layer
        Layer to read instead of ``X``.
    device
        Where the decoder runs (default: :func:`~genesel.evaluate.evaluate_model`'s, the CPU).
    progress
        Show a progress bar.

    Returns
    -------
    :class:`~genesel.evaluate.Evaluation`: ``metrics`` (with a ``transfer`` record for
    another data set), ``per_gene`` and ``per_sample`` tables.
    """
    if not isinstance(model, ImputationModel):
        model = load_model(model)
    store = ensure_store(adata, seed=seed, layer=layer)
    options: dict[str, Any] = {} if device is None else {"device": device}
    return evaluate_model(
        store, model, split=split, standardize=standardize, progress=progress, **options
    )
