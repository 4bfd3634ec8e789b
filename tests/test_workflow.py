"""The Snakemake workflow: lint, config validation, profile dry runs and a tiny end-to-end run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEMAKE = BIN / "snakemake"

#: Few samples, genes and epochs; 3 methods, 1 size (no sizes added around the landmark
#: count, so the plan is known before the store exists), 1 seed, both decoders: 12 short jobs.
TINY_CONFIG = {
    "run": "tiny",
    "input": {"simulate": {"n_obs": 300, "n_vars": 200, "seed": 0}},
    "methods": {
        "cae": {"epochs": 3, "batch_size": 64, "min_steps": 0},
        "random": {},
        "landmarks": {},
    },
    "panel_sizes": [8],
    "seeds": [0],
    "decoders": {"linear": {}, "mlp": {"hidden": [16], "epochs": 2}},
    "reference": {"random_panels": 4, "sizes_around_landmarks": False},
}

pytestmark = pytest.mark.skipif(
    not SNAKEMAKE.exists(), reason="snakemake is not installed in this environment"
)


def snakemake(
    workdir: Path, *args: str, config: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run the repository's workflow in ``workdir`` with a config file written from ``config``."""
    command = [
        str(SNAKEMAKE),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]
    if config is not None:
        path = workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        command += ["--configfile", str(path)]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir
    )


def planned_jobs(output: str) -> dict[str, int]:
    """The "Job stats" table of a dry run as {rule: count}."""
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:")[1].split("total")[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_lint_is_clean(tmp_path: Path) -> None:
    result = snakemake(tmp_path, "--lint", config=TINY_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


@pytest.mark.parametrize("profile", ["local", "gpu", "slurm"])
def test_profile_dry_run(tmp_path: Path, profile: str) -> None:
    result = snakemake(
        tmp_path, "-n", "--profile", str(REPO / "profiles" / profile), config=TINY_CONFIG
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = planned_jobs(result.stdout)
    # cae and random (for the mlp decoder); the landmark panel waits for the store (preprocess
    # is a checkpoint); the linear decoder scores every panel in one job from the moments.
    assert jobs["train_panel"] == 1 and jobs["select_baseline_panel"] == 1
    assert (
        jobs["fit_imputer"] == 2
        and jobs["moments"] == 1
        and jobs["linear_curve"] == 1
        and jobs["report"] == 1
    )
    if profile == "slurm":
        assert "gres=gpu:1" in result.stdout
    if profile == "gpu":
        assert re.search(r"rule train_panel:(?:\n    .*)*?\n    resources: .*gpu=1", result.stdout)


def validate_config(config: dict) -> dict:
    """Validate a config against the workflow's schema in-process (as the Snakefile does)."""
    from snakemake.utils import validate

    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return config


def test_demo_and_geo_configs_are_valid() -> None:
    demo = validate_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    geo = validate_config(yaml.safe_load((REPO / "config" / "geo.yaml").read_text()))
    assert set(demo["methods"]) >= {
        "cae",
        "ipcae",
        "lassonet",
        "logitnormal",
        "landmarks",
        "random",
        "hvg",
        "qr",
    }
    assert set(demo["decoders"]) == set(geo["decoders"]) == {"linear", "mlp"}
    assert geo["decoders"]["mlp"]["hidden"][0] == 9000
    assert demo["decoders"]["mlp"]["hidden"][0] < 1000
    assert demo["evaluation"] == {"split": "test", "metric": None}  # defaults filled in
    assert demo["reference"] == {"random_panels": 10, "sizes_around_landmarks": True}
    assert geo["decoders"]["linear"]["ridge"] == "auto"


def test_geo_config_names_the_missing_compendium(tmp_path: Path) -> None:
    result = snakemake(tmp_path, "-n", "--configfile", str(REPO / "config" / "geo.yaml"))
    assert result.returncode != 0
    assert "bgedv2_QNORM.gctx" in result.stdout + result.stderr


def test_schema_violation_fails_the_workflow_naming_the_key(tmp_path: Path) -> None:
    result = snakemake(tmp_path, "-n", config={**TINY_CONFIG, "methods": {"cea": {}}})
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "Error validating config file" in message and "'cea' was unexpected" in message, (
        message[-2000:]
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"panel_sizes": [0, 10]}, "panel_sizes"),
        ({"decoders": {"mlp": {"hidden": [64], "epoch": 3}}}, "'epoch' was unexpected"),
        ({"threads": 4}, "'threads' was unexpected"),
        ({"methods": {"cae": {"epochs": "many"}}}, "epochs"),
        ({"transfer": {"path": "b.h5ad", "standardize": "both"}}, "standardize"),
        ({"transfer": {"standardize": "data"}}, "'path' is a required property"),
    ],
)
def test_schema_violation_names_the_key(change: dict, named: str) -> None:
    from snakemake.exceptions import WorkflowError

    with pytest.raises(WorkflowError) as error:
        validate_config({**TINY_CONFIG, **change})
    assert named in str(error.value) + str(error.value.__cause__ or "") + "".join(
        map(str, error.value.args)
    )


