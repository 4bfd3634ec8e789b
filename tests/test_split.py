"""Seeded train/validation/test assignment."""

from __future__ import annotations

import numpy as np
import pandas as pd
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
    assert counts(assign_splits(10, seed=0, sizes={"train": 5, "validation": 3, "test": 2})) == (
        5,
        3,
        2,
    )
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
    with pytest.raises(
        InputFileError, match=r"x\.h5ad.*'set' has labels that are not splits: \['holdout'\]"
    ):
        splits_from_column(["train", "holdout", "test"], column="set", path="x.h5ad")
    with pytest.raises(InputFileError, match="validation split empty"):
        splits_from_column(["train", "test"], column="set", path="x.h5ad")


def test_group_split_keeps_each_group_in_one_split_near_the_sizes():
    from genesel.split import assign_group_splits

    rng = np.random.default_rng(0)
    groups = np.repeat([f"subject{i}" for i in range(30)], rng.integers(5, 15, size=30))
    labels = assign_group_splits(groups, seed=3, fractions=(0.7, 0.15, 0.15))
    frame = pd.DataFrame({"group": groups, "split": labels})
    assert (frame.groupby("group")["split"].nunique() == 1).all(), "a group spans two splits"
    shares = frame["split"].value_counts(normalize=True)
    assert set(shares.index) == {"train", "validation", "test"}
    assert abs(shares["train"] - 0.7) < 0.08 and abs(shares["test"] - 0.15) < 0.08
    np.testing.assert_array_equal(
        labels, assign_group_splits(groups, seed=3, fractions=(0.7, 0.15, 0.15))
    )
    with pytest.raises(InputFileError, match="at least 3"):
        assign_group_splits(["a", "a", "b"], seed=0)


def test_preprocess_group_column_keeps_subjects_out_of_training(tmp_path):
    import anndata as ad

    from genesel.cli.main import main
    from genesel.store import Store

    rng = np.random.default_rng(1)
    subject = np.repeat([f"s{i}" for i in range(12)], 10)
    adata = ad.AnnData(
        rng.normal(8, 1, size=(120, 30)).astype(np.float32),
        obs=pd.DataFrame({"subject": subject}, index=[f"x{i}" for i in range(120)]),
    )
    adata.var_names = [f"G{i}" for i in range(30)]
    adata.write_h5ad(tmp_path / "in.h5ad")
    assert (
        main(
            [
                "-q",
                "preprocess",
                str(tmp_path / "in.h5ad"),
                "--out",
                str(tmp_path / "store.h5ad"),
                "--group-column",
                "subject",
                "--log2",
                "no",
            ]
        )
        == 0
    )
    with Store.open(tmp_path / "store.h5ad") as store:
        obs = store.obs
        assert (obs.groupby("subject", observed=True)["split"].nunique() == 1).all()
        assert set(obs["split"]) == {"train", "validation", "test"}
    assert (
        main(
            [
                "-q",
                "preprocess",
                str(tmp_path / "in.h5ad"),
                "--out",
                str(tmp_path / "s2.h5ad"),
                "--group-column",
                "nope",
            ]
        )
        == 1
    )


@pytest.mark.parametrize(
    "options", [{}, {"sizes": (150, 40)}, {"group_column": "subject", "seed": 4}]
)
def test_tl_prepare_and_preprocess_agree(tmp_path, options):
    """One split and one statistics code: the same labels, means, stds and constant flags."""
    import anndata as ad

    import genesel.tl
    from genesel.preprocess import preprocess
    from genesel.store import Store

    rng = np.random.default_rng(5)
    values = rng.normal(8, 2, size=(230, 12)).astype(np.float32)
    values[:, 3] = 5.0  # constant
    obs = pd.DataFrame(
        {"subject": np.repeat([f"s{i}" for i in range(23)], 10)},
        index=[f"x{i}" for i in range(230)],
    )
    adata = ad.AnnData(values, obs=obs)
    adata.var_names = [f"G{i}" for i in range(12)]
    path = preprocess(adata, tmp_path / "store.h5ad", log2="no", progress=False, **options)
    genesel.tl.prepare(adata, **options)
    with Store.open(path) as store:
        labels = store.obs["split"].astype(str)
        var = store.var
    prepared = adata.obs["genesel_split"].astype(str)
    pd.testing.assert_series_equal(labels, prepared.loc[labels.index], check_names=False)
    np.testing.assert_allclose(adata.var["genesel_mean"], var["mean"], rtol=1e-6)
    np.testing.assert_allclose(adata.var["genesel_std"], var["std"], rtol=1e-5)
    np.testing.assert_array_equal(adata.var["genesel_constant"], var["constant"])
    assert var["constant"].sum() == 1
