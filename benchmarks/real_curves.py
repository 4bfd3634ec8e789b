"""The whole panel-size curve on real expression data of 100-300 samples, every method.

Usage::

    python benchmarks/real_data.py --out benchmarks/data          # build the inputs (provenance inside)
    python benchmarks/real_curves.py --data-dir benchmarks/data --out benchmarks/results/real_curves \
        [--sets all_leukemia flu_challenge ...] [--seeds 0 1 2] [--decoders linear mlp] [--genes 2000]

For each data set: the ``genes`` most variable genes, a seeded 70/15/15 split
(group-aware where the set has subjects), every selection method at sizes around the
landmark count (0.25, 0.5, 0.75, 1, 1.25 and 2 times it), the linear decoder (validated
ridge, from the moments) on every panel with 10 random panels per size, and the MLP
decoder on the panels around the landmark count. Then the report's machinery: bootstrap
intervals, the headline sentence, each method against random panels, and the acceptance
checks of the curve issue (no linear point above the mean predictor's ~1.0, a decreasing
random curve, learned selectors and greedy not worse than the median random panel).
Writes per set ``runs.tsv``, ``curves.tsv``, ``versus_random.tsv``, ``landmark_match.tsv``
and a ``summary.json``, and prints a Markdown summary for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

import genesel
from genesel.evaluate import evaluate_model
from genesel.impute import fit_imputer
from genesel.impute.sweep import evaluate_linear_panels
from genesel.loader import LoaderConfig
from genesel.moments import compute_moments, open_moments
from genesel.report.curves import summarize_curves
from genesel.report.headline import headline, match_landmarks, random_comparison
from genesel.run import RunConfig
from genesel.selectors.methods import available_methods
from genesel.selectors.select import select_panel
from genesel.store import Store
from genesel.training import TrainerConfig

logger = logging.getLogger("real_curves")

#: Sets with a subject column: split by subject so no test subject is trained on.
GROUP_COLUMNS = {"flu_challenge": "Subject"}
#: Panel sizes as multiples of the landmark count.
SIZE_FACTORS = (0.25, 0.5, 0.75, 1.0, 1.25, 2.0)
#: Sizes (multiples of the landmark count) where the MLP decoder is also fitted (default).
MLP_FACTORS = (0.75, 1.0, 1.25)
#: Sizes (multiples of the landmark count) of the trained selectors (default).
TRAINED_FACTORS = SIZE_FACTORS
#: Methods run once (deterministic).
DETERMINISTIC = ("landmarks", "hvg", "qr", "greedy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("benchmarks/data"))
    parser.add_argument(
        "--sets",
        nargs="*",
        default=None,
        help="data set names (default: every .h5ad in --data-dir)",
    )
    parser.add_argument(
        "--methods", nargs="*", default=None, help="methods (default: all registered)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--decoders", nargs="+", default=["linear", "mlp"])
    parser.add_argument("--genes", type=int, default=2000, help="most variable genes kept")
    parser.add_argument("--random-panels", type=int, default=10)
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epoch budget of trained selectors (default: the package's)",
    )
    parser.add_argument("--mlp-epochs", type=int, default=100)
    parser.add_argument(
        "--mlp-factors",
        type=float,
        nargs="*",
        default=list(MLP_FACTORS),
        help="MLP sizes, multiples of the landmark count",
    )
    parser.add_argument(
        "--trained-factors",
        type=float,
        nargs="*",
        default=list(TRAINED_FACTORS),
        help="trained selectors' sizes, multiples of the landmark count",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: no oversubscription on a shared machine)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/real_curves"))
    return parser.parse_args(argv)


def load_set(path: Path, n_genes: int, seed: int) -> ad.AnnData:
    """The set's ``n_genes`` most variable genes (landmarks among them as they fall), with a seeded split."""
    adata = ad.read_h5ad(path)
    adata.X = np.asarray(
        adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=np.float32
    )
    spread = adata.X.std(axis=0)
    adata = adata[:, np.sort(np.argsort(-spread)[: min(n_genes, adata.n_vars)])].copy()
    group = GROUP_COLUMNS.get(path.stem)
    genesel.tl.prepare(
        adata, seed=seed, fractions=(0.7, 0.15), group_column=group if group in adata.obs else None
    )
    return adata