def test_transfer_is_planned_only_when_configured(tmp_path: Path) -> None:
    from tests.conftest import planted_matrix, write_store

    other = write_store(
        tmp_path / "other.h5ad", planted_matrix(60, 20, 3)[0]
    )  # a genesel store: used as it is
    config = {**TINY_CONFIG, "decoders": {"linear": {}}, "transfer": {"path": str(other)}}
    assert validate_config(dict(config))["transfer"] == {
        "path": str(other),
        "format": None,
        "standardize": "model",
    }
    jobs = planned_jobs(snakemake(tmp_path, "-n", config=config).stdout)
    assert jobs["transfer"] == 1 and "preprocess_transfer" not in jobs and jobs["report"] == 1
    assert "transfer" not in validate_config(
        dict(TINY_CONFIG)
    )  # unset: no rule, the plan of the other dry runs


def test_input_needs_exactly_one_source(tmp_path: Path) -> None:
    config = {**TINY_CONFIG, "input": {"simulate": {"n_obs": 100}, "path": "data.gctx"}}
    result = snakemake(tmp_path, "-n", config=config)
    assert result.returncode != 0
    assert (
        "input.simulate" in result.stdout + result.stderr
        and "input.path" in result.stdout + result.stderr
    )


@pytest.mark.slow
def test_tiny_workflow_end_to_end(tmp_path: Path) -> None:
    result = snakemake(
        tmp_path, "--profile", str(REPO / "profiles" / "local"), "--cores", "2", config=TINY_CONFIG
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = tmp_path / "results" / "tiny"
    report = run / "report"
    page = (report / "index.html").read_text()
    assert "data:image/png;base64," in page
    curves = pd.read_csv(report / "curves.tsv", sep="\t")
    assert set(curves["method"]) == {"cae", "random", "landmarks"}
    assert set(curves.loc[curves["method"] != "landmarks", "n_genes"]) == {8}
    assert (curves["mean"] > 0).all() and (curves["low"] <= curves["high"]).all()
    random_linear = curves[(curves["method"] == "random") & (curves["decoder"] == "linear")].iloc[
        0
    ]
    assert (
        random_linear["n_seeds"] == 4 and random_linear["band_low"] <= random_linear["band_high"]
    )
    assert (run / "benchmarks" / "train_panel" / "cae_k8_seed0.tsv").exists()
    assert (run / "logs" / "fit_imputer" / "random_k8_seed0_mlp.log").exists()
    assert (report / "landmark_match.tsv").exists()
    assert '<p class="lead">With the linear decoder' in page

    again = snakemake(tmp_path, "-n", config=TINY_CONFIG)
    assert planned_jobs(again.stdout) == {}, "a second run must have nothing to do"

    (run / "panels" / "random" / "k8" / "seed0" / "panel.tsv").unlink()
    rerun = snakemake(tmp_path, "-n", config=TINY_CONFIG)
    assert planned_jobs(rerun.stdout) == {
        "select_baseline_panel": 1,
        "fit_imputer": 1,
        "aggregate": 1,
        "report": 1,
        "all": 1,
    }


@pytest.mark.slow
def test_batched_workflow_runs_one_job_per_method_and_decoder(tmp_path: Path) -> None:
    """batch_runs (the demo's setting): one selection job per method for all its sizes and seeds,
    one MLP job for every panel; the same files as the per-panel jobs, and a rerun does nothing."""
    config = {**TINY_CONFIG, "seeds": [0, 1], "batch_runs": True}
    planned = snakemake(tmp_path, "-n", config=config)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    jobs = planned_jobs(planned.stdout)
    assert "train_panel" not in jobs and "fit_imputer" not in jobs
    result = snakemake(
        tmp_path, "--profile", str(REPO / "profiles" / "local"), "--cores", "2", config=config
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "localrule" not in result.stdout + result.stderr, (
        "the local profile prints no per-job rule blocks"
    )
    run = tmp_path / "results" / "tiny"
    listed = (run / "panels" / "cae" / "panels.txt").read_text().split()
    assert listed == [f"results/tiny/panels/cae/k8/seed{seed}/panel.tsv" for seed in (0, 1)]
    assert all((tmp_path / path).exists() for path in listed)
    metrics = (run / "metrics" / "mlp_runs.txt").read_text().split()
    assert len(metrics) == 6 and all(
        (tmp_path / path).exists() for path in metrics
    )  # cae, random, landmarks x 2 seeds
    runs = pd.read_csv(run / "report" / "runs.tsv", sep="\t")
    assert set(zip(runs["method"], runs["seed"], runs["decoder"])) >= {
        ("cae", 1, "mlp"),
        ("cae", 0, "linear"),
        ("landmarks", 0, "mlp"),
    }
    assert (run / "benchmarks" / "select_method_panels" / "cae.tsv").exists()
    assert planned_jobs(snakemake(tmp_path, "-n", config=config).stdout) == {}, (
        "a second run must have nothing to do"
    )

    (run / "panels" / "random" / "panels.txt").unlink()
    rerun = snakemake(tmp_path, "-n", config=config)
    assert planned_jobs(rerun.stdout) == {
        "select_method_panels": 1,
        "fit_decoder_panels": 1,
        "aggregate": 1,
        "report": 1,
        "all": 1,
    }
