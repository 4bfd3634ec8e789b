"""Panels within a budget: cost-aware greedy against cost-blind greedy and random panels (issue 14).

Real probe prices are not shipped, so every gene gets a seeded log-normal price (median 1,
``--sigma`` spread; the cost table's SHA-256 is printed). For each budget ``B``:

- ``greedy (costs)``: ``select_panel(method="greedy", gene_cost=..., budget=B)``, the next
  gene the largest validated error drop per unit cost among those that fit;
- ``greedy (cost-blind)``: the plain greedy order, taken while it fits (what one gets by
  running greedy without costs and cutting its panel at the budget);
- ``random``: ``--random`` seeded random panels within ``B`` (random order, added while they fit).

Data: the real GPL96 arrays of ``tests/data/gpl96_74_arrays.h5ad`` as in
``benchmarks/include_half_landmarks.py`` (D-GEX landmarks plus the ``--targets`` most variable
other genes, split 60/20/20). Error: imputed-gene test MSE of the linear decoder with a
validated ridge, standardised units.

    PYTHONPATH=. python benchmarks/cost_budget.py --out /tmp/cost_budget.tsv
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.include_half_landmarks import FIXTURE, QUIET, build_store, gene_level  # noqa: E402
from genesel.impute.sweep import evaluate_linear_panels  # noqa: E402
from genesel.moments import compute_moments, open_moments  # noqa: E402
from genesel.selectors.constraints import GeneConstraints  # noqa: E402
from genesel.selectors.costs import resolve_costs  # noqa: E402
from genesel.selectors.select import select_panel  # noqa: E402
from genesel.store import Store  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--targets", type=int, default=1000, help="most variable non-landmark genes kept"
    )
    parser.add_argument(
        "--budgets", type=float, nargs="+", default=[25.0, 50.0, 100.0], help="budgets B"
    )
    parser.add_argument(
        "--sigma", type=float, default=1.0, help="spread of the log-normal prices (log scale)"
    )
    parser.add_argument("--random", type=int, default=10, help="random panels per budget")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the prices")
    parser.add_argument("--out", default=None, help="TSV of every panel's error")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store_path = build_store(
            "gpl96_74",
            gene_level("gpl96_74", FIXTURE, root),
            root,
            targets=args.targets,
            seed=args.seed,
        )
        with Store.open(store_path) as store:
            moments_path = compute_moments(store, root / "moments.h5", progress=False)
            prices = np.round(
                np.exp(args.sigma * np.random.default_rng(args.seed).normal(size=store.n_vars)), 2
            ).clip(0.01)
            table = pd.DataFrame({"gene": store.gene_ids.astype(str), "cost": prices})
            cost_file = root / "prices.tsv"
            table.to_csv(cost_file, sep="\t", index=False)
            digest = hashlib.sha256(cost_file.read_bytes()).hexdigest()
            params = {"moments": str(moments_path)}
            costs = resolve_costs(store.var, cost_file)
            largest = (
                int(3 * max(args.budgets) / np.median(prices)) + 1
            )  # long enough to fill the largest budget
            blind_order = select_panel(
                store,
                method="greedy",
                n_genes=min(largest, store.n_vars - 1),
                params=params,
                trainer=QUIET,
            ).gene_indices
            panels: dict[tuple[float, str], np.ndarray] = {}
            for budget in args.budgets:
                panels[(budget, "greedy (costs)")] = select_panel(
                    store,
                    method="greedy",
                    gene_cost=cost_file,
                    budget=budget,
                    params=params,
                    trainer=QUIET,
                ).gene_indices
                limits = GeneConstraints(
                    costs=costs, budget=budget, exact_size=False, n_genes=store.n_vars - 1
                )
                panels[(budget, "greedy (cost-blind)")] = limits.complete_within_budget(
                    blind_order, store.n_vars - 1
                )
                for seed in range(args.random):
                    panels[(budget, f"random{seed}")] = select_panel(
                        store, method="random", gene_cost=cost_file, budget=budget, seed=seed
                    ).gene_indices
            with open_moments(moments_path, store) as moments:
                results = evaluate_linear_panels(
                    store, moments, panels, ridge="auto", progress=False
                )
            for (budget, method), result in results.items():
                genes = panels[(budget, method)]
                rows.append(
                    {
                        "budget": budget,
                        "method": method,
                        "n_genes": int(genes.size),
                        "total_cost": float(prices[genes].sum()),
                        "mse_imputed": result.evaluation.metrics["mse_imputed"],
                    }
                )
            print(
                f"gpl96_74: {store.split_indices('train').size} train / {store.split_indices('test').size} test arrays, "
                f"D = {store.n_vars}; prices log-normal sigma {args.sigma} (median {np.median(prices):.2f}), sha256 {digest[:12]}"
            )
    frame = pd.DataFrame(rows)
    is_random = frame["method"].str.startswith("random")
    random = (
        frame[is_random]
        .groupby("budget")
        .agg(
            random_median=("mse_imputed", "median"),
            random_min=("mse_imputed", "min"),
            random_genes=("n_genes", "median"),
        )
    )
    wide = frame[~is_random].pivot(
        index="budget", columns="method", values=["mse_imputed", "n_genes", "total_cost"]
    )
    wide.columns = [f"{method}: {value}" for value, method in wide.columns]
    print(wide.join(random).T.to_string(float_format=lambda v: f"{v:.4f}"))
    if args.out:
        frame.to_csv(args.out, sep="\t", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
