"""Seeded train/validation/test assignment of samples.

The default follows D-GEX: of the 112,171 GEO samples, 88,807 train, 11,101 validation
and the rest (12,263) test; other sample counts get the same fractions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from genesel.errors import ConfigError, InputFileError

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
#: D-GEX's GEO compendium: samples, train and validation sizes (test is the rest).
DGEX_N_OBS = 112_171
DGEX_SIZES = (88_807, 11_101)
DGEX_FRACTIONS = (DGEX_SIZES[0] / DGEX_N_OBS, DGEX_SIZES[1] / DGEX_N_OBS)

#: Labels accepted in a split column, mapped to the canonical names.
SPLIT_ALIASES = {
    "train": "train", "tr": "train", "training": "train",
    "validation": "validation", "va": "validation", "val": "validation", "valid": "validation",
    "test": "test", "te": "test", "testing": "test",
}  # fmt: skip


def split_sizes(
    n_obs: int,
    *,
    sizes: Sequence[int] | Mapping[str, int] | None = None,
    fractions: Sequence[float] | Mapping[str, float] | None = None,
) -> dict[str, int]:
    """Return the number of train, validation and test samples for ``n_obs`` samples.

    Parameters
    ----------
    n_obs
        Number of samples to split.
    sizes
        ``(train, validation[, test])`` counts (a missing test count takes the rest).
    fractions
        ``(train, validation[, test])`` fractions (the test fraction defaults to the rest).
        Without ``sizes`` or ``fractions``: D-GEX's sizes for 112,171 samples, D-GEX's
        fractions otherwise.

    Raises
    ------
    ConfigError
        If the sizes do not add up to ``n_obs`` or a split would be empty.
    """
    if sizes is not None and fractions is not None:
        raise ConfigError("give split sizes or split fractions, not both")
    if sizes is not None:
        counts = _three(sizes, "sizes")
        if any(c is not None and (int(c) != c or c < 0) for c in counts):
            raise ConfigError(f"split sizes must be non-negative integers, got {sizes!r}")
        n_train, n_validation = int(counts[0]), int(counts[1])
        n_test = n_obs - n_train - n_validation if counts[2] is None else int(counts[2])
        if n_train + n_validation + n_test != n_obs:
            raise ConfigError(
                f"split sizes {n_train} + {n_validation} + {n_test} do not add up to the {n_obs} samples"
            )
    else:
        if fractions is None:
            train_fraction, validation_fraction = DGEX_FRACTIONS
        else:
            parts = _three(fractions, "fractions")
            train_fraction, validation_fraction = float(parts[0]), float(parts[1])
            total = (
                train_fraction
                + validation_fraction
                + (0.0 if parts[2] is None else float(parts[2]))
            )
            if min(train_fraction, validation_fraction) < 0 or total > 1 + 1e-9:
                raise ConfigError(
                    f"split fractions {fractions!r} must be non-negative and sum to at most 1"
                )
        n_train = int(round(n_obs * train_fraction))
        n_validation = int(round(n_obs * validation_fraction))
        n_test = n_obs - n_train - n_validation
    counts_by_name = dict(zip(SPLITS, (n_train, n_validation, n_test), strict=True))
    empty = [name for name, count in counts_by_name.items() if count <= 0]
    if empty:
        raise ConfigError(
            f"{n_obs} samples give split sizes {counts_by_name}: the {', '.join(empty)} split would be empty"
        )
    return counts_by_name


def _three(values: Sequence[Any] | Mapping[str, Any], what: str) -> tuple[Any, Any, Any]:
    if isinstance(values, Mapping):
        unknown = set(values) - set(SPLITS)
        if unknown or "train" not in values or "validation" not in values:
            raise ConfigError(
                f"split {what} need keys train, validation[, test]; got {sorted(values)}"
            )
        return values["train"], values["validation"], values.get("test")
    values = list(values)
    if len(values) not in (2, 3):
        raise ConfigError(
            f"split {what} need 2 or 3 values (train, validation[, test]), got {values!r}"
        )
    return values[0], values[1], values[2] if len(values) == 3 else None


def assign_splits(
    n_obs: int,
    *,
    seed: int,
    sizes: Sequence[int] | Mapping[str, int] | None = None,
    fractions: Sequence[float] | Mapping[str, float] | None = None,
) -> np.ndarray:
    """Assign each of ``n_obs`` samples to train, validation or test, at random.

    The same ``seed``, ``n_obs`` and sizes always give the same assignment.

    Returns
    -------
    Object array of ``n_obs`` labels (``"train"``, ``"validation"``, ``"test"``) in sample order.
    """
    counts = split_sizes(n_obs, sizes=sizes, fractions=fractions)
    order = np.random.default_rng(seed).permutation(n_obs)
    labels = np.empty(n_obs, dtype=object)
    start = 0
    for name, count in counts.items():
        labels[order[start : start + count]] = name
        start += count
    return labels


def assign_group_splits(
    groups: Sequence[Any],
    *,
    seed: int,
    sizes: Sequence[int] | Mapping[str, int] | None = None,
    fractions: Sequence[float] | Mapping[str, float] | None = None,
    column: str = "group",
    path: str | os.PathLike[str] = "<input>",
) -> np.ndarray:
    """Assign whole groups of samples (subjects, batches) to train, validation or test.

    No group is split across sets, so a test subject never appears in training. Groups are
    visited in a seeded random order, each joining the split furthest below its target
    sample count (the counts of :func:`split_sizes`); the sizes are met as closely as whole
    groups allow.

    Returns
    -------
    Object array of labels in sample order.

    Raises
    ------
    InputFileError
        With fewer than three groups, or missing group values.
    """
    values = pd.Series(np.asarray(groups, dtype=object))
    if values.isna().any():
        raise InputFileError(
            path,
            f"column {column!r} has {int(values.isna().sum())} missing values",
            "give every sample a group",
        )
    values = values.astype(str)
    unique = values.unique()
    if unique.size < 3:
        raise InputFileError(
            path,
            f"column {column!r} has {unique.size} groups; a group-aware split needs at least 3",
            "use a random split",
        )
    targets = split_sizes(values.size, sizes=sizes, fractions=fractions)
    counts = values.value_counts()
    order = np.random.default_rng(seed).permutation(unique)
    filled = dict.fromkeys(SPLITS, 0)
    assignment: dict[str, str] = {}
    for rank, group in enumerate(order):
        # the first three groups seed the three splits; then each goes where it is most needed
        name = (
            SPLITS[::-1][rank]
            if rank < 3
            else max(SPLITS, key=lambda s: (targets[s] - filled[s]) / targets[s])
        )
        assignment[group] = name
        filled[name] += int(counts[group])
    return values.map(assignment).to_numpy(dtype=object)


def splits_from_column(
    values: Sequence[Any], *, column: str, path: str | os.PathLike[str] = "<input>"
) -> np.ndarray:
    """Return canonical split labels from a sample annotation column.

    Accepts ``train``/``validation``/``test`` and the short forms ``tr``/``va``/``te``,
    ``val``/``valid`` (any case).

    Raises
    ------
    InputFileError
        If a label is unknown or a split is empty.
    """
    raw = np.asarray(values, dtype=object).astype(str)
    lowered = np.char.lower(np.char.strip(raw.astype(str)))
    labels = np.array([SPLIT_ALIASES.get(v) for v in lowered], dtype=object)
    unknown = sorted({str(v) for v in raw[labels == None]})  # noqa: E711 - elementwise comparison
    if unknown:
        raise InputFileError(
            path,
            f"column {column!r} has labels that are not splits: {unknown[:5]}",
            "use train/validation/test (or tr/va/te)",
        )
    empty = [name for name in SPLITS if not np.any(labels == name)]
    if empty:
        raise InputFileError(path, f"column {column!r} leaves the {', '.join(empty)} split empty")
    return labels


def split_labels(
    obs: pd.DataFrame,
    keep: np.ndarray | None = None,
    *,
    split_column: str | None = None,
    group_column: str | None = None,
    seed: int = 0,
    sizes: Sequence[int] | Mapping[str, int] | None = None,
    fractions: Sequence[float] | Mapping[str, float] | None = None,
    path: str | os.PathLike[str] = "<input>",
) -> np.ndarray:
    """Label samples train, validation or test: from a column, by groups, or at random.

    The one split of :func:`genesel.preprocess.preprocess` and :func:`genesel.tl.prepare`.

    Parameters
    ----------
    obs
        Sample annotation (its columns may hold the split or the groups).
    keep
        Samples to label (the others get ``None``); default all.
    split_column
        Take the labels from this column (:func:`splits_from_column`).
    group_column
        Keep the samples of each value of this column in one split
        (:func:`assign_group_splits`).
    seed, sizes, fractions
        The seeded split's seed and counts (:func:`split_sizes`; default D-GEX's).
    path
        Where ``obs`` comes from, named in errors.

    Returns
    -------
    Object array of labels (``None`` for samples not kept) in sample order.
    """
    n_obs = len(obs)
    keep = np.ones(n_obs, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    labels = np.full(n_obs, None, dtype=object)
    if split_column is not None and group_column is not None:
        raise ConfigError(
            "give a split column or a group column, not both", parameter="split_column"
        )
    for column in (group_column, split_column):
        if column is not None and column not in obs.columns:
            raise InputFileError(
                path,
                f"has no sample column {column!r}",
                f"available columns: {list(obs.columns)}",
            )
    if group_column is not None:
        groups = obs[group_column].to_numpy()[keep]
        labels[keep] = assign_group_splits(
            groups, seed=seed, sizes=sizes, fractions=fractions, column=group_column, path=path
        )
    elif split_column is not None:
        labels[keep] = splits_from_column(
            obs[split_column].to_numpy()[keep], column=split_column, path=path
        )
    else:
        if "split" in obs.columns:
            logger.info(
                "%s: has a 'split' column; pass split_column='split' to use it instead of a seeded split",
                path,
            )
        labels[keep] = assign_splits(int(keep.sum()), seed=seed, sizes=sizes, fractions=fractions)
    return labels
