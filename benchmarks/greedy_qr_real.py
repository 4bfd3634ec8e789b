"""Greedy, Q-DEIM (original and regularised) and random panels on real data with few samples.

For each data set: the ``--genes`` most variable genes, a seeded 60/20/20 split, the
moments, then the test imputed-gene MSE (standardised units) of the linear decoder with a
validated ridge (``evaluate_linear_panels(ridge="auto")``) for every panel, at sizes
0.1-1.5x the number of train rows. Prints one table per data set and writes them to
``--out`` (TSV).

    PYTHONPATH=. python benchmarks/greedy_qr_real.py --out /tmp/greedy_qr.tsv
"""

from __future__ import annotations

import argparse
import glob
import logging
import sys
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genesel.impute.sweep import evaluate_linear_panels  # noqa: E402
from genesel.moments import compute_moments, open_moments  # noqa: E402
from genesel.run import RunConfig  # noqa: E402
from genesel.selectors.greedy import greedy_path  # noqa: E402
from genesel.selectors.select import select_panel  # noqa: E402
from genesel.store import Store  # noqa: E402
from tests.conftest import write_store  # noqa: E402

QUIET = RunConfig(progress=False)
from tests.test_impute_gpl96 import FIXTURE, average_probes, dgex_genes  # noqa: E402

REALDATA = "/work/wt-realdata/benchmarks/data/*.h5ad"


def datasets(n_genes: int) -> dict[str, np.ndarray]:
    """Name -> samples x genes (the ``n_genes`` most variable)."""
    out = {"gpl96_74": average_probes(ad.read_h5ad(FIXTURE), dgex_genes())}
    for path in sorted(glob.glob(REALDATA)):
        adata = ad.read_h5ad(path)
        X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
        out[Path(path).stem] = X.astype(np.float32)
    for name, X in out.items():
        keep = np.argsort(-X.std(axis=0))[: min(n_genes, X.shape[1])]
        out[name] = X[:, np.sort(keep)]
    return out


def run(
    name: str,
    X: np.ndarray,
    root: Path,
    *,
    greedy: list[str],
    qr_rules: list[str],
    n_random: int,
    fractions: list[float],
) -> pd.DataFrame:
    store_path = write_store(root / f"{name}.h5ad", X, seed=11, fractions=(0.6, 0.2, 0.2))
    rows = []
    with Store.open(store_path) as store:
        moments_path = compute_moments(store, root / f"{name}.moments.h5", progress=False)
        n_train = store.split_indices("train").size
        sizes = sorted(
            {
                max(2, int(round(f * n_train)))
                for f in fractions
                if round(f * n_train) < store.n_vars
            }
        )
        panels: dict[tuple[str, int], np.ndarray] = {}
        timing: dict[str, float] = {}
        with open_moments(moments_path, store) as moments:
            for spec in greedy:
                criterion, ridge = spec.split(":")
                started = time.perf_counter()
                path = greedy_path(
                    moments, max(sizes), ridge=float(ridge), criterion=criterion, progress=False
                )
                timing[f"{criterion[:3]}({ridge})"] = round(time.perf_counter() - started, 2)
                for k in sizes:
                    panels[(f"{criterion[:3]}({ridge})", k)] = path.genes[:k]
        for k in sizes:
            old = {"n_components": None, "weighted": False, "moments": str(moments_path)}
            panels[("qr-old", k)] = select_panel(
                store, method="qr", n_genes=k, params=old, run=QUIET
            ).gene_indices
            for rule in qr_rules:
                params = {"moments": str(moments_path), "n_components": rule}
                panels[(f"qr-{rule}", k)] = select_panel(
                    store, method="qr", n_genes=k, params=params, run=QUIET
                ).gene_indices
            for seed in range(n_random):
                panels[(f"random{seed}", k)] = select_panel(
                    store, method="random", n_genes=k, seed=seed
                ).gene_indices
        with open_moments(moments_path, store) as moments:
            results = evaluate_linear_panels(store, moments, panels, ridge="auto", progress=False)
        qr_rank = {
            rule: select_panel(
                store,
                method="qr",
                n_genes=max(sizes),
                params={"moments": str(moments_path), "n_components": rule},
                run=QUIET,
            ).extra["n_components"]
            for rule in qr_rules
        }
        for (method, k), result in results.items():
            rows.append(
                {
                    "data": name,
                    "n_train": n_train,
                    "D": store.n_vars,
                    "K": k,
                    "method": method,
                    "mse_imputed": result.evaluation.metrics["mse_imputed"],
                }
            )
    table = pd.DataFrame(rows)
    table.attrs["qr_rank"] = qr_rank
    table.attrs["timing"] = timing
    return table


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    is_random = table["method"].str.startswith("random")
    random = (
        table[is_random]
        .groupby("K")["mse_imputed"]
        .agg(random_median="median", random_min="min", random_max="max")
    )
    wide = table[~is_random].pivot(index="K", columns="method", values="mse_imputed")
    return wide.join(random)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--genes", type=int, default=1500)
    parser.add_argument(
        "--qr", nargs="*", default=["gd", "mp"], help="qr n_components rules besides the original"
    )
    parser.add_argument(
        "--greedy",
        nargs="*",
        default=["validation:0.1", "validation:1", "gcv:0.1", "gcv:1"],
        help="CRITERION:RIDGE",
    )
    parser.add_argument("--random", type=int, default=10)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0, 1.5])
    parser.add_argument("--only", nargs="*", default=None, help="data set names")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, X in datasets(args.genes).items():
            if args.only and name not in args.only:
                continue
            table = run(
                name,
                X,
                Path(tmp),
                greedy=args.greedy,
                qr_rules=args.qr,
                n_random=args.random,
                fractions=args.fractions,
            )
            tables.append(table)
            print(
                f"\n## {name}: {X.shape[0]} samples, D = {X.shape[1]}, n_train = {table['n_train'].iloc[0]}, "
                f"qr directions used at the largest K = {table.attrs['qr_rank']}, greedy seconds {table.attrs['timing']}"
            )
            print(summarise(table).to_string(float_format=lambda v: f"{v:.4f}"), flush=True)
    if args.out:
        pd.concat(tables).to_csv(args.out, sep="\t", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
