"""Transfer: a model fitted on one simulated compendium, evaluated on another data set."""

from __future__ import annotations

import json
import logging
import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import genesel.cli.main as cli
from genesel.errors import InputFileError
from genesel.evaluate import evaluate_model
from genesel.impute import fit_imputer
from genesel.preprocess import preprocess
from genesel.simulate import simulate_compendium
from genesel.store import Store

N_GENES = 600  # 54 landmarks (the same for every seed) and a seeded draw of targets
PANEL_SIZE = 8


@pytest.fixture(scope="module")
def compendia(tmp_path_factory):
    """Store A (seed 1) with a linear model on 8 landmarks; compendium B (seed 2) with its genes shuffled."""
    root = tmp_path_factory.mktemp("transfer")
    a = simulate_compendium(root / "a_raw.h5ad", n_obs=400, seed=1, n_vars=N_GENES, progress=False)
    b = simulate_compendium(root / "b_raw.h5ad", n_obs=300, seed=2, n_vars=N_GENES, progress=False)
    store_a = preprocess(a, root / "a.h5ad", seed=0, progress=False)
    raw_b = ad.read_h5ad(b)
    shuffled = raw_b[:, np.random.default_rng(7).permutation(raw_b.n_vars)].copy()
    with Store.open(store_a) as store:
        panel = store.var.index[store.landmark_mask][:PANEL_SIZE].tolist()
        model = fit_imputer(store, panel, decoder="linear", progress=False)
    model.save(root / "model")
    return root, store_a, shuffled, model


def _store_b(compendia, name, adata):
    root = compendia[0]
    return preprocess(adata, root / name, seed=3, progress=False)


def _by_hand(store, model, *, standardize):
    """The imputed-gene test MSE with B's columns put in the model's gene order by hand."""
    position = {g: j for j, g in enumerate(store.var.index)}
    shared = np.array([g in position for g in model.gene_ids])
    columns = np.array([position[g] for g in model.gene_ids[shared]])
    raw = store.read_rows(store.split_indices("test"), standardize=False).astype(np.float64)[
        :, columns
    ]
    if standardize == "model":
        mean, std = model.mean[shared], model.std[shared]
    else:
        mean, std = (
            store.var["mean"].to_numpy(np.float64)[columns],
            store.var["std"].to_numpy(np.float64)[columns],
        )
    truth = (raw - mean) / std
    panel = np.cumsum(shared)[model.panel_indices] - 1
    predicted = model.predict_standardized(truth[:, panel]).astype(np.float64)[:, shared]
    imputed = ~model.measured_mask[shared]
    return ((predicted - truth)[:, imputed] ** 2).mean(), int(shared.sum())


@pytest.mark.parametrize("standardize", ["model", "data"])
def test_transfer_equals_reordering_by_hand(compendia, standardize, caplog):
    _, store_a, shuffled, model = compendia
    with (
        Store.open(_store_b(compendia, f"b_{standardize}.h5ad", shuffled)) as store_b,
        caplog.at_level(logging.WARNING),
    ):
        evaluation = evaluate_model(
            store_b, model, standardize=standardize, block_rows=37, progress=False
        )
        expected, n_shared = _by_hand(store_b, model, standardize=standardize)
    n_missing = model.n_vars - n_shared
    assert (
        0 < n_missing < N_GENES - PANEL_SIZE
    )  # another seed draws other target genes: some are missing
    assert evaluation.metrics["mse_imputed"] == pytest.approx(expected, rel=1e-6)
    assert evaluation.metrics["n_vars"] == n_shared and evaluation.metrics["n_genes"] == PANEL_SIZE
    record = evaluation.metrics["transfer"]
    assert (
        record["matched_by"] == "gene_id"
        and record["n_matched"] == n_shared
        and record["n_missing_targets"] == n_missing
    )
    assert record["standardize"] == standardize and record["source_store"] == str(store_a)
    assert record["source_fingerprint"] != record["data_fingerprint"]
    assert f"{n_missing} of the model's {model.n_vars} genes are not in the data" in caplog.text


def test_transfer_falls_back_to_symbols(compendia):
    _, _, shuffled, model = compendia
    renamed = shuffled.copy()
    renamed.var_names = [
        f"probe{j}" for j in range(renamed.n_vars)
    ]  # ids unknown to the model; symbols kept
    with (
        Store.open(_store_b(compendia, "b_ids.h5ad", shuffled)) as by_id,
        Store.open(_store_b(compendia, "b_symbols.h5ad", renamed)) as by_symbol,
    ):
        expected = evaluate_model(by_id, model, progress=False)
        evaluation = evaluate_model(by_symbol, model, progress=False)
        repeated = by_id.var.index[by_id.var["symbol"].duplicated(keep=False)]
    record = evaluation.metrics["transfer"]
    assert (
        record["matched_by"] == "symbol"
        and record["n_matched_by_id"] == 0
        and record["n_matched"] > 60
    )
    # the same genes with the same errors, except those whose symbol B holds twice (a landmark and its -target copy)
    lost = expected.per_gene.index.difference(evaluation.per_gene.index)
    assert (
        lost.isin(repeated).all() and evaluation.per_gene.index.isin(expected.per_gene.index).all()
    )
    np.testing.assert_allclose(
        evaluation.per_gene["mse"],
        expected.per_gene.loc[evaluation.per_gene.index, "mse"],
        rtol=1e-12,
    )


