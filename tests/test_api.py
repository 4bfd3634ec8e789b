"""The scanpy-style API: conventions (as scanpy's package-structure test) and behaviour on pbmc68k."""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path

import anndata
import matplotlib
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import genesel
from genesel.errors import ConfigError

matplotlib.use("Agg")

PUBLIC = [
    (name, getattr(module, name)) for module in (genesel.tl, genesel.pl) for name in module.__all__
]
#: Functions whose second parameter may be positional, as scanpy's ``ingest(adata, adata_ref)``.
SECOND_POSITIONAL = {"impute": "model", "evaluate": "model"}


@pytest.mark.parametrize(("name", "function"), PUBLIC, ids=[name for name, _ in PUBLIC])
def test_signature_follows_scanpy(name: str, function) -> None:
    parameters = list(inspect.signature(function).parameters.values())
    assert parameters[0].name == "adata", f"{name}: first parameter must be adata"
    assert parameters[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    rest = parameters[1:]
    if name in SECOND_POSITIONAL:
        assert (
            rest[0].name == SECOND_POSITIONAL[name]
            and rest[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        rest = rest[1:]
    positional = [p.name for p in rest if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert not positional, f"{name}: parameters after adata must be keyword-only, got {positional}"
    assert "return" in function.__annotations__, f"{name}: annotate the return type"


@pytest.mark.parametrize(("name", "function"), PUBLIC, ids=[name for name, _ in PUBLIC])
def test_docstring_documents_every_parameter(name: str, function) -> None:
    doc = inspect.getdoc(function)
    assert doc and "Parameters\n----------" in doc and "Returns\n-------" in doc, name
    documented = set(
        re.findall(
            r"^(\w+)$", doc.split("Parameters\n----------")[1].split("Returns\n-------")[0], re.M
        )
    )
    missing = set(inspect.signature(function).parameters) - documented
    assert not missing, f"{name}: parameters without documentation: {sorted(missing)}"


def test_namespaces_only_reexport() -> None:
    for module in (genesel.tl, genesel.pl):
        source = Path(module.__file__).read_text()
        code = [
            line
            for line in source.splitlines()
            if line.strip() and not line.startswith(("from ", '"""', "__all__"))
        ]
        assert not code, f"{module.__name__}/__init__.py should only re-export, found {code}"
        for name in module.__all__:
            assert getattr(module, name).__module__.startswith(f"{module.__name__}._")


@pytest.fixture(scope="module")
def pbmc() -> anndata.AnnData:
    """scanpy's bundled pbmc68k_reduced, log-normalised values (``.raw``; ``X`` is scaled)."""
    return sc.datasets.pbmc68k_reduced().raw.to_adata()


def test_prepare_adds_only_what_it_documents(pbmc: anndata.AnnData) -> None:
    adata = pbmc.copy()
    before_obs, before_var, before_uns = set(adata.obs), set(adata.var), set(adata.uns)
    X_before = adata.X.copy()
    genesel.tl.prepare(adata, seed=3)
    assert set(adata.obs) - before_obs == {"genesel_split"}
    assert set(adata.var) - before_var == {
        "genesel_mean",
        "genesel_std",
        "genesel_symbol",
        "genesel_landmark",
        "genesel_constant",
    }
    assert set(adata.uns) - before_uns == {"genesel"}
    assert (adata.X != X_before).nnz == 0
    train = adata[adata.obs["genesel_split"] == "train"].X.toarray()
    np.testing.assert_allclose(adata.var["genesel_mean"], train.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert adata.obs["genesel_split"].value_counts()["train"] == pytest.approx(
        0.79 * adata.n_obs, abs=5
    )
    again = genesel.tl.prepare(pbmc, seed=3, copy=True)
    assert (again.obs["genesel_split"] == adata.obs["genesel_split"]).all()
    assert "genesel_split" not in pbmc.obs


def test_tl_writes_only_prefixed_columns_and_records_accumulate(pbmc: anndata.AnnData) -> None:
    """scanpy manners: nothing unprefixed in obs/var (``sc.pp.scale`` owns ``var["mean"]``), no record overwritten."""
    adata = pbmc.copy()
    adata.var["mean"] = -1.0  # as sc.pp.scale leaves it: must survive untouched
    before_obs, before_var = set(adata.obs), set(adata.var)
    genesel.tl.prepare(adata, seed=0)
    prepared = dict(adata.uns["genesel"]["prepare"])
    genesel.tl.select_panel(adata, n_genes=10, method="hvg", progress=False)
    genesel.tl.select_panel(
        adata, n_genes=12, method="random", key_added="genesel_random", progress=False
    )
    model = genesel.tl.fit_imputer(adata, panel_key="genesel_random", progress=False)
    genesel.tl.impute(
        adata[:, adata.var["genesel_random_selected"].to_numpy()], model, progress=False
    )
    genesel.tl.panel_curve(
        adata, sizes=(10,), methods=("hvg",), sizes_around_landmarks=False, progress=False
    )
    new = {f"obs[{c!r}]" for c in set(adata.obs) - before_obs} | {
        f"var[{c!r}]" for c in set(adata.var) - before_var
    }
    assert new and all(name[5:].startswith("genesel_") for name in new), sorted(new)
    assert (adata.var["mean"] == -1.0).all()
    assert adata.uns["genesel"]["prepare"] == prepared, "select_panel must keep prepare's record"
    assert (
        adata.uns["genesel"]["method"] == "hvg"
        and adata.uns["genesel_random"]["method"] == "random"
    )
    assert {"genesel", "genesel_random", "genesel_curve", "genesel_curve_per_sample"} <= set(
        adata.uns
    )
    genesel.tl.select_panel(adata, n_genes=10, method="cae", epochs=1, min_steps=0, progress=False)
    genesel.tl.select_panel(adata, n_genes=10, method="random", progress=False)
    assert "history" not in adata.uns["genesel"], (
        "a repeated call must not leave the previous call's entries"
    )
    assert adata.uns["genesel"]["prepare"] == prepared
    with pytest.raises(ConfigError, match="another key_added"):
        genesel.tl.panel_curve(
            adata, sizes=(10,), methods=("hvg",), key_added="genesel", progress=False
        )
    with pytest.raises(ConfigError, match="another key_added"):
        genesel.tl.select_panel(
            adata, n_genes=10, method="hvg", key_added="genesel_curve", progress=False
        )
    assert adata.uns["genesel"]["prepare"] == prepared


def test_prepared_data_from_an_older_genesel_or_a_store_still_reads(pbmc: anndata.AnnData) -> None:
    adata = pbmc.copy()
    genesel.tl.prepare(adata, seed=2)
    legacy = adata.copy()
    legacy.obs = legacy.obs.rename(columns={"genesel_split": "split"})
    legacy.var = legacy.var.rename(columns=lambda c: c.removeprefix("genesel_"))
    genesel.tl.select_panel(legacy, n_genes=8, method="hvg", progress=False)
    genesel.tl.select_panel(adata, n_genes=8, method="hvg", progress=False)
    assert "genesel_split" not in legacy.obs, "legacy annotation is read, not redone"
    assert list(legacy.uns["genesel"]["panel"]) == list(adata.uns["genesel"]["panel"])


def test_scaled_input_gets_one_clear_warning() -> None:
    scaled = sc.datasets.pbmc68k_reduced()  # X is sc.pp.scale's output
    with pytest.warns(
        UserWarning, match=r"centred and scaled.*adata\.raw\.to_adata\(\)"
    ) as record:
        genesel.tl.select_panel(scaled, n_genes=5, method="random", progress=False)
    ours = [w for w in record if "scaled" in str(w.message)]
    assert len(ours) == 1 and ours[0].filename == __file__, (
        "one warning, pointing at the caller's line"
    )
    counts = anndata.AnnData(
        np.random.default_rng(0).poisson(100.0, size=(60, 8)).astype(np.float32)
    )
    with pytest.warns(UserWarning, match="raw counts"):
        genesel.tl.prepare(counts)
    logged = anndata.AnnData(np.log1p(counts.X))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        genesel.tl.prepare(logged)


def test_select_panel_writes_var_and_uns(pbmc: anndata.AnnData, tmp_path: Path) -> None:
    adata = pbmc.copy()
    returned = genesel.tl.select_panel(
        adata, n_genes=15, method="cae", seed=1, epochs=2, min_steps=0, key_added="panel"
    )
    assert returned is None
    assert adata.var["panel_selected"].sum() == 15
    ranks = adata.var.loc[adata.var["panel_selected"], "panel_rank"]
    assert sorted(ranks) == list(range(1, 16))
    assert adata.var.loc[~adata.var["panel_selected"], "panel_rank"].isna().all()
    info = adata.uns["panel"]
    assert info["method"] == "cae" and info["n_genes"] == 15 and len(info["panel"]) == 15
    assert info["panel"][0] == adata.var_names[adata.var["panel_rank"] == 1][0]
    assert (
        len(info["history"]) == 4
    )  # 2 planned epochs, unconverged, then the extension: as many again
    assert info["converged"] is False and info["mean_max_probability"] < 0.99  # 2 short epochs
    adata.write_h5ad(tmp_path / "annotated.h5ad")  # everything written must be storable
    assert anndata.read_h5ad(tmp_path / "annotated.h5ad").uns["panel"]["method"] == "cae"


def test_select_panel_copy_and_errors(pbmc: anndata.AnnData) -> None:
    adata = pbmc.copy()
    copied = genesel.tl.select_panel(adata, n_genes=10, method="random", copy=True)
    assert copied.var["genesel_selected"].sum() == 10
    assert "genesel_selected" not in adata.var and "genesel_split" not in adata.obs
    with pytest.raises(ConfigError, match="no parameter"):
        genesel.tl.select_panel(adata, n_genes=10, method="random", params={"nope": 1})
    with pytest.raises(ConfigError, match="unknown method"):
        genesel.tl.select_panel(adata, n_genes=10, method="magic")


def test_backed_anndata(pbmc: anndata.AnnData, tmp_path: Path) -> None:
    path = tmp_path / "pbmc.h5ad"
    anndata.AnnData(X=pbmc.X.toarray(), obs=pbmc.obs[[]], var=pbmc.var[[]]).write_h5ad(path)
    backed = anndata.read_h5ad(path, backed="r")
    try:
        genesel.tl.select_panel(backed, n_genes=12, method="random", seed=0)
        assert backed.var["genesel_selected"].sum() == 12
        model = genesel.tl.fit_imputer(backed)
        full = genesel.tl.impute(backed, model)
        assert full.shape == backed.shape
        with pytest.raises(ConfigError, match="in-memory"):
            genesel.tl.select_panel(backed, n_genes=12, method="random", copy=True)
    finally:
        backed.file.close()


def test_impute_returns_the_full_transcriptome(pbmc: anndata.AnnData, tmp_path: Path) -> None:
    adata = pbmc.copy()
    genesel.tl.select_panel(adata, n_genes=40, method="random", seed=0)
    model = genesel.tl.fit_imputer(adata, decoder="linear")
    measured = adata[:, adata.var["genesel_selected"].to_numpy()].copy()
    full = genesel.tl.impute(measured, model)
    assert full.shape == adata.shape
    assert list(full.var_names) == list(adata.var_names)
    panel = full.var["measured"].to_numpy()
    assert panel.sum() == 40
    np.testing.assert_allclose(full.X[:, panel], adata.X[:, panel].toarray(), rtol=1e-6)
    test = (adata.obs["genesel_split"] == "test").to_numpy()
    truth = adata.X.toarray()[test][:, ~panel]
    error = np.mean((full.X[test][:, ~panel] - truth) ** 2)
    assert error < np.mean((truth - adata.var["genesel_mean"].to_numpy()[~panel]) ** 2), (
        "must beat predicting the mean"
    )
    model.save(tmp_path / "model")
    again = genesel.tl.impute(measured, tmp_path / "model")
    np.testing.assert_allclose(again.X, full.X, rtol=1e-5, atol=1e-6)


def test_panel_curve_and_its_plot(pbmc: anndata.AnnData, tmp_path: Path) -> None:
    adata = pbmc.copy()
    frame = genesel.tl.panel_curve(
        adata,
        sizes=(10, 40),
        methods=("random", "landmarks"),
        seeds=(0, 1),
        decoder="linear",
        random_panels=4,
        sizes_around_landmarks=False,
    )
    assert isinstance(frame, pd.DataFrame) and adata.uns["genesel_curve"] is frame
    n_landmarks = int(adata.var["genesel_landmark"].sum())
    assert set(frame.loc[frame["method"] == "landmarks", "n_genes"]) == {n_landmarks}
    assert len(frame) == 2 * 4 + 2  # 4 random panels per size (the band), landmarks with 2 seeds
    assert adata.uns["genesel_curve_per_sample"].shape == (
        int((adata.obs["genesel_split"] == "test").sum()),
        len(frame),
    )
    assert (frame.loc[frame["method"] == "landmarks", "landmark_overlap"] == n_landmarks).all()
    random_mse = frame[frame["method"] == "random"].groupby("n_genes")["mse_imputed"].mean()
    assert random_mse[40] < random_mse[10], "more genes must impute better"

    ax = genesel.pl.panel_curve(adata, show=False, save=tmp_path / "curve.png")
    assert isinstance(ax, matplotlib.axes.Axes)
    assert (tmp_path / "curve.png").stat().st_size > 1000
    labels = ax.get_legend_handles_labels()[1]
    assert (
        "random panels (10-90%)" in labels and f"L1000 landmarks ({n_landmarks} genes)" in labels
    )
    assert ax.get_ylabel() == "test MSE, imputed genes (standardised)"
    ax = genesel.pl.panel_curve(frame, metric="mae_imputed", show=False)
    assert ax.get_ylabel() == "test MAE, imputed genes (standardised)"
    with pytest.raises(ConfigError, match="no 'other'"):
        genesel.pl.panel_curve(adata, key="other", show=False)
