"""Costs and budgets: with a budget every method's panel costs at most the budget (included
genes counted and kept), greedy prefers cheap informative genes, and bad cost files fail with
one clear line naming the file and rows."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from genesel.errors import ConfigError, InputFileError
from genesel.loader import LoaderConfig
from genesel.selectors import read_panel, read_panel_metadata, select_panel
from genesel.selectors.constraints import GeneConstraints
from genesel.selectors.costs import GeneCosts, resolve_costs
from genesel.store import Store
from tests.conftest import planted_matrix, write_store
from tests.test_include_exclude import PARAMS, RUN, TRAINER

#: Costs 1-4 cycling over the 30 genes (by id); GENE7 (cost 4) is included.
COSTS = {f"ENSG{j:011d}": float(1 + j % 4) for j in range(30)}
INCLUDE = ["GENE7"]
BUDGET = 14.0
#: Methods with a budget form (cae/ipcae refuse costs; landmarks is tested on its own).
BUDGET_METHODS = [m for m in PARAMS if m not in ("cae", "ipcae")]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    """A 200 x 30 planted store (genes 0-2 are landmarks)."""
    X, _ = planted_matrix(200, 30, 4, seed=5)
    path = write_store(tmp_path_factory.mktemp("costs") / "store.h5ad", X)
    with Store.open(path) as opened:
        yield opened


@pytest.fixture(scope="module")
def cost_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """COSTS as a TSV, genes 0-9 by symbol, 10-29 by id, the last five left to the default cost."""
    path = tmp_path_factory.mktemp("cost_file") / "costs.tsv"
    rows = [f"GENE{j}\t{COSTS[f'ENSG{j:011d}']}" for j in range(10)] + [
        f"ENSG{j:011d}\t{COSTS[f'ENSG{j:011d}']}" for j in range(10, 25)
    ]
    path.write_text("# probe prices\ngene\tcost\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("n_genes", [None, 6], ids=["budget-only", "with-n-genes"])
@pytest.mark.parametrize("method", BUDGET_METHODS)
def test_every_method_stays_within_the_budget(store, cost_file, method, n_genes, tmp_path):
    torch.manual_seed(0)
    result = select_panel(
        store,
        method=method,
        n_genes=n_genes,
        seed=0,
        params=PARAMS[method],
        trainer=TRAINER,
        run=RUN,
        loader=LoaderConfig(batch_size=32),
        include=INCLUDE,
        gene_cost=cost_file,
        default_cost=2.0,
        budget=BUDGET,
        out_dir=tmp_path,
    )
    expected = np.array([COSTS[g] if int(g[4:]) < 25 else 2.0 for g in result.gene_ids])
    assert expected.sum() <= BUDGET
    assert result.gene_indices[0] == 7, "the included gene stays, first"
    if n_genes is not None:
        assert result.n_genes == n_genes == len(result.gene_indices)
    else:  # as many as fit: the 13 genes left after GENE7 (cost 4) within 10 fit at least 2 more
        assert result.n_genes >= 3
    table = read_panel(tmp_path)
    assert table["cost"].tolist() == expected.tolist()
    metadata = read_panel_metadata(tmp_path)
    assert metadata["budget"] == BUDGET and metadata["total_cost"] == pytest.approx(expected.sum())
    assert metadata["gene_cost_sha256"] == hashlib.sha256(cost_file.read_bytes()).hexdigest()
    config = json.loads((tmp_path / "config.json").read_text())["config"]
    assert (
        config["budget"] == BUDGET
        and config["gene_cost"] == str(cost_file)
        and config["default_cost"] == 2.0
    )


def test_baselines_fill_the_budget_from_their_ranking(store):
    """random with only a budget adds genes in its random order while they fit: no cheaper gene is left that fits."""
    result = select_panel(store, method="random", gene_cost=COSTS, budget=BUDGET)
    spent = sum(COSTS[g] for g in result.gene_ids)
    assert spent <= BUDGET and BUDGET - spent < 1.0, "a cost-1 gene would still fit"


def test_greedy_prefers_cheap_informative_genes(tmp_path):
    """Genes 0 and 1 both copy the factor behind most genes, gene 0 a little more cleanly.

    Without costs greedy takes gene 0 first; when gene 0 costs 10 and gene 1 costs 1 it
    takes gene 1, and a budget of 5 keeps gene 0 out altogether.
    """
    rng = np.random.default_rng(0)
    factor = rng.normal(size=(300, 1))
    other = rng.normal(size=(300, 2))
    X = np.hstack(
        [
            factor + 0.05 * rng.normal(size=(300, 1)),
            factor + 0.1 * rng.normal(size=(300, 1)),
            factor @ rng.normal(size=(1, 14)) + 0.3 * rng.normal(size=(300, 14)),
            other @ rng.normal(size=(2, 4)) + 0.3 * rng.normal(size=(300, 4)),
        ]
    ).astype(np.float32)
    with Store.open(write_store(tmp_path / "store.h5ad", X)) as store:
        plain = select_panel(store, method="greedy", n_genes=3)
        costs = {"GENE0": 10.0, "GENE1": 1.0}
        cheap = select_panel(store, method="greedy", n_genes=3, gene_cost=costs)
        budgeted = select_panel(store, method="greedy", gene_cost=costs, budget=5.0)
    assert plain.gene_indices[0] == 0
    assert cheap.gene_indices[0] == 1
    assert 0 not in budgeted.gene_indices and 1 in budgeted.gene_indices
    assert budgeted.n_genes == 5 and budgeted.extra["total_cost"] == 5.0


def test_exact_size_reserves_room_for_the_cheapest_completion():
    """With n_genes asked for, an expensive first pick that would leave no room is skipped."""
    costs = GeneCosts(np.array([5.0, 1.0, 1.0, 1.0, 4.0]), "dict", None)
    exact = GeneConstraints(costs=costs, budget=7.0, exact_size=True, n_genes=3)
    assert exact.complete(np.array([0, 4, 1, 2, 3]), 3).tolist() == [0, 1, 2]  # 5 + 1 + 1
    assert exact.complete(np.array([4, 0, 1, 2, 3]), 3).tolist() == [
        4,
        1,
        2,
    ]  # 0 no longer fits after 4
    loose = GeneConstraints(costs=costs, budget=7.0, exact_size=False, n_genes=3)
    assert loose.complete(np.array([4, 0, 1, 2, 3]), 3).tolist() == [4, 1, 2]
    assert loose.complete(np.array([0, 4, 3]), 3).tolist() == [0, 3], (
        "budget-only panels may end short"
    )


def test_completion_within_the_budget_always_reaches_n_genes_when_some_panel_does():
    """Random costs, lists, budgets and rankings: whenever a K-gene panel fits, the walk finds one."""
    from genesel.selectors.costs import max_panel_size

    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(400):
        n_vars = int(rng.integers(5, 30))
        cost = rng.integers(1, 10, n_vars).astype(float)
        include = rng.choice(n_vars, int(rng.integers(0, 3)), replace=False)
        exclude = np.setdiff1d(rng.choice(n_vars, int(rng.integers(0, 4))), include)
        n_genes, budget = (
            int(rng.integers(include.size + 1, n_vars - exclude.size + 1)),
            float(rng.integers(1, 60)),
        )
        if (
            cost[include].sum() > budget
            or max_panel_size(cost, budget, include=include, exclude=exclude) < n_genes
        ):
            continue
        fixed = GeneConstraints(
            include, exclude, costs=GeneCosts(cost, "dict", None), budget=budget, n_genes=n_genes
        )
        panel = fixed.complete(rng.permutation(n_vars), n_genes)
        assert panel.size == n_genes == np.unique(panel).size and cost[panel].sum() <= budget
        assert panel[: include.size].tolist() == include.tolist() and not set(exclude) & set(
            panel.tolist()
        )
        checked += 1
    assert checked > 100


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("gene\tcost\nGENE1\tcheap\nGENE2\t2\n", "row 2 (GENE1): 'cheap'"),
        ("gene\tcost\nGENE1\t1\nGENE2\t-3\nGENE3\t0\n", "row 3 (GENE2): '-3', row 4 (GENE3): '0'"),
        ("gene\tcost\nGENE1\tinf\nGENE2\tnan\n", "row 2 (GENE1): 'inf', row 3 (GENE2): 'nan'"),
        ("gene\tcost\nGENE1\t\n", "row 2 (GENE1): ''"),
    ],
)
def test_bad_cost_values_are_named(store, tmp_path, text, named):
    path = tmp_path / "costs.tsv"
    path.write_text(text)
    with pytest.raises(InputFileError) as error:
        resolve_costs(store.var, path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(path)) and named in message


def test_bad_cost_tables_and_budgets_fail_clearly(store, tmp_path):
    path = tmp_path / "costs.tsv"
    path.write_text("gene\tprice\nGENE1\t1\n")
    with pytest.raises(
        InputFileError, match=r"costs.tsv: the gene cost table has columns \['gene', 'price'\]"
    ):
        resolve_costs(store.var, path)
    path.write_text("gene\tcost\nGENE1\t1\nENSG00000000001\t2\n")
    with pytest.raises(
        InputFileError, match="1 gene\\(s\\) given different costs: ENSG00000000001"
    ):
        resolve_costs(store.var, path)
    with pytest.raises(InputFileError, match="cannot read the gene cost table"):
        resolve_costs(store.var, tmp_path / "missing.tsv")
    with pytest.raises(
        ConfigError,
        match=r"gene_cost \(dict\): 1 cost\(s\) not a positive finite number: GENE2: -1",
    ):
        resolve_costs(store.var, {"GENE1": 1, "GENE2": -1})
    with pytest.raises(
        ConfigError, match="the 1 included genes cost 4 in all, more than the budget 3"
    ):
        select_panel(store, method="random", include=["GENE7"], gene_cost=COSTS, budget=3)
    with pytest.raises(ConfigError, match="no panel of n_genes=6 fits the budget 5"):
        select_panel(store, method="random", n_genes=6, budget=5)  # every gene costs the default 1
    with pytest.raises(ConfigError, match="cae is not supported with gene costs or a budget"):
        select_panel(store, method="cae", n_genes=4, gene_cost=COSTS)
    with pytest.raises(
        ConfigError,
        match="landmarks: the landmark panel of 3 genes costs 6, more than the budget 5",
    ):
        select_panel(
            store, method="landmarks", gene_cost=COSTS, budget=5
        )  # GENE0-2 cost 1 + 2 + 3
    with pytest.raises(ConfigError, match="budget must be a positive finite number"):
        select_panel(store, method="random", budget=-1)
    with pytest.raises(ConfigError, match="refine is not supported with a budget"):
        select_panel(store, method="random", n_genes=4, budget=10, refine=True)


def test_landmarks_within_the_budget(store):
    result = select_panel(store, method="landmarks", gene_cost=COSTS, budget=6)
    assert sorted(result.gene_indices.tolist()) == [0, 1, 2] and result.extra["total_cost"] == 6.0


def test_cli_budget_without_n_genes_and_a_bad_cost_file(store, cost_file, tmp_path, caplog):
    from genesel.cli.main import main

    out = tmp_path / "panel"
    argv = [
        "-q",
        "select",
        "--data",
        str(store.path),
        "--method",
        "greedy",
        "--gene-cost",
        str(cost_file),
        "--budget",
        "9",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    table = read_panel(out)
    assert table["cost"].sum() <= 9 and read_panel_metadata(out)["budget"] == 9
    bad = tmp_path / "bad.tsv"
    bad.write_text("gene\tcost\nGENE1\t-2\n")
    argv = [
        "-q",
        "select",
        "--data",
        str(store.path),
        "--method",
        "random",
        "-k",
        "4",
        "--gene-cost",
        str(bad),
        "--out",
        str(tmp_path / "x"),
    ]
    assert main(argv) == 1
    assert f"{bad}: 1 cost(s) not a positive finite number: row 2 (GENE1): '-2'" in caplog.text


def test_tl_select_panel_with_series_costs():
    import anndata

    import genesel

    X, _ = planted_matrix(120, 25, 3, seed=2)
    adata = anndata.AnnData(
        X,
        var=pd.DataFrame(
            {"symbol": [f"S{j}" for j in range(25)]}, index=[f"g{j}" for j in range(25)]
        ),
    )
    costs = pd.Series({f"S{j}": 1.0 + j % 3 for j in range(25)})
    genesel.tl.select_panel(
        adata, method="greedy", gene_cost=costs, budget=8.0, include=["g2"], progress=False
    )
    chosen = adata.var["genesel_selected"]
    assert adata.var.loc[chosen, "genesel_cost"].sum() <= 8.0 and chosen["g2"]
    record = adata.uns["genesel"]
    assert (
        record["budget"] == 8.0
        and record["total_cost"] == adata.var.loc[chosen, "genesel_cost"].sum()
    )
    assert record["n_genes"] == int(chosen.sum())


def test_workflow_config_validates_and_passes_costs_through(tmp_path: Path):
    from snakemake.exceptions import WorkflowError

    from tests.test_workflow import SNAKEMAKE, TINY_CONFIG, snakemake, validate_config

    config = {
        **TINY_CONFIG,
        "gene_cost": "costs.tsv",
        "budget": 50,
        "methods": {
            "random": {"budget": 20, "default_cost": 2},
            "cae": {"epochs": 1, "gene_cost": False, "budget": False},
        },
    }
    validated = validate_config(dict(config))
    assert validated["budget"] == 50 and validated["methods"]["random"]["budget"] == 20
    for bad in (
        {"budget": 0},
        {"budget": "cheap"},
        {"default_cost": -1},
        {"gene_cost": ""},
        {"methods": {"random": {"budget": True}}},
    ):
        with pytest.raises(WorkflowError):
            validate_config({**TINY_CONFIG, **bad})
    if not SNAKEMAKE.exists():
        pytest.skip("snakemake is not installed in this environment")
    result = snakemake(tmp_path, "-n", "-p", "--forceall", config=config)
    commands = {
        re.search(r"--method (\S+)", line).group(1): line
        for line in result.stdout.splitlines()
        if line.startswith("Shell command: genesel select")
    }
    assert set(commands) == {"random", "cae"}, result.stdout[-2000:] + result.stderr[-2000:]
    assert "--gene-cost costs.tsv --default-cost 2 --budget 20 " in commands["random"]
    assert "--gene-cost" not in commands["cae"] and "--budget" not in commands["cae"]


@pytest.mark.parametrize("method", ["logitnormal", "lassonet"])
def test_resume_refuses_a_checkpoint_of_other_costs_or_budget(store, method, tmp_path):
    options = {
        "method": method,
        "n_genes": 6,
        "params": PARAMS[method],
        "trainer": TRAINER,
        "run": RUN,
        "loader": LoaderConfig(batch_size=32),
        "out_dir": tmp_path,
    }
    select_panel(store, gene_cost=COSTS, budget=BUDGET, **options)
    with pytest.raises(InputFileError, match="constraints"):
        select_panel(store, gene_cost=COSTS, budget=BUDGET + 1, resume=True, **options)
    with pytest.raises(InputFileError, match="constraints"):
        select_panel(
            store,
            gene_cost={**COSTS, "ENSG00000000000": 9.0},
            budget=BUDGET,
            resume=True,
            **options,
        )


def test_report_draws_the_error_against_total_cost_when_panels_have_costs(tmp_path: Path):
    from genesel.report import build_report
    from genesel.report.layout import ResultsLayout
    from tests.test_report import write_fake_run

    run = write_fake_run(tmp_path / "run", decoders=("linear",), random_seeds=1)
    plain = build_report(run, tmp_path / "plain").index.read_text()
    assert "against total panel cost" not in plain, "no cost section without costs"
    layout = ResultsLayout.at(run)
    for panel in layout.root.rglob("panel.tsv"):
        table = panel.read_text()
        n_genes = len(table.splitlines()) - 1
        panel.write_text(f"# total_cost={2.5 * n_genes}\n# budget=1000\n" + table)
    outputs = build_report(run, tmp_path / "costed")
    page = outputs.index.read_text()
    assert "Imputation error against total panel cost" in page
    runs = pd.read_csv(outputs.runs_tsv, sep="\t")
    assert (runs["total_cost"] == 2.5 * runs["n_genes"]).all()


def test_cli_runs_of_a_budget_only_selection_are_named():
    from genesel.cli.select import run_directories

    assert run_directories("out", [None], [0]) == [(None, 0, "out")]
    assert run_directories("p/k{n_genes}/seed{seed}", [None], [0, 1]) == [
        (None, 0, "p/kbudget/seed0"),
        (None, 1, "p/kbudget/seed1"),
    ]