def test_own_store_is_not_a_transfer(compendia):
    _, store_a, _, model = compendia
    with Store.open(store_a) as store:
        assert "transfer" not in evaluate_model(store, model, progress=False).metrics
        assert (
            "transfer" in evaluate_model(store, model, standardize="data", progress=False).metrics
        )


def test_missing_panel_gene_is_named(compendia):
    _, _, shuffled, model = compendia
    lacking = shuffled[:, ~shuffled.var_names.isin(model.panel_ids[:2])].copy()
    named = re.escape(f"{model.panel_symbols[0]} ({model.panel_ids[0]})")
    with (
        Store.open(_store_b(compendia, "b_lacking.h5ad", lacking)) as store_b,
        pytest.raises(
            InputFileError, match=rf"2 of {PANEL_SIZE} panel genes are missing: {named}"
        ),
    ):
        evaluate_model(store_b, model, progress=False)


def test_evaluate_cli_standardize(compendia, monkeypatch):
    root, _, shuffled, model = compendia
    monkeypatch.setattr(cli, "SUBCOMMANDS", ("evaluate",))
    data = _store_b(compendia, "b_cli.h5ad", shuffled)
    out = root / "cli" / "metrics.json"
    assert (
        cli.main(
            [
                "-q",
                "evaluate",
                "--model",
                str(root / "model"),
                "--data",
                str(data),
                "--standardize",
                "data",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    metrics = json.loads(out.read_text())
    with Store.open(data) as store_b:
        expected = evaluate_model(store_b, model, standardize="data", progress=False).metrics
    assert metrics["transfer"]["standardize"] == "data" and metrics[
        "mse_imputed"
    ] == pytest.approx(expected["mse_imputed"])


def test_tl_evaluate_on_another_anndata(compendia):
    from genesel import tl

    root, _, shuffled, model = compendia
    with Store.open(_store_b(compendia, "b_tl.h5ad", shuffled)) as store_b:
        expected = evaluate_model(store_b, model, standardize="data", progress=False).metrics
        # the store's split and statistics as genesel.tl.prepare would have written them (prefixed columns)
        var = store_b.var.copy().rename(
            columns={c: f"genesel_{c}" for c in ("mean", "std", "symbol", "landmark", "constant")}
        )
        obs = pd.DataFrame(
            {"genesel_split": store_b.obs["split"].to_numpy()}, index=store_b.obs.index
        )
        adata = ad.AnnData(store_b.read_rows(slice(None), standardize=False), obs=obs, var=var)
    evaluation = tl.evaluate(adata, root / "model", standardize="data")
    assert evaluation.metrics["mse_imputed"] == pytest.approx(expected["mse_imputed"], rel=1e-9)
    assert evaluation.metrics["transfer"]["n_matched"] == expected["transfer"]["n_matched"]


def test_transfer_curve_and_report_section(compendia):
    from genesel.report.transfer import OWN_LANDMARKS, transfer_curve, transfer_section

    root, store_a, shuffled, model = compendia
    with (
        Store.open(store_a) as source,
        Store.open(_store_b(compendia, "b_curve.h5ad", shuffled)) as target,
    ):
        only_a = source.var.index[~source.var.index.isin(target.var.index)][:2]
        panels = {"landmarks": model.panel_ids.tolist(), "cae": [*model.panel_ids[:6], *only_a]}
        paths = []
        for method, genes in panels.items():
            path = root / "panels" / method / f"k{len(genes)}" / "seed0" / "panel.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"rank": range(1, len(genes) + 1), "gene_id": genes}).to_csv(
                path, sep="\t", index=False
            )
            paths.append(path)
        table = transfer_curve(source, target, paths).set_index("method")
        expected = evaluate_model(target, model, progress=False).metrics
    assert table.loc["landmarks", "mse_imputed"] == pytest.approx(
        expected["mse_imputed"], rel=1e-9
    )
    assert table.loc["landmarks", "n_missing_targets"] == expected["transfer"]["n_missing_targets"]
    assert (
        np.isnan(table.loc["cae", "mse_imputed"])
        and "2 of 8 panel genes are missing" in table.loc["cae", "missing_panel_genes"]
    )
    assert (
        table.loc[OWN_LANDMARKS, "n_genes"] == 54
        and table.loc[OWN_LANDMARKS, "n_matched"] == expected["transfer"]["n_matched"]
    )
    section = transfer_section(table.reset_index())
    assert section.figures["transfer"].startswith(b"\x89PNG") and len(section.tables) == 2