def panel_sizes(n_landmarks: int, n_genes: int, factors: tuple[float, ...]) -> list[int]:
    return sorted(
        {max(2, round(f * n_landmarks)) for f in factors if round(f * n_landmarks) < n_genes}
    )


def run_set(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    adata = load_set(path, args.genes, seed=0)
    store = Store.from_anndata(adata)
    n_landmarks = int(store.landmark_mask.sum())
    sizes = panel_sizes(n_landmarks, store.n_vars, SIZE_FACTORS)
    mlp_sizes = set(panel_sizes(n_landmarks, store.n_vars, tuple(args.mlp_factors)))
    trained_sizes = set(panel_sizes(n_landmarks, store.n_vars, tuple(args.trained_factors)))
    methods = args.methods or [m for m in available_methods() if m != "random"]
    split = (
        adata.obs["genesel_split" if "genesel_split" in adata.obs else "split"]
        .value_counts()
        .to_dict()
    )
    logger.info(
        "%s: %d samples (%s) x %d genes, %d landmarks; sizes %s",
        path.stem,
        adata.n_obs,
        split,
        store.n_vars,
        n_landmarks,
        sizes,
    )
    panels: dict[tuple[str, int, int], np.ndarray] = {}
    extra: dict[tuple[str, int, int], dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for method in methods:
        method_started = time.perf_counter()
        trained = method in ("cae", "ipcae", "lassonet", "logitnormal", "logitnormal-hnet")
        for k in (
            [n_landmarks]
            if method == "landmarks"
            else [k for k in sizes if not trained or k in trained_sizes]
        ):
            for seed in args.seeds[:1] if method in DETERMINISTIC else args.seeds:
                trainer = TrainerConfig(
                    **({} if args.epochs is None else {"max_epochs": args.epochs})
                )
                try:
                    result = select_panel(
                        store,
                        method=method,
                        n_genes=k,
                        seed=seed,
                        trainer=trainer,
                        loader=LoaderConfig(),
                        run=RunConfig(seed=seed, progress=False),
                    )
                except genesel.errors.GeneselError as error:
                    logger.warning(
                        "%s %s k=%d seed %d failed: %s", path.stem, method, k, seed, error
                    )
                    continue
                panels[(method, k, seed)] = result.gene_indices
                extra[(method, k, seed)] = {
                    key: result.extra.get(key)
                    for key in ("converged", "mean_max_probability", "unique_percent")
                }
        seconds[method] = time.perf_counter() - method_started
        logger.info("%s: %s done in %.0f s", path.stem, method, seconds[method])
    for k in sizes:
        for seed in range(args.random_panels):
            panels[("random", k, seed)] = np.random.default_rng(seed).permutation(store.n_vars)[:k]
    rows, per_sample = [], []
    if "linear" in args.decoders:
        with tempfile.TemporaryDirectory() as tmp:
            compute_moments(store, Path(tmp) / "moments.h5", progress=False)
            with open_moments(Path(tmp) / "moments.h5", store) as moments:
                results = evaluate_linear_panels(store, moments, panels, progress=False)
        for (method, k, seed), result in results.items():
            rows.append(
                _row(
                    method,
                    k,
                    seed,
                    "linear",
                    result.evaluation.metrics,
                    extra.get((method, k, seed), {}),
                )
            )
            per_sample.append(result.evaluation.per_sample["mse_imputed"])
    if "mlp" in args.decoders:
        trainer = TrainerConfig(max_epochs=args.mlp_epochs, lr_decay=0.95, patience=10)
        for (method, k, seed), genes in panels.items():
            if (
                k not in mlp_sizes
                and method != "landmarks"
                or (method == "random" and seed >= len(args.seeds))
            ):
                continue
            model = fit_imputer(
                store,
                genes.tolist(),
                decoder="mlp",
                hidden=(256,),
                trainer=trainer,
                run=RunConfig(seed=seed, progress=False),
                progress=False,
            )
            evaluation = evaluate_model(store, model, progress=False)
            rows.append(
                _row(method, k, seed, "mlp", evaluation.metrics, extra.get((method, k, seed), {}))
            )
            per_sample.append(evaluation.per_sample["mse_imputed"])
    runs = pd.DataFrame(rows)
    curves = summarize_curves(runs, metric="mse_imputed", per_sample=per_sample)
    matches = match_landmarks(curves)
    versus = random_comparison(curves)
    out = args.out / path.stem
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "runs.tsv", sep="\t", index=False)
    curves.table.to_csv(out / "curves.tsv", sep="\t", index=False)
    matches.to_csv(out / "landmark_match.tsv", sep="\t", index=False)
    versus.to_csv(out / "versus_random.tsv", sep="\t", index=False)
    summary = {
        "set": path.stem,
        "n_obs": int(adata.n_obs),
        "split": {k: int(v) for k, v in split.items()},
        "n_genes": int(store.n_vars),
        "n_landmarks": n_landmarks,
        "sizes": sizes,
        "headline": {d: headline(matches, curves, decoder=d) for d in args.decoders},
        "checks": acceptance(curves.table, versus),
        "unconverged": [
            list(key) for key, value in extra.items() if value.get("converged") is False
        ],
        "seconds": {**seconds, "total": time.perf_counter() - started},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _row(
    method: str, k: int, seed: int, decoder: str, metrics: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    keep = ("mse_imputed", "mse", "mse_mean_predictor", "n_samples", "ridge", "pearson_r_mean")
    return {
        "method": method,
        "n_genes": k,
        "seed": seed,
        "decoder": decoder,
        **{key: metrics.get(key) for key in keep},
        **extra,
    }


def acceptance(curves: pd.DataFrame, versus: pd.DataFrame) -> dict[str, Any]:
    """The curve issue's checks on this set (linear decoder)."""
    linear = curves[curves["decoder"] == "linear"]
    random = linear[linear["method"] == "random"].sort_values("n_genes")
    worst = linear.loc[linear["mean"].idxmax()]
    steps_up = [
        (int(a.n_genes), int(b.n_genes))
        for a, b in zip(random.itertuples(), random.iloc[1:].itertuples(), strict=False)
        if b.low > a.high  # a significant increase with size
    ]
    linear_versus = versus[versus["decoder"] == "linear"]
    worse = linear_versus[linear_versus["verdict"] == "worse"]
    return {
        "max_linear_mse": float(worst["mean"]),
        "max_linear_point": f"{worst['method']} k={int(worst['n_genes'])}",
        "all_linear_below_1": bool((linear["mean"] <= 1.0).all()),
        "random_decreasing": not steps_up,
        "worse_than_random": worse[["method", "n_genes", "difference", "low", "high"]].to_dict(
            "records"
        ),
        "better_than_random": linear_versus[linear_versus["verdict"] == "better"][
            ["method", "n_genes"]
        ].to_dict("records"),
    }


def markdown(summaries: list[dict[str, Any]]) -> str:
    lines = [
        "| set | samples (train/val/test) | genes | landmarks | max linear MSE | random decreasing | worse than random (linear) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        split = s["split"]
        worse = (
            ", ".join(f"{w['method']}@{w['n_genes']}" for w in s["checks"]["worse_than_random"])
            or "none"
        )
        lines.append(
            f"| {s['set']} | {s['n_obs']} ({split.get('train', 0)}/{split.get('validation', 0)}/{split.get('test', 0)}) | {s['n_genes']} | "
            f"{s['n_landmarks']} | {s['checks']['max_linear_mse']:.3f} ({s['checks']['max_linear_point']}) | "
            f"{'yes' if s['checks']['random_decreasing'] else 'no'} | {worse} |"
        )
    lines.append("")
    for s in summaries:
        for decoder, sentence in s["headline"].items():
            lines.append(f"- **{s['set']}**, {decoder}: {sentence}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    paths = sorted(args.data_dir.glob("*.h5ad"))
    if args.sets:
        paths = [p for p in paths if p.stem in args.sets]
    if not paths:
        print(
            f"{args.data_dir}: no data sets; build them with `python benchmarks/real_data.py --out {args.data_dir}`",
            file=sys.stderr,
        )
        return 1
    summaries = [run_set(path, args) for path in paths]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text(markdown(summaries) + "\n")
    print(markdown(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
