"""Exact least squares against the validated ridge on a real array set of ~100 samples.

Usage::

    python benchmarks/real_data.py --out benchmarks/data --only all_leukemia
    python benchmarks/ridge_small_sample.py --data benchmarks/data/all_leukemia.h5ad --out docs/small_sample_ridge.png

Ten seeded random panels per size, the linear decoder fitted with ``ridge=0`` and with
``ridge="auto"`` from the moments, imputed-gene test MSE (median and 10-90 % over the
panels) against panel size; the number of train rows is marked.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_curves import load_set  # noqa: E402

from genesel.impute.sweep import evaluate_linear_panels  # noqa: E402
from genesel.moments import compute_moments, open_moments  # noqa: E402
from genesel.store import Store  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("benchmarks/data/all_leukemia.h5ad"))
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--panels", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("docs/small_sample_ridge.png"))
    args = parser.parse_args(argv)
    adata = load_set(args.data, args.genes, seed=0)
    store = Store.from_anndata(adata)
    n_train = int(store.split_indices("train").size)
    sizes = sorted(
        {5, 10, 20, 40, 60, 75, 85, n_train - 2, n_train, n_train + 5, 110, 150, 250, 500, 1000}
    )
    panels = {
        (k, s): np.random.default_rng(s).permutation(store.n_vars)[:k]
        for k in sizes
        for s in range(args.panels)
    }
    figure = Figure(figsize=(7, 4.4), layout="constrained")
    ax = figure.subplots()
    with tempfile.TemporaryDirectory() as tmp:
        compute_moments(store, Path(tmp) / "m.h5", progress=False)
        with open_moments(Path(tmp) / "m.h5", store) as moments:
            for ridge, color, label in (
                (0.0, "#d62728", "exact least squares (ridge 0)"),
                ("auto", "#1f77b4", "validated ridge (auto)"),
            ):
                results = evaluate_linear_panels(
                    store, moments, panels, ridge=ridge, progress=False
                )
                errors = np.array(
                    [
                        [
                            results[(k, s)].evaluation.metrics["mse_imputed"]
                            for s in range(args.panels)
                        ]
                        for k in sizes
                    ]
                )
                low, median, high = np.quantile(errors, [0.1, 0.5, 0.9], axis=1)
                ax.fill_between(sizes, low, high, color=color, alpha=0.2, linewidth=0)
                ax.plot(sizes, median, color=color, marker="o", markersize=3, label=label)
                print(
                    f"{label}: "
                    + ", ".join(f"K={k}: {m:.3g}" for k, m in zip(sizes, median, strict=True))
                )
    predictor = results[(sizes[0], 0)].evaluation.metrics["mse_mean_predictor"]
    ax.axhline(predictor, color="#555555", linestyle=":", label="predicting each gene's mean")
    ax.axvline(
        n_train, color="#999999", linestyle="--", linewidth=1, label=f"train rows ({n_train})"
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("panel size (genes), random panels")
    ax.set_ylabel("test MSE, imputed genes (standardised)")
    ax.set_title(f"{args.data.stem}: {adata.n_obs} samples, {store.n_vars} genes")
    ax.legend(frameon=False, fontsize="small")
    ax.grid(True, alpha=0.3, which="both")
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
