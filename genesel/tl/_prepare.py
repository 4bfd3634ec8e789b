"""Give an AnnData what genesel needs: a seeded split and train-split gene statistics."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from genesel.errors import ConfigError
from genesel.io.gene_maps import annotate_genes
from genesel.split import SPLITS, split_labels
from genesel.statistics import CONSTANT_STD, GeneMoments, standardisation
from genesel.store import ANNDATA_PREFIX, REQUIRED_VAR_COLUMNS, Store
from genesel.tl._utils import copy_or_self

logger = logging.getLogger(__name__)

#: Rows read at a time when computing statistics (bounded memory for backed data).
BLOCK_ROWS = 4096
#: The ``obs`` column of the split.
SPLIT_COLUMN = f"{ANNDATA_PREFIX}split"
#: The ``var`` column of each store annotation :func:`prepare` writes.
VAR_COLUMNS = {name: f"{ANNDATA_PREFIX}{name}" for name in REQUIRED_VAR_COLUMNS}
#: The ``var`` column of the constant-gene flags (the store's ``var["constant"]``).
CONSTANT_COLUMN = f"{ANNDATA_PREFIX}constant"
#: Data counts as scaled when the median |gene mean| and the median |gene std - 1| are below these
#: (``sc.pp.scale`` clips at ``max_value``, which leaves standard deviations a little under 1).
SCALED_TOLERANCE = (0.1, 0.15)
#: Train rows checked for raw counts, and the largest value log-normalised data may reach.
COUNT_CHECK_ROWS = 256
COUNT_MAX = 50.0


def prepare(
    adata: AnnData,
    *,
    seed: int = 0,
    sizes: Sequence[int] | Mapping[str, int] | None = None,
    fractions: Sequence[float] | Mapping[str, float] | None = None,
    group_column: str | None = None,
    split_column: str | None = None,
    layer: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Annotate ``adata`` like a preprocessed genesel store.

    Adds a seeded train/validation/test split and the per-gene mean and standard deviation
    of the train split, which every selector, imputer and metric uses to standardise; the
    split and the statistics are computed by the same code as ``genesel preprocess``
    (:func:`genesel.split.split_labels`, :class:`genesel.statistics.GeneMoments`).
    Values are used as they are: pass log-normalised data, not scaled data (a warning says
    so when ``X`` looks centred and scaled, as ``sc.pp.scale`` leaves it, or like raw counts).
    Every column written carries the ``genesel_`` prefix, so nothing of scanpy's is
    overwritten (``sc.pp.scale`` writes ``var["mean"]`` and ``var["std"]``).

    Parameters
    ----------
    adata
        Samples x genes, in memory or backed.
    seed
        Seed of the split.
    sizes
        ``(train, validation[, test])`` sample counts, as ``genesel preprocess --sizes``.
    fractions
        ``(train, validation[, test])`` fractions (the test split takes the rest), instead
        of ``sizes``. Without either: D-GEX's sizes for 112,171 samples, D-GEX's fractions
        (about 79 %, 10 %, 11 %) otherwise (:func:`genesel.split.split_sizes`).
    group_column
        Keep the samples of each value of this ``obs`` column (subject, patient, batch)
        in one split, so that no test subject is seen in training.
    split_column
        Take the split from this ``obs`` column (train/validation/test, or tr/va/te)
        instead of a seeded one.
    layer
        Layer to compute the statistics on instead of ``X``.
    copy
        Return an annotated copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Sets

    ``adata.obs["genesel_split"]``
        Categorical: ``train``, ``validation`` or ``test``.
    ``adata.var["genesel_mean"]``, ``adata.var["genesel_std"]``
        Train-split mean and standard deviation (ddof 0; 1 for constant genes).
    ``adata.var["genesel_constant"]``
        Whether the gene is constant in the train split (as the store's ``var["constant"]``).
    ``adata.var["genesel_symbol"]``, ``adata.var["genesel_landmark"]``
        Gene symbols (a ``symbol``-like ``var`` column, else ``var_names``) and whether a
        gene is an L1000 landmark (a boolean ``var["landmark"]`` of your own is kept).
    ``adata.uns["genesel"]["prepare"]``
        The seed, sizes or fractions, group and split columns and layer used; other entries of
        ``adata.uns["genesel"]`` (a :func:`genesel.tl.select_panel` record) are kept.
    """
    adata = copy_or_self(adata, copy)
    for name, column in (("group_column", group_column), ("split_column", split_column)):
        if column is not None and column not in adata.obs.columns:
            raise ConfigError(
                f"adata.obs has no column {column!r}; available: {list(adata.obs.columns)}",
                parameter=name,
            )
    labels = split_labels(
        adata.obs,
        split_column=split_column,
        group_column=group_column,
        seed=seed,
        sizes=sizes,
        fractions=fractions,
        path="<AnnData>",
    )
    matrix = _matrix(adata, layer)
    train = np.flatnonzero(labels == "train")
    mean, std = train_statistics(matrix, train)
    warn_if_not_log_normalised(matrix, train, mean, std, layer=layer)
    adata.obs[SPLIT_COLUMN] = pd.Categorical(labels, categories=list(SPLITS))
    adata.var[VAR_COLUMNS["mean"]] = mean
    adata.var[VAR_COLUMNS["std"]], adata.var[CONSTANT_COLUMN] = standardisation(std)
    annotation = annotate_genes(adata.var_names, adata.var)
    for column in ("symbol", "landmark"):
        adata.var[VAR_COLUMNS[column]] = annotation[column].to_numpy()
    info = dict(adata.uns.get("genesel", {}))
    info["prepare"] = {
        "seed": int(seed),
        **(
            {"sizes": _listed(sizes)}
            if sizes is not None
            else {"fractions": _listed(fractions) if fractions is not None else "dgex"}
        ),
        "group_column": group_column or "",
        "split_column": split_column or "",
        "layer": layer or "X",
    }
    adata.uns["genesel"] = info
    counts = adata.obs[SPLIT_COLUMN].value_counts().reindex(list(SPLITS)).to_dict()
    logger.info(
        "added obs[%r] %s, var%s and uns['genesel']['prepare']",
        SPLIT_COLUMN,
        counts,
        [*(VAR_COLUMNS[c] for c in ("mean", "std", "symbol", "landmark")), CONSTANT_COLUMN],
    )
    return adata if copy else None


