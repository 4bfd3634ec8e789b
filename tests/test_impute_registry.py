"""The decoder registry: a toy decoder added by one module and one registry line runs through
the command line and ``genesel.tl``; unknown parameters are refused naming what is accepted."""

from __future__ import annotations

import json
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import genesel
from genesel.cli import main as cli
from genesel.errors import ConfigError
from genesel.impute import fit_imputer, load_model
from genesel.impute.decoders import DECODER_MODULES, available_decoders
from genesel.run import RunConfig
from tests.conftest import planted_matrix

RUN = RunConfig(device="cpu", progress=False)


@pytest.fixture
def mean_decoder(monkeypatch):
    """Register the toy ``mean`` decoder of tests/toy_decoder.py (its one registry line)."""
    monkeypatch.setitem(DECODER_MODULES, "mean", "tests.toy_decoder")
    return "mean"  # the class stays registered; without the table line the name is refused


def test_unknown_decoder_and_parameters_are_refused(planted_store):
    store, drivers = planted_store
    with pytest.raises(ConfigError, match="unknown decoder 'forest'") as error:
        fit_imputer(store, drivers.tolist(), decoder="forest", run=RUN)
    assert error.value.parameter == "decoder"
    with pytest.raises(ConfigError, match=r"decoder 'linear' has no parameter\(s\) \['hidden'\]"):
        fit_imputer(store, drivers.tolist(), decoder="linear", hidden=(8,), run=RUN)
    with pytest.raises(ConfigError, match=r"it accepts \['n_neighbors', 'max_reference'"):
        fit_imputer(store, drivers.tolist(), decoder="knn", ridge=1.0, run=RUN)
    for decoder, params in (("linear", {"ridge": -1}), ("mlp", {"dropout": 1.5})):
        with pytest.raises(ConfigError) as error:  # before any data is read
            fit_imputer(store, drivers.tolist(), decoder=decoder, run=RUN, **params)
        assert error.value.parameter == f"param:{next(iter(params))}"


def test_toy_decoder_through_the_command_line(mean_decoder, planted_store, panel_file, tmp_path):
    store, _ = planted_store
    assert "mean" in available_decoders()
    argv = ["-q", "impute", "fit", "--data", str(store.path), "--panel", str(panel_file)]
    argv += ["--decoder", "mean", "--param", "shrink=0.5", "--device", "cpu"]
    argv += ["--out", str(tmp_path / "model"), "--metrics", str(tmp_path / "metrics.json")]
    assert cli.main(argv) == 0
    model = load_model(tmp_path / "model")
    assert model.decoder == "mean" and model.params == {"shrink": 0.5}
    assert model.training["toy"] is True and model.n_genes == 5 and model.n_vars == store.n_vars
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.9 < metrics["mse_imputed"] < 1.2  # the mean predicts no variance
    bad = [*argv[:-4], "--param", "nope=1", "--out", str(tmp_path / "bad")]
    assert cli.main(bad) == 1
    assert not (tmp_path / "bad" / "model.json").exists()


@pytest.fixture
def adata():
    """300 x 30 samples with a 5-gene panel recorded as genesel.tl.select_panel records it."""
    X, _ = planted_matrix(300, 30, 4, seed=1)
    data = ad.AnnData(
        X.astype(np.float32), var=pd.DataFrame(index=[f"g{i}" for i in range(X.shape[1])])
    )
    data.var["genesel_rank"] = np.where(np.arange(30) < 5, np.arange(30) + 1.0, np.nan)
    return data


def test_the_decoder_list_imports_no_torch():
    code = "import sys, genesel.impute.decoders; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_toy_decoder_through_tl_fit_imputer(mean_decoder, adata):
    model = genesel.tl.fit_imputer(
        adata, decoder="mean", params={"shrink": 0.0}, device="cpu", progress=False
    )
    assert model.decoder == "mean" and model.n_genes == 5
    imputed = genesel.tl.impute(adata[:, model.panel_ids], model, progress=False)
    assert np.allclose(imputed.X[:, ~model.measured_mask], model.mean[~model.measured_mask])


def test_toy_decoder_through_tl_panel_curve(mean_decoder, adata, monkeypatch):
    from tests.test_decoder_defaults import first_genes

    monkeypatch.setattr("genesel.tl._curve.select_panel", first_genes)  # decoders are the point
    frame = genesel.tl.panel_curve(
        adata,
        sizes=(5,),
        methods=("random",),
        decoder="mean",
        decoder_params={"shrink": 1.0},
        random_panels=2,
        sizes_around_landmarks=False,
        device="cpu",
        progress=False,
    )
    assert set(frame["decoder"]) == {"mean"} and len(frame) == 1
    assert (frame["mse_imputed"] > 0.9).all()
