"""Every selection method on the 74 real GPL96 arrays (D = 10,463 D-GEX genes, 59 train rows).

The store is made by ``genesel preprocess`` from the probe-level fixture, so these runs see real
gene ids, real landmark flags and the real size of the gene axis; training is kept to a couple
of epochs, since what is checked is the panel's validity, not its quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genesel.errors import ConfigError
from genesel.loader import LoaderConfig
from genesel.preprocess import preprocess
from genesel.run import RunConfig
from genesel.selectors import read_panel, select_panel
from genesel.store import Store
from genesel.training import TrainerConfig

FIXTURE = Path(__file__).parent / "data" / "gpl96_74_arrays.h5ad"
K = 20

#: Small settings: IP-CAE with P = 64 instead of P = D (W would be D x D); a short LassoNet path
#: from a given start (the automatic start search is tested on small data in test_lassonet.py;
#: with the path loss summed over 10,463 genes, genes leave at lambda of order 1e6 here).
FAST_PARAMS = {
    "cae": {},
    "ipcae": {"embedding_dim": 64},
    "lassonet": {
        "hidden": [8],
        "epochs_per_lambda": 1,
        "path_multiplier": 2.0,
        "refit_epochs": 1,
        "lambda_start": 2e5,
    },
    "logitnormal": {},
    "logitnormal-hnet": {},
    "random": {},
    "hvg": {},
    "qr": {},
    # greedy is left out: at D = 10,463 its moments (3 x 0.88 GB) and D x D state make it a minute-long test;
    # tests/test_greedy.py checks it exactly on small data.
}


@pytest.fixture(scope="module")
def gpl96_gene_store(tmp_path_factory):
    path = preprocess(
        FIXTURE, tmp_path_factory.mktemp("gpl96") / "store.h5ad", block_rows=32, progress=False
    )
    with Store.open(path) as store:
        yield store


#: Over 15 s each on 2 cores (LassoNet's D x D skip layer at D = 10,463; QR's SVD): run by
#: `make test-slow` and CI, not by `make test`.
SLOW_METHODS = ("lassonet", "qr")


@pytest.mark.parametrize(
    "method",
    [
        pytest.param(method, marks=pytest.mark.slow) if method in SLOW_METHODS else method
        for method in FAST_PARAMS
    ],
)
def test_every_method_writes_k_distinct_valid_genes(gpl96_gene_store, method, tmp_path):
    store = gpl96_gene_store
    assert store.n_vars == 10_463
    result = select_panel(
        store,
        method=method,
        n_genes=K,
        params=FAST_PARAMS[method],
        trainer=TrainerConfig(max_epochs=2, min_steps=0),  # validity, not quality: no step floor
        run=RunConfig(progress=False),
        loader=LoaderConfig(batch_size=16),
        out_dir=tmp_path,
    )
    panel = read_panel(tmp_path)
    assert len(panel) == K == panel["gene_id"].nunique()
    index = {gene: i for i, gene in enumerate(store.gene_ids.astype(str))}
    rows = np.array([index[gene] for gene in panel["gene_id"]])  # KeyError = an unknown gene
    np.testing.assert_array_equal(np.sort(rows), np.sort(result.gene_indices))
    np.testing.assert_array_equal(panel["landmark"].to_numpy(bool), store.landmark_mask[rows])


def test_landmarks_returns_the_landmarks_present_or_names_their_count(gpl96_gene_store, tmp_path):
    store = gpl96_gene_store
    n_landmarks = int(store.landmark_mask.sum())
    assert 900 < n_landmarks <= 943  # the D-GEX landmarks with a probe on the arrays
    result = select_panel(store, method="landmarks", n_genes=n_landmarks, out_dir=tmp_path)
    assert set(result.gene_indices.tolist()) == set(np.flatnonzero(store.landmark_mask).tolist())
    assert read_panel(tmp_path)["landmark"].all()
    with pytest.raises(
        ConfigError, match=rf"has {n_landmarks} landmark genes.*use n_genes={n_landmarks}"
    ):
        select_panel(store, method="landmarks", n_genes=K)