def is_prepared(adata: AnnData, layer: str | None = None) -> bool:
    """Whether ``adata`` carries the annotation :func:`prepare` adds (for this layer).

    Also true for a genesel store read with ``anndata.read_h5ad`` (unprefixed columns and
    ``uns["genesel"]["store_version"]``) and for data prepared by an older genesel, whose
    :func:`prepare` wrote unprefixed columns.
    """
    info = adata.uns.get("genesel", {}) if hasattr(adata, "uns") else {}
    prefixed = (
        all(c in adata.var.columns for c in VAR_COLUMNS.values())
        and SPLIT_COLUMN in adata.obs.columns
    )
    legacy = (
        all(c in adata.var.columns for c in REQUIRED_VAR_COLUMNS)
        and "split" in adata.obs.columns
        and ("store_version" in info or "prepare" in info)
    )
    if not (prefixed or legacy):
        return False
    prepared_layer = info.get("prepare", {}).get("layer")
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


def warn_if_not_log_normalised(
    matrix: Any, rows: np.ndarray, mean: np.ndarray, std: np.ndarray, *, layer: str | None
) -> str | None:
    """Warn once when the values look centred and scaled, or like raw counts.

    Scaled data (``sc.pp.scale``: every gene mean about 0 and standard deviation about 1,
    many negative values) has lost the genes' relative levels and spreads that the
    selectors and decoders use; raw counts are dominated by a few highly expressed genes.

    Parameters
    ----------
    matrix
        The values :func:`prepare` read.
    rows
        Train rows (a sample of them is checked for counts).
    mean, std
        Train-split per-gene statistics.
    layer
        The layer read (for the message).

    Returns
    -------
    The warning's text, or ``None`` when the data looks log-normalised.
    """
    where = f"adata.layers[{layer!r}]" if layer else "adata.X"
    varying = std > CONSTANT_STD
    message = None
    if varying.sum() >= 2:
        centred = np.median(np.abs(mean[varying])) < SCALED_TOLERANCE[0]
        unit = np.median(np.abs(std[varying] - 1.0)) < SCALED_TOLERANCE[1]
        if centred and unit:
            message = (
                f"{where} looks centred and scaled (gene means about 0, standard deviations about 1), "
                "as sc.pp.scale leaves it; genesel needs log-normalised values: pass adata.raw.to_adata() "
                "or a layer of log-normalised values (layer=...)"
            )
    if message is None and rows.size:
        block = matrix[rows[:COUNT_CHECK_ROWS]]
        block = np.asarray(
            block.toarray() if hasattr(block, "toarray") else block, dtype=np.float64
        )
        if (
            block.size
            and block.min() >= 0
            and block.max() > COUNT_MAX
            and np.all(block == np.round(block))
        ):
            message = (
                f"{where} looks like raw counts (non-negative integers up to {block.max():.0f}); genesel needs "
                "log-normalised values: run sc.pp.normalize_total and sc.pp.log1p first (or pass layer=...)"
            )
    if message is not None:
        warnings.warn(message, UserWarning, stacklevel=_caller_level())
    return message


def _caller_level() -> int:
    """``stacklevel`` for a warning raised by this module's caller that points at the user's line.

    Counts the frames inside the genesel package (the ``tl`` function called, ``prepare``,
    ...) above the function calling this helper, so the warning names the user's line.
    """
    package = Path(__file__).resolve().parents[1]
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and Path(frame.f_code.co_filename).resolve().is_relative_to(
        package
    ):
        frame, level = frame.f_back, level + 1
    return level


def train_statistics(matrix: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation (ddof 0) of ``matrix[rows]``, read in blocks.

    Accumulated as the store writer does (:class:`~genesel.statistics.GeneMoments`).
    """
    if rows.size == 0:
        raise ConfigError("the train split is empty; use more samples or other fractions")
    moments = GeneMoments(matrix.shape[1])
    for start in range(0, rows.size, BLOCK_ROWS):
        block = matrix[rows[start : start + BLOCK_ROWS]]
        moments.add(np.asarray(block.toarray() if hasattr(block, "toarray") else block))
    return moments.mean_std()


def _listed(values: Sequence[Any] | Mapping[str, Any]) -> list[Any] | dict[str, Any]:
    """Split sizes or fractions as recorded in ``uns`` (a list or a dict)."""
    return dict(values) if isinstance(values, Mapping) else list(values)


def _matrix(adata: AnnData, layer: str | None) -> Any:
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise ConfigError(f"adata has no layer {layer!r}; it has {list(adata.layers)}")
    return adata.layers[layer]
