"""Include and exclude: every method keeps the included genes, never picks an excluded one, and
fills the panel to exactly ``n_genes``; clear errors for unknown and conflicting genes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from genesel.errors import ConfigError, InputFileError
from genesel.loader import LoaderConfig
from genesel.run import RunConfig
from genesel.selectors import read_panel, read_panel_metadata, select_panel
from genesel.selectors.constraints import GeneConstraints, resolve_constraints
from genesel.selectors.gene_lists import parse_gene_list
from genesel.selectors.logitnormal_mask import LogitNormalMask
from genesel.store import Store
from genesel.training import TrainerConfig
from tests.conftest import planted_matrix, write_store

K = 8
#: Genes fixed in, and genes kept out, of every panel (the store's first 4 genes are landmarks).
INCLUDE = ["ENSG00000000011", "GENE7", "ENSG00000000002"]
EXCLUDE = "GENE0,GENE1,GENE3,GENE5,GENE6"
INCLUDED = [11, 7, 2]
EXCLUDED = [0, 1, 3, 5, 6]
#: Tiny budgets: these tests check the constraints, not the panels' quality.
TRAINER = TrainerConfig(max_epochs=2, learning_rate=0.02, min_steps=0, stop_when_converged=False)
RUN = RunConfig(seed=0, device="cpu", progress=False)
PARAMS = {
    "cae": {"decoder_hidden": [8]},
    "ipcae": {"decoder_hidden": [8], "embedding_dim": 8, "gjsd_weight": 0.01},
    "lassonet": {
        "hidden": [8],
        "epochs_per_lambda": 2,
        "lambda_patience": 1,
        "path_multiplier": 2.0,
        "refit_epochs": 1,
    },
    "logitnormal": {"decoder_hidden": [8], "latent_dim": 4},
    "logitnormal-hnet": {
        "decoder_hidden": [8],
        "latent_dim": 4,
        "embedding_dim": 4,
        "hyper_hidden": 8,
    },
    "random": {},
    "hvg": {},
    "qr": {},
    "greedy": {},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    """A 200 x 30 planted store (genes 0-2 are landmarks)."""
    X, _ = planted_matrix(200, 30, 4, seed=5)
    path = write_store(tmp_path_factory.mktemp("include") / "store.h5ad", X)
    with Store.open(path) as opened:
        yield opened


@pytest.mark.parametrize("method", list(PARAMS))
def test_every_method_keeps_included_and_never_picks_excluded(store, method, tmp_path):
    torch.manual_seed(0)
    result = select_panel(
        store,
        method=method,
        n_genes=K,
        seed=0,
        params=PARAMS[method],
        trainer=TRAINER,
        run=RUN,
        loader=LoaderConfig(batch_size=32),
        include=INCLUDE,
        exclude=EXCLUDE,
        out_dir=tmp_path,
    )
    genes = result.gene_indices
    assert len(genes) == K == len(set(genes.tolist()))
    assert genes[:3].tolist() == INCLUDED, "included genes lead the panel, in the order given"
    assert not set(EXCLUDED) & set(genes.tolist())
    table = read_panel(tmp_path)
    assert table["status"].tolist() == ["included"] * 3 + ["selected"] * (K - 3)
    assert read_panel_metadata(tmp_path)["n_included"] == 3
    assert result.config["exclude"] == [f"ENSG{j:011d}" for j in EXCLUDED]


def test_greedy_completion_is_the_greedy_path_from_the_included_genes(store):
    plain = select_panel(store, method="greedy", n_genes=K)
    started = select_panel(store, method="greedy", n_genes=K, include=plain.gene_ids[:3].tolist())
    (
        np.testing.assert_array_equal(started.gene_indices, plain.gene_indices),
        "a greedy prefix included gives the same path",
    )
    shunned = select_panel(store, method="greedy", n_genes=K, exclude=plain.gene_ids[:1].tolist())
    assert plain.gene_indices[0] not in shunned.gene_indices


def test_refine_never_swaps_out_included_or_in_excluded(store):
    result = select_panel(
        store,
        method="random",
        n_genes=K,
        seed=3,
        include=INCLUDE,
        exclude=EXCLUDE,
        refine={"max_swaps": 4},
    )
    assert result.gene_indices[:3].tolist() == INCLUDED
    assert not set(EXCLUDED) & set(result.gene_indices.tolist())
    assert all(swap["out"] not in INCLUDED for swap in result.extra["refine"]["swaps"])


def test_landmarks_word_and_the_landmark_method(store):
    n_landmarks = int(store.landmark_mask.sum())
    result = select_panel(store, method="random", n_genes=K, include="landmarks")
    assert set(np.flatnonzero(store.landmark_mask)) <= set(result.gene_indices.tolist())
    panel = select_panel(
        store, method="landmarks", n_genes=n_landmarks, include="GENE20", exclude="GENE0"
    )
    assert panel.gene_indices[0] == 20 and 0 not in panel.gene_indices
    with pytest.raises(ConfigError, match="use n_genes=4") as error:
        select_panel(store, method="landmarks", n_genes=n_landmarks, include="GENE20")
    assert error.value.parameter == "n_genes"


def test_all_included_runs_no_method(store):
    result = select_panel(
        store, method="cae", n_genes=3, include=INCLUDE, trainer=TRAINER, run=RUN
    )
    assert result.gene_indices.tolist() == INCLUDED and result.included.all()


def test_unknown_and_conflicting_genes_are_named(store):
    with pytest.raises(ConfigError, match=r"not in the data.*NOPE1, NOPE2"):
        select_panel(store, method="random", n_genes=K, include=["GENE1", "NOPE1", "NOPE2"])
    with pytest.raises(ConfigError, match=r"exclude: 1 gene\(s\) not in the data.*NOPE"):
        select_panel(store, method="random", n_genes=K, exclude="NOPE")
    with pytest.raises(ConfigError, match=r"both included and excluded: ENSG00000000007"):
        select_panel(store, method="random", n_genes=K, include=INCLUDE, exclude="gene7")
    with pytest.raises(ConfigError, match=r"3 genes are included but the panel has n_genes=2"):
        select_panel(store, method="random", n_genes=2, include=INCLUDE)
    with pytest.raises(
        ConfigError, match=r"only 2 of the data's 30 genes are neither included nor excluded"
    ):
        select_panel(
            store,
            method="random",
            n_genes=K,
            include=INCLUDE,
            exclude=[f"GENE{j}" for j in range(30) if j not in (2, 7, 11, 12, 13)],
        )


def test_gene_lists_from_files_and_panel_tables(store, tmp_path: Path):
    plain = tmp_path / "genes.txt"
    plain.write_text("# fixed probes\nGENE4\n\nENSG00000000009\n")
    assert parse_gene_list(str(plain)) == ["GENE4", "ENSG00000000009"]
    panel = select_panel(store, method="random", n_genes=4, seed=1, out_dir=tmp_path / "old")
    fixed = resolve_constraints(store.var, K, include=str(tmp_path / "old" / "panel.tsv"))
    np.testing.assert_array_equal(fixed.include, panel.gene_indices)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(InputFileError, match="holds no gene"):
        parse_gene_list(empty)


def test_old_panel_files_read_as_selected(tmp_path: Path):
    path = tmp_path / "panel.tsv"
    pd.DataFrame(
        {
            "rank": [1, 2],
            "gene_id": ["a", "b"],
            "symbol": ["A", "B"],
            "landmark": [False, True],
            "score": [1.0, 0.5],
        }
    ).to_csv(path, sep="\t", index=False)
    assert read_panel(path)["status"].tolist() == ["selected", "selected"]


def test_forced_logitnormal_gates_are_constant():
    torch.manual_seed(0)
    mask = LogitNormalMask(10, latent_dim=3, forced_open=[1, 4], forced_closed=[0])
    samples = mask.sample(64)
    assert torch.all(samples[:, [1, 4]] == 1) and torch.all(samples[:, 0] == 0)
    probability = mask.open_probability()
    assert probability[[1, 4]].tolist() == [1.0, 1.0] and probability[0] == 0
    mask.expected_l0().backward()
    assert mask.bias.grad[[0, 1, 4]].abs().sum() == 0 and mask.bias.grad.abs().sum() > 0
    assert mask.top_genes(2).tolist() == [1, 4]


def test_complete_skips_included_and_excluded():
    constraints = GeneConstraints([5, 2], [0])
    assert constraints.complete(np.array([0, 5, 3, 2, 1, 4]), 4).tolist() == [5, 2, 3, 1]
    with pytest.raises(ConfigError, match="only 1 candidate"):
        constraints.complete(np.array([0, 3]), 4)


def test_cli_include_exclude_and_a_clear_error(store, tmp_path: Path, caplog):
    from genesel.cli.main import main

    genes = tmp_path / "fixed.txt"
    genes.write_text("GENE11\nGENE7\n")
    out = tmp_path / "panel"
    assert (
        main(
            [
                "-q",
                "select",
                "--data",
                str(store.path),
                "--method",
                "qr",
                "-k",
                "6",
                "--include",
                str(genes),
                "--exclude",
                "GENE0,GENE1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    table = read_panel(out)
    assert (
        table["gene_id"].tolist()[:2] == ["ENSG00000000011", "ENSG00000000007"] and len(table) == 6
    )
    assert table["status"].tolist() == ["included"] * 2 + ["selected"] * 4
    assert not {"ENSG00000000000", "ENSG00000000001"} & set(table["gene_id"])
    assert (
        main(
            [
                "-q",
                "select",
                "--data",
                str(store.path),
                "--method",
                "random",
                "-k",
                "6",
                "--exclude",
                "GENE99",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 1
    )
    assert (
        "exclude: 1 gene(s) not in the data (matched by gene id, then symbol): GENE99"
        in caplog.text
    )


def test_tl_select_panel_include_exclude():
    import anndata

    import genesel

    X, _ = planted_matrix(120, 25, 3, seed=2)
    adata = anndata.AnnData(
        X,
        var=pd.DataFrame(
            {"symbol": [f"S{j}" for j in range(25)]}, index=[f"g{j}" for j in range(25)]
        ),
    )
    genesel.tl.select_panel(
        adata, n_genes=6, method="greedy", include=["S3", "g4"], exclude=["S0"]
    )
    assert adata.var.loc[["g3", "g4"], "genesel_rank"].tolist() == [1.0, 2.0]
    assert adata.var["genesel_included"].sum() == 2 and adata.var["genesel_selected"].sum() == 6
    assert not adata.var.loc["g0", "genesel_selected"] and adata.uns["genesel"]["included"] == [
        "g3",
        "g4",
    ]


def test_workflow_config_validates_and_passes_the_lists_through(tmp_path: Path):
    from snakemake.exceptions import WorkflowError

    from tests.test_workflow import SNAKEMAKE, TINY_CONFIG, snakemake, validate_config

    config = {
        **TINY_CONFIG,
        "include": "landmarks",
        "exclude": ["GENE_A", "GENE_B"],
        "methods": {
            "random": {"exclude": "GENE_C"},
            "cae": {"epochs": 1, "include": None},
            "landmarks": {"include": []},
        },
    }
    validated = validate_config(dict(config))
    assert (
        validated["include"] == "landmarks"
        and validated["methods"]["random"]["exclude"] == "GENE_C"
    )
    with pytest.raises(WorkflowError):
        validate_config({**TINY_CONFIG, "include": ["GENE_A,GENE_B"]})  # a list item is one gene
    with pytest.raises(WorkflowError):
        validate_config({**TINY_CONFIG, "methods": {"random": {"include": 5}}})
    if not SNAKEMAKE.exists():
        pytest.skip("snakemake is not installed in this environment")
    result = snakemake(tmp_path, "-n", "-p", "--forceall", config=config)
    commands = {
        re.search(r"--method (\S+)", line).group(1): line
        for line in result.stdout.splitlines()
        if line.startswith("Shell command: genesel select")
    }
    # (the landmark panel's size, and so its job, is only known once the store exists)
    assert set(commands) == {"random", "cae"}, result.stdout[-2000:] + result.stderr[-2000:]
    assert "--include landmarks --exclude GENE_C " in commands["random"]
    assert "--include landmarks --exclude GENE_A,GENE_B " in commands["cae"]


@pytest.mark.parametrize("method", ["cae", "lassonet"])
def test_resume_refuses_a_checkpoint_of_other_gene_lists(store, method, tmp_path):
    options = {
        "method": method,
        "n_genes": K,
        "params": PARAMS[method],
        "trainer": TRAINER,
        "run": RUN,
        "loader": LoaderConfig(batch_size=32),
        "out_dir": tmp_path,
    }
    select_panel(store, include=INCLUDE, **options)
    with pytest.raises(InputFileError, match="constraints"):
        select_panel(store, include=INCLUDE[:2], resume=True, **options)
