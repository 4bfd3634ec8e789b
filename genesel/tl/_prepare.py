"""Give an AnnData what genesel needs: a seeded split and train-split gene statistics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from genesel.errors import ConfigError
from genesel.io.gene_maps import annotate_genes
from genesel.split import SPLITS, assign_group_splits, assign_splits
from genesel.store import REQUIRED_VAR_COLUMNS, Store
from genesel.tl._utils import copy_or_self

logger = logging.getLogger(__name__)

#: Rows read at a time when computing statistics (bounded memory for backed data).
BLOCK_ROWS = 4096
#: Standard deviations below this count as constant genes (their std is set to 1).
CONSTANT_STD = 1e-8


def prepare(
    adata: AnnData,
    *,
    seed: int = 0,
    fractions: Sequence[float] | None = None,
    group_column: str | None = None,
    layer: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Annotate ``adata`` like a preprocessed genesel store.

    Adds a seeded train/validation/test split and the per-gene mean and standard deviation
    of the train split, which every selector, imputer and metric uses to standardise.
    Values are used as they are (log-normalised data works best; not scaled data).

    Parameters
    ----------
    adata
        Samples x genes, in memory or backed.
    seed
        Seed of the split.
    fractions
        Train and validation fractions (the test split takes the rest); default D-GEX's
        (about 79 %, 10 %, 11 %).
    group_column
        Keep the samples of each value of this ``obs`` column (subject, patient, batch)
        in one split, so that no test subject is seen in training.
    layer
        Layer to compute the statistics on instead of ``X``.
    copy
        Return an annotated copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Sets

    ``adata.obs["split"]``
        Categorical: ``train``, ``validation`` or ``test``.
    ``adata.var["mean"]``, ``adata.var["std"]``
        Train-split mean and standard deviation (ddof 0; 1 for constant genes).
    ``adata.var["symbol"]``, ``adata.var["landmark"]``
        Only when missing: gene symbols (from ``var_names``) and whether a gene is an
        L1000 landmark.
    ``adata.uns["genesel"]``
        The seed, fractions and layer used.
    """
    adata = copy_or_self(adata, copy)
    if group_column is not None:
        if group_column not in adata.obs.columns:
            raise ConfigError(f"adata.obs has no column {group_column!r}; available: {list(adata.obs.columns)}")
        labels = assign_group_splits(adata.obs[group_column].to_numpy(), seed=seed, fractions=fractions, column=group_column)
    else:
        labels = assign_splits(adata.n_obs, seed=seed, fractions=fractions)
    adata.obs["split"] = pd.Categorical(labels, categories=list(SPLITS))
    mean, std = train_statistics(_matrix(adata, layer), np.flatnonzero(labels == "train"))
    adata.var["mean"] = mean
    adata.var["std"] = np.where(std < CONSTANT_STD, 1.0, std)
    annotation = annotate_genes(adata.var_names, adata.var)
    added = []
    for column in ("symbol", "landmark"):
        if column not in adata.var.columns:
            adata.var[column] = annotation[column].to_numpy()
            added.append(column)
    info = dict(adata.uns.get("genesel", {}))
    info["prepare"] = {
        "seed": int(seed),
        "fractions": list(fractions) if fractions is not None else "dgex",
        "group_column": group_column or "",
        "layer": layer or "X",
    }
    adata.uns["genesel"] = info
    sizes = adata.obs["split"].value_counts().reindex(list(SPLITS)).to_dict()
    logger.info(
        "added obs['split'] %s and var['mean'], var['std']%s",
        sizes,
        "".join(f", var[{c!r}]" for c in added),
    )
    return adata if copy else None


def is_prepared(adata: AnnData, layer: str | None = None) -> bool:
    """Whether ``adata`` carries the annotation :func:`prepare` adds (for this layer)."""
    has_columns = all(c in adata.var.columns for c in REQUIRED_VAR_COLUMNS) and "split" in adata.obs.columns
    if not has_columns:
        return False
    prepared_layer = adata.uns.get("genesel", {}).get("prepare", {}).get("layer")
    if prepared_layer is not None and prepared_layer != (layer or "X"):
        raise ConfigError(
            f"adata was prepared on {prepared_layer!r} but layer={layer!r} was asked for; "
            f"run genesel.tl.prepare(adata, layer={layer!r}) first"
        )
    return True


def ensure_store(adata: AnnData, *, seed: int, layer: str | None) -> Store:
    """A :class:`~genesel.store.Store` over ``adata``, preparing it first when needed."""
    if not is_prepared(adata, layer):
        logger.info("adata has no genesel split/statistics yet: preparing it (seed %d)", seed)
        prepare(adata, seed=seed, layer=layer)
    return Store.from_anndata(adata, layer=layer)


def train_statistics(matrix: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation (ddof 0) of ``matrix[rows]``, read in blocks."""
    if rows.size == 0:
        raise ConfigError("the train split is empty; use more samples or other fractions")
    total = np.zeros(matrix.shape[1], dtype=np.float64)
    total_sq = np.zeros(matrix.shape[1], dtype=np.float64)
    for start in range(0, rows.size, BLOCK_ROWS):
        block = matrix[rows[start : start + BLOCK_ROWS]]
        block = np.asarray(block.toarray() if hasattr(block, "toarray") else block, dtype=np.float64)
        total += block.sum(axis=0)
        total_sq += np.einsum("ij,ij->j", block, block)
    mean = total / rows.size
    return mean, np.sqrt(np.maximum(total_sq / rows.size - mean**2, 0.0))


def _matrix(adata: AnnData, layer: str | None) -> Any:
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise ConfigError(f"adata has no layer {layer!r}; it has {list(adata.layers)}")
    return adata.layers[layer]
