"""The sweep plan: its rules, and that the workflow and tl.panel_curve both follow it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import yaml

import genesel.tl
import genesel.tl._curve
from genesel.errors import ConfigError
from genesel.store import Store
from genesel.sweep_plan import PanelRun, plan_sweep, sizes_around_landmarks
from tests.conftest import planted_matrix, write_store
from tests.test_workflow import REPO, SNAKEMAKE, snakemake


def no_store() -> tuple[int, int]:
    raise AssertionError("the plan must not need the store here")


def test_plan_expands_methods_sizes_and_seeds() -> None:
    plan = plan_sweep(
        {"cae": [0, 1], "random": [0, 1], "landmarks": [0]},
        [20, 10, 10],
        decoders=["linear", "mlp"],
        gene_counts=lambda: (40, 500),
        random_panels=3,
    )
    assert plan.sizes == (10, 20, 30, 40, 50)  # sorted, unique, +-25 % of the 40 landmarks
    assert plan.selected[:2] == [PanelRun("cae", 10, 0), PanelRun("cae", 10, 1)]
    # random: selected with its seeds for the mlp, drawn 3 per size by the linear curve
    assert len([r for r in plan.selected if r.method == "random"]) == 10
    assert len(plan.drawn) == 15 and {r.seed for r in plan.drawn} == {0, 1, 2}
    assert [r for r in plan.runs if r.method == "landmarks"] == [PanelRun("landmarks", 40, 0)]


def test_plan_needs_the_store_only_when_asked() -> None:
    plan = plan_sweep(
        {"hvg": [0], "random": [0]},
        [5],
        decoders=["linear"],
        gene_counts=no_store,
        around_landmarks=False,
        random_panels=2,
    )
    assert plan.selected == [PanelRun("hvg", 5, 0)]  # random only drawn: no fitted decoder
    assert plan.drawn == [PanelRun("random", 5, 0, drawn=True), PanelRun("random", 5, 1, True)]
    with pytest.raises(ConfigError, match="landmark genes"):
        plan_sweep(
            {"landmarks": [0]}, [5], decoders=["mlp"], gene_counts=lambda: (0, 50), random_panels=0
        )
    assert sizes_around_landmarks(0, 50) == set() and sizes_around_landmarks(40, 45) == {30, 40}


def planned_panels(output: str) -> set[tuple[str, int, int]]:
    """(method, n_genes, seed) of the selection jobs of a dry run with ``--printshellcmds``."""
    found = re.findall(
        r"^rule (?:train_panel|select_baseline_panel):\n(?:    .*\n)*?"
        r"    wildcards: method=(\S+), n_genes=(\d+), seed=(\d+)$",
        output,
        re.M,
    )
    return {(m, int(k), int(s)) for m, k, s in found}


@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed")
def test_workflow_targets_are_the_plan_of_the_demo_config(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["batch_runs"] = False  # one job per panel, so the dry run lists every panel
    data = tmp_path / "results" / config["run"] / "data"
    data.mkdir(parents=True)
    (data / "compendium.h5ad").touch()  # the preprocess checkpoint is done: the plan is known
    store = write_store(data / "store.h5ad", planted_matrix(40, 500, 3)[0], landmark_fraction=0.09)
    with Store.open(store) as opened:
        counts = (int(opened.landmark_mask.sum()), opened.n_vars)
    result = snakemake(tmp_path, "-n", "--printshellcmds", config=config)
    assert result.returncode == 0, result.stdout + result.stderr
    seeds = {m: s.get("seeds", config["seeds"]) for m, s in config["methods"].items()}
    plan = plan_sweep(
        seeds,
        config["panel_sizes"],
        decoders=list(config["decoders"]),
        gene_counts=lambda: counts,
        around_landmarks=config["reference"]["sizes_around_landmarks"],
        random_panels=config["reference"]["random_panels"],
    )
    assert len(plan.sizes) == 3 and len(plan.drawn) == 3 * config["reference"]["random_panels"]
    assert planned_panels(result.stdout) == {(r.method, r.n_genes, r.seed) for r in plan.selected}
    sizes = " ".join(map(str, plan.sizes))
    assert f"--random-panels {config['reference']['random_panels']} --random-sizes {sizes}" in (
        result.stdout
    )


def test_panel_curve_iterates_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    X, _ = planted_matrix(240, 30, 3, seed=1)
    adata = anndata.AnnData(
        X.astype(np.float32),
        var=pd.DataFrame(index=[f"g{j}" for j in range(30)]),
        obs=pd.DataFrame(index=[f"s{i}" for i in range(240)]),
    )
    plans = []

    def spy(*args, **kwargs):
        plans.append(plan_sweep(*args, **kwargs))
        return plans[-1]

    monkeypatch.setattr(genesel.tl._curve, "plan_sweep", spy)
    frame = genesel.tl.panel_curve(
        adata,
        sizes=(6, 4),
        methods=("hvg", "random"),
        random_panels=3,
        sizes_around_landmarks=False,
        progress=False,
    )
    (plan,) = plans
    assert list(zip(frame["method"], frame["n_genes"], frame["seed"], strict=True)) == [
        (r.method, r.n_genes, r.seed) for r in plan.runs
    ]
    assert len(plan.drawn) == 6  # the linear decoder: 3 random panels per size


def test_workflow_defaults_are_the_cores() -> None:
    from genesel.evaluate import evaluate_model
    from genesel.impute.curve import DEFAULT_RANDOM_PANELS

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    reference = schema["properties"]["reference"]["properties"]
    evaluation = schema["properties"]["evaluation"]["properties"]
    assert reference["random_panels"]["default"] == DEFAULT_RANDOM_PANELS
    around = inspect.signature(plan_sweep).parameters["around_landmarks"].default
    assert reference["sizes_around_landmarks"]["default"] is around
    split = inspect.signature(evaluate_model).parameters["split"].default
    assert evaluation["split"]["default"] == split
