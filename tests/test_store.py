"""The store writer/reader and the minibatch loader."""

from __future__ import annotations

import warnings

import anndata as ad
import h5py
import numpy as np
import pytest
import torch

from genesel.errors import InputFileError, StoreVersionError
from genesel.loader import LoaderConfig, MinibatchLoader
from genesel.store import Store
from tests.conftest import planted_matrix, write_store


def test_store_groups_rows_by_split_and_uses_train_statistics(tmp_path):
    X, _ = planted_matrix(300, 12, 3, seed=1)
    path = write_store(tmp_path / "s.h5ad", X, seed=2)
    rng = np.random.default_rng(2)
    labels = rng.choice(np.array(["train", "validation", "test"]), size=300, p=[0.7, 0.15, 0.15])
    with Store.open(path) as store:
        split = store.obs["split"].to_numpy()
        assert list(dict.fromkeys(split)) == ["train", "validation", "test"]
        train = store.read_rows(store.split_indices("train"), standardize=False)
        np.testing.assert_allclose(train, X[labels == "train"])
        np.testing.assert_allclose(
            store.var["mean"], X[labels == "train"].astype(np.float64).mean(0), rtol=1e-6
        )
        np.testing.assert_allclose(
            store.var["std"], X[labels == "train"].astype(np.float64).std(0), rtol=1e-5
        )
        z = store.read_rows(store.split_indices("train"))
        np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
    backed = ad.read_h5ad(path, backed="r")
    assert backed.shape == (300, 12) and backed.uns["genesel"]["store_version"] == 1
    backed.file.close()


def test_store_rejects_missing_foreign_and_old_files(tmp_path):
    with pytest.raises(InputFileError, match="no such store"):
        Store.open(tmp_path / "absent.h5ad")
    (tmp_path / "junk.h5ad").write_text("not hdf5")
    with pytest.raises(InputFileError, match="junk.h5ad"):
        Store.open(tmp_path / "junk.h5ad")
    X, _ = planted_matrix(50, 6, 2)
    path = write_store(tmp_path / "old.h5ad", X)
    with h5py.File(path, "r+") as f:
        f["uns/genesel/store_version"][()] = 0
    with pytest.raises(StoreVersionError, match="re-run `genesel preprocess`"):
        Store.open(path)


def test_store_with_overwritten_values_names_the_first_bad_sample(tmp_path):
    X, _ = planted_matrix(40, 6, 2)
    path = write_store(tmp_path / "s.h5ad", X)
    with h5py.File(path, "r+") as f:
        f["X"][7, 3] = np.nan
        f["X"][9, 0] = np.inf
    with Store.open(path) as store:
        sample = str(store.obs.index[7])
        store.read_rows(slice(0, 5))  # clean rows still read
        with pytest.raises(
            InputFileError,
            match=f"first at sample '{sample}' \\(row 7\\).*re-run `genesel preprocess`",
        ):
            store.read_rows(slice(0, 40))
        with pytest.raises(InputFileError, match="row 9"):
            store.read_rows(np.array([1, 9, 20]), standardize=False)


def test_failed_write_leaves_nothing(tmp_path):
    X, _ = planted_matrix(50, 6, 2)
    with pytest.raises(RuntimeError):
        from genesel.store import StoreWriter

        with StoreWriter(
            tmp_path / "s.h5ad",
            var=__import__("pandas").DataFrame(index=list("abcdef")),
            split_sizes={"train": 50},
        ):
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("resident", [None, 0])
def test_loader_covers_split_once_per_epoch_and_is_seeded(planted_store, resident):
    store, _ = planted_store
    config = LoaderConfig(batch_size=32, block_rows=50, blocks_per_pool=2, resident_bytes=resident)
    loader = MinibatchLoader(store, "train", config=config, seed=5)
    assert loader.is_resident == (resident is None)
    first = np.concatenate([b.numpy() for b in loader])
    expected = store.read_rows(store.split_indices("train"))
    assert first.shape == expected.shape
    np.testing.assert_allclose(
        np.sort(first, axis=0), np.sort(expected, axis=0), rtol=1e-5, atol=1e-5
    )
    again = np.concatenate([b.numpy() for b in loader])
    np.testing.assert_array_equal(first, again)
    loader.set_epoch(1)
    assert not np.array_equal(first, np.concatenate([b.numpy() for b in loader]))
    assert len(loader) == len(list(loader))


def test_streamed_batches_kept_by_the_consumer_are_never_overwritten(planted_store):
    store, _ = planted_store
    # many small pools, so the ring of pool buffers wraps around several times per epoch
    config = LoaderConfig(batch_size=8, block_rows=16, blocks_per_pool=1, resident_bytes=0)
    loader = MinibatchLoader(store, "train", config=config, seed=3)
    copied = [batch.clone() for batch in loader]
    kept = list(loader)
    assert len(kept) == len(copied) > 3 * (config.prefetch + 3)
    for held, fresh in zip(kept, copied, strict=True):
        assert torch.equal(held, fresh)
    # the rows are standardised store rows, each delivered once
    expected = store.read_rows(store.split_indices("train"))
    np.testing.assert_allclose(
        np.sort(torch.cat(kept).numpy(), axis=0), np.sort(expected, axis=0), rtol=1e-5, atol=1e-5
    )


def test_loader_columns_and_unshuffled_order(planted_store):
    store, drivers = planted_store
    loader = MinibatchLoader(
        store,
        "validation",
        config=LoaderConfig(batch_size=16, resident_bytes=0),
        shuffle=False,
        columns=drivers,
    )
    values = np.concatenate([b.numpy() for b in loader])
    np.testing.assert_allclose(
        values,
        store.read_rows(store.split_indices("validation"))[:, drivers],
        rtol=1e-5,
        atol=1e-5,
    )


def test_store_refuses_repeated_gene_ids(tmp_path):
    X, _ = planted_matrix(30, 6, 2)
    path = write_store(tmp_path / "s.h5ad", X)
    adata = ad.read_h5ad(path)
    with warnings.catch_warnings():  # anndata warns about the repeat we want
        warnings.simplefilter("ignore")
        adata.var_names = [adata.var_names[0]] + adata.var_names[:-1].tolist()
        adata.write_h5ad(tmp_path / "dup.h5ad")
    with pytest.raises(
        InputFileError,
        match=f"dup.h5ad: 1 gene id\\(s\\) occur more than once, e.g. \\['{adata.var_names[0]}'\\]",
    ):
        Store.open(tmp_path / "dup.h5ad")
    with pytest.raises(InputFileError, match="<AnnData>: 1 gene id"):
        Store.from_anndata(adata)
