"""Seeded train/validation/test assignment."""

from __future__ import annotations

import numpy as np
import pytest

from genesel.errors import ConfigError, InputFileError
from genesel.split import assign_splits, split_sizes, splits_from_column


def counts(labels: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(np.sum(labels == name)) for name in ("train", "validation", "test"))  # type: ignore[return-value]


def test_dgex_sizes_and_proportional_default():
    assert split_sizes(112_171) == {"train": 88_807, "validation": 11_101, "test": 12_263}
    assert counts(assign_splits(112_171, seed=3)) == (88_807, 11_101, 12_263)
    assert split_sizes(1_000) == {"train": 792, "validation": 99, "test": 109}


def test_deterministic_by_seed():
    first = assign_splits(500, seed=7)
    np.testing.assert_array_equal(first, assign_splits(500, seed=7))
    assert not np.array_equal(first, assign_splits(500, seed=8))
    assert set(first) == {"train", "validation", "test"}


def test_given_sizes_and_fractions():
    assert counts(assign_splits(10, seed=0, sizes=(6, 2))) == (6, 2, 2)
    assert counts(assign_splits(10, seed=0, sizes={"train": 5, "validation": 3, "test": 2})) == (5, 3, 2)
    assert counts(assign_splits(10, seed=0, fractions=(0.5, 0.3))) == (5, 3, 2)
    with pytest.raises(ConfigError, match="do not add up"):
        assign_splits(10, seed=0, sizes=(6, 2, 1))
    with pytest.raises(ConfigError, match="not both"):
        split_sizes(10, sizes=(6, 2), fractions=(0.5, 0.3))


def test_empty_split_is_an_error():
    with pytest.raises(ConfigError, match="validation split would be empty"):
        assign_splits(4, seed=0)
    with pytest.raises(ConfigError, match="test split would be empty"):
        assign_splits(10, seed=0, sizes=(8, 2))


def test_splits_from_column():
    labels = splits_from_column(["tr", "VA", " te ", "train", "val"], column="set")
    assert labels.tolist() == ["train", "validation", "test", "train", "validation"]
    with pytest.raises(InputFileError, match=r"x\.h5ad.*'set' has labels that are not splits: \['holdout'\]"):
        splits_from_column(["train", "holdout", "test"], column="set", path="x.h5ad")
    with pytest.raises(InputFileError, match="validation split empty"):
        splits_from_column(["train", "test"], column="set", path="x.h5ad")
