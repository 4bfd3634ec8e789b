"""The linear panel-size curve from the moments against one pass per panel, at GEO scale.

Usage::

    python benchmarks/linear_curve_scale.py --data /tmp/geo/store_112171.h5ad --workdir /tmp/geo/curve \\
        [--sizes 250 500 750 943 1000 1500] [--seeds 3] [--sample-sizes ...] [--auto-sizes 943 250] [--record]

In one run, back to back on the same store:

1. **Moments path.** ``genesel moments`` (one pass per split) and ``genesel curve`` over
   ``len(METHODS) x len(sizes) x seeds`` panels (default 8 x 6 x 3 = 144), each under
   ``/usr/bin/time -v`` (wall, CPU = user + system, peak RSS). The panels are seeded random
   gene sets written as ``panels/<method>/k<K>/seed<S>/panel.tsv`` + ``config.json`` (which
   genes does not change the cost). ``curve`` runs with its default ``--ridge auto``.
2. **Per-panel path.** ``fit_imputer(decoder="linear", ridge="auto")`` (one streaming pass
   over the train split, one over the validation split; ``--per-panel-ridge 0`` for exact) + ``evaluate_model`` (one over the test split) in this process for one
   panel per size of ``--sample-sizes``; the 144-panel total is extrapolated as
   ``sum over sizes of (panels of that size) x (measured time at that size)``.
3. **Ridge auto vs exact.** Right after the fit of each size in ``--auto-sizes``, the same
   panel with ``ridge=0`` (no validation pass, no grid).

Results: ``benchmarks/results/linear_curve_scale.json`` (rewritten after every stage), a
markdown table on stdout, and with ``--record`` a block in docs/benchmarks.md. FLOP counts
(multiply-add = 2) are given for each path so that measured ratios can be checked against
the arithmetic.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recording import commit, machine, markdown_table, peak_rss_gib, record  # noqa: E402
from timing import measure  # noqa: E402

from genesel.evaluate import evaluate_model  # noqa: E402
from genesel.impute.fit import fit_imputer  # noqa: E402
from genesel.impute.ridge import parse_ridge  # noqa: E402
from genesel.impute.sweep import DEFAULT_INTERVAL_ROWS  # noqa: E402
from genesel.io.atomic import write_json  # noqa: E402
from genesel.panel import PanelResult  # noqa: E402
from genesel.store import Store  # noqa: E402

GENESEL = [sys.executable, "-m", "genesel.cli.main", "-q"]
#: Method names of config/geo.yaml that have a panel at every size (landmarks has one size).
METHODS = ("cae", "ipcae", "lassonet", "logitnormal", "logitnormal-hnet", "random", "hvg", "qr")
RESULTS = Path(__file__).resolve().parent / "results"
INTERVAL_ROWS = DEFAULT_INTERVAL_ROWS


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def write_panels(store: Store, root: Path, sizes: list[int], seeds: int) -> list[Path]:
    """Seeded random panels in the results layout; returns their panel.tsv paths."""
    paths = []
    for m, method in enumerate(METHODS):
        for size in sizes:
            for seed in range(seeds):
                folder = root / method / f"k{size}" / f"seed{seed}"
                rng = np.random.default_rng([m, size, seed])
                genes = np.sort(rng.choice(store.n_vars, size=size, replace=False))
                PanelResult(
                    method=method, n_genes=size, seed=seed, gene_indices=genes, var=store.var
                ).write(folder)
                write_json(
                    folder / "config.json", {"method": method, "n_genes": size, "seed": seed}
                )
                paths.append(folder / "panel.tsv")
    return paths


def flops(n: dict[str, int], d: int, sizes: list[int], per_size: int) -> dict[str, float]:
    """Arithmetic of both paths for the sweep (multiply-add = 2 FLOPs)."""
    n_all = sum(n.values())
    ks = np.asarray(sizes, dtype=float)
    moments_pass = float(n_all) * d * d  # dsyrk: n D^2 per split (upper triangle, 2 FLOPs each)
    # Per panel from the moments (ridge auto, genesel.impute.ridge.RidgeProblem): P = C C'^T
    # (2 K^2 D), Q = C C^T by dsyrk (K^2 D), W = H C (2 K^2 D), the test quadratic forms by a
    # triangular product (K^2 D): 6 K^2 D; eigh and the K x K rotations about 14 K^3;
    # per-sample errors of the interval rows 2 m K D.
    small = per_size * float(np.sum(6 * ks**2 * d + 14 * ks**3))
    per_sample = per_size * float(np.sum(2 * min(INTERVAL_ROWS, n["test"]) * ks * d))
    fit = per_size * float(np.sum(2 * n["train"] * (ks + 1) * d))
    evaluation = per_size * float(np.sum(2 * n["test"] * ks * d))
    return {
        "moments_pass": moments_pass,
        "curve_small_solves": small,
        "curve_per_sample": per_sample,
        "moments_path_total": moments_pass + small + per_sample,
        "per_panel_fit": fit,
        "per_panel_eval": evaluation,
        "per_panel_total": fit + evaluation,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 750, 943, 1000, 1500])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--sample-sizes",
        type=int,
        nargs="*",
        default=None,
        help="sizes timed on the per-panel path (default: all)",
    )
    parser.add_argument(
        "--per-panel-ridge",
        default="auto",
        help="ridge of the per-panel fits (default auto, what genesel curve and the workflow use: like against like)",
    )
    parser.add_argument(
        "--auto-sizes",
        type=int,
        nargs="*",
        default=[],
        help="sizes also timed with ridge 0 (auto vs exact)",
    )
    parser.add_argument("--skip-moments", action="store_true", help="reuse WORKDIR/moments.h5")
    parser.add_argument(
        "--stages",
        nargs="+",
        choices=("moments", "curve", "per-panel"),
        default=["moments", "curve", "per-panel"],
        help="stages to run (default all, in this order)",
    )
    parser.add_argument(
        "--curve-methods",
        type=int,
        default=len(METHODS),
        help="run genesel curve on the panels of the first N methods only and scale its time by 8 / N "
        "(every method has the same sizes and seeds, and random genes cost the same)",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        default=None,
        help="take the moments and curve results of this earlier JSON",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "linear_curve_scale.json")
    parser.add_argument(
        "--record", action="store_true", help="append the table to docs/benchmarks.md"
    )
    args = parser.parse_args()
    sample_sizes = args.sizes if args.sample_sizes is None else args.sample_sizes
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    moments_file = args.workdir / "moments.h5"
    with Store.open(args.data) as store:
        n = {
            split: int(store.split_indices(split).size)
            for split in ("train", "validation", "test")
        }
        d = int(store.n_vars)
        paths = write_panels(store, args.workdir / "panels", args.sizes, args.seeds)
    per_size = len(METHODS) * args.seeds
    result: dict = {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "commit": commit(),
        "data": str(args.data),
        "n": n,
        "genes": d,
        "sizes": args.sizes,
        "panels": len(paths),
        "flops": flops(n, d, args.sizes, per_size),
        "load_start": load(),
        "threads": {
            k: os.environ.get(k)
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        },
        "per_panel_ridge": args.per_panel_ridge,
        "interval_rows": INTERVAL_ROWS,
    }

    if args.merge:
        prior = json.loads(args.merge.read_text())
        result.update(
            {k: prior[k] for k in ("moments", "curve") if k in prior and k not in args.stages}
        )

    def save() -> None:
        args.out.write_text(json.dumps(result, indent=2))

    save()
    log = str(args.workdir / "commands.log")
    # 1. Moments path.
    if "moments" in args.stages and not args.skip_moments:
        moments_file.unlink(missing_ok=True)
        m = measure(
            [*GENESEL, "moments", "--data", str(args.data), "--out", str(moments_file)], log=log
        )
        result["moments"] = {
            "seconds": m.seconds,
            "cpu_seconds": m.cpu_seconds,
            "peak_rss_gib": m.peak_rss_gib,
            "matrices_gib": 2 * 8 * d**2 / 2**30,
            "rss_beside_matrices_gib": m.peak_rss_gib - 2 * 8 * d**2 / 2**30,
            "load_after": load(),
        }
        print("moments", result["moments"], flush=True)
        save()
    metrics_dir = args.workdir / "metrics"
    if "curve" in args.stages:
        curve(args, result, moments_file, metrics_dir, paths, log)
        save()
    if "per-panel" in args.stages:
        per_panel_stage(args, result, sample_sizes, per_size, save)
    result["load_end"] = load()
    greedy = subprocess.run([*GENESEL, "select", "--help"], capture_output=True, text=True).stdout
    result["greedy"] = (
        "available" if "greedy" in greedy else "pending (no greedy method in this checkout)"
    )
    save()
    report(args, result, paths)


def curve(args, result, moments_file, metrics_dir, paths, log) -> None:
    chosen = [p for p in paths if p.parts[-4] in METHODS[: args.curve_methods]]
    c = measure(
        [
            *GENESEL,
            "curve",
            "--data",
            str(args.data),
            "--moments",
            str(moments_file),
            "--out",
            str(metrics_dir),
            "--panels",
            *map(str, chosen),
        ],
        log=log,
    )
    scale = len(paths) / len(chosen)
    result["curve"] = {
        "panels_run": len(chosen),
        "seconds_measured": c.seconds,
        "cpu_seconds_measured": c.cpu_seconds,
        "seconds": c.seconds * scale,
        "cpu_seconds": c.cpu_seconds * scale,
        "scaled_by": scale,
        "peak_rss_gib": c.peak_rss_gib,
        "load_after": load(),
    }
    print("curve", result["curve"], flush=True)


def per_panel_stage(args, result, sample_sizes, per_size, save) -> None:
    """2 and 3. Per-panel path, one panel per size (and ridge 0 right after, for ``--auto-sizes``)."""
    per_panel = []
    with Store.open(args.data) as store:
        for size in sample_sizes:
            panel = args.workdir / "panels" / METHODS[0] / f"k{size}" / "seed0" / "panel.tsv"
            row: dict = {"K": size}
            start, cpu = time.perf_counter(), time.process_time()
            model = fit_imputer(
                store,
                panel,
                decoder="linear",
                ridge=parse_ridge(args.per_panel_ridge),
                progress=False,
            )
            row["fit_s"], row["fit_cpu_s"] = time.perf_counter() - start, time.process_time() - cpu
            start, cpu = time.perf_counter(), time.process_time()
            evaluation = evaluate_model(store, model, split="test", progress=False)
            row["eval_s"], row["eval_cpu_s"] = (
                time.perf_counter() - start,
                time.process_time() - cpu,
            )
            row["mse_imputed"] = evaluation.metrics["mse_imputed"]
            row["ridge"] = model.params["ridge"]
            del model
            if size in args.auto_sizes:
                start, cpu = time.perf_counter(), time.process_time()
                exact = fit_imputer(store, panel, decoder="linear", ridge=0.0, progress=False)
                row["fit_exact_s"], row["fit_exact_cpu_s"] = (
                    time.perf_counter() - start,
                    time.process_time() - cpu,
                )
                row["fit_over_exact"] = row["fit_s"] / row["fit_exact_s"]
                del exact
            row["cpu_total_s"] = row["fit_cpu_s"] + row["eval_cpu_s"]
            row["load_after"] = load()
            per_panel.append(row)
            print("per panel", row, flush=True)
            result["per_panel_sample"] = per_panel
            save()
    for unit, key in (("s", "fit_s"), ("cpu_s", "fit_cpu_s")):
        measured = {row["K"]: row[key] + row[key.replace("fit", "eval")] for row in per_panel}
        if set(args.sizes) <= set(measured):
            result[f"per_panel_extrapolated_{unit}"] = per_size * sum(
                measured[k] for k in args.sizes
            )
        elif (
            len(measured) >= 2
        ):  # time = a + b K (the FLOPs are linear in K), fitted to the sizes measured
            slope, intercept = np.polyfit(list(measured), list(measured.values()), 1)
            result[f"per_panel_extrapolated_{unit}"] = per_size * sum(
                intercept + slope * k for k in args.sizes
            )
            result["per_panel_extrapolation"] = f"linear in K through K = {sorted(measured)}"
    result["peak_rss_this_process_gib"] = peak_rss_gib()
    save()


def report(args, result, paths) -> None:
    """Ratios (where both sides were measured) and the markdown table."""
    per_panel = result.get("per_panel_sample", [])
    for unit, key in (("s", "seconds"), ("cpu_s", "cpu_seconds")):
        if (
            "moments" in result
            and "curve" in result
            and f"per_panel_extrapolated_{unit}" in result
        ):
            moments_total = result["moments"][key] + result["curve"][key]
            result[f"moments_path_{unit}"] = moments_total
            result[f"per_panel_over_moments_{unit}"] = (
                result[f"per_panel_extrapolated_{unit}"] / moments_total
            )
    args.out.write_text(json.dumps(result, indent=2))
    f = result["flops"]
    rows = [
        {
            "path": "moments: genesel moments (3 splits)",
            "wall s": result.get("moments", {}).get("seconds"),
            "CPU s": result.get("moments", {}).get("cpu_seconds"),
            "peak RSS GiB": result.get("moments", {}).get("peak_rss_gib"),
            "TFLOP": f["moments_pass"] / 1e12,
        },
        {
            "path": f"moments: genesel curve ({len(paths)} panels, ridge auto)",
            "wall s": result.get("curve", {}).get("seconds"),
            "CPU s": result.get("curve", {}).get("cpu_seconds"),
            "peak RSS GiB": result.get("curve", {}).get("peak_rss_gib"),
            "TFLOP": (f["curve_small_solves"] + f["curve_per_sample"]) / 1e12,
        },
        {
            "path": f"per panel: fit (ridge {args.per_panel_ridge}) + evaluate, {len(paths)} panels (extrapolated)",
            "wall s": result.get("per_panel_extrapolated_s"),
            "CPU s": result.get("per_panel_extrapolated_cpu_s"),
            "peak RSS GiB": result.get("peak_rss_this_process_gib"),
            "TFLOP": f["per_panel_total"] / 1e12,
        },
    ]
    table = markdown_table(rows)
    table += "\n\n" + markdown_table(per_panel)
    print(table)
    print(
        json.dumps(
            {
                k: v
                for k, v in result.items()
                if k.startswith(("per_panel_over", "moments_path", "per_panel_extra"))
            }
        )
    )
    if args.record:
        record(
            "Linear curve from the moments at GEO scale",
            table,
            notes=f"load average {result['load_start']} -> {result['load_end']}",
        )


if __name__ == "__main__":
    main()
