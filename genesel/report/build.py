"""Build the report of a run directory: tables, figures and a self-contained ``index.html``."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from genesel.errors import ConfigError
from genesel.io.atomic import atomic_output
from genesel.report.aggregate import ResultTables, aggregate_results, read_benchmarks, read_histories, write_table
from genesel.report.curves import REFERENCE_METHOD, match_landmarks, summarize_curves, summarize_matches
from genesel.report.figures import curves_figure, figure_png, runtime_figure, training_figure
from genesel.report.html import ReportSection, render_report
from genesel.report.layout import ResultsLayout
from genesel.report.runtime import rule_times, step_times

logger = logging.getLogger(__name__)

#: Metrics the curves use when none is named, most preferred first: the MSE over all
#: genes in standardised units (the CAE paper's reconstruction error), then the MSE over
#: the imputed (non-panel) genes.
PREFERRED_METRICS = ("mse", "mse_unmeasured")

#: Axis labels of the metrics ``genesel evaluate`` writes.
METRIC_LABELS = {
    "mse": "MSE, all genes (standardised)",
    "mae": "MAE, all genes (standardised)",
    "mse_unmeasured": "MSE, imputed genes (standardised)",
    "mae_unmeasured": "MAE, imputed genes (standardised)",
    "mse_original": "MSE, all genes (log2 units)",
    "mae_original": "MAE, all genes (log2 units)",
    "mse_unmeasured_original": "MSE, imputed genes (log2 units)",
    "mae_unmeasured_original": "MAE, imputed genes (log2 units)",
    "pearson_r_mean": "mean Pearson r, imputed genes",
    "pearson_r_median": "median Pearson r, imputed genes",
}


@dataclass
class ReportOutputs:
    """Paths of everything :func:`build_report` wrote."""

    index: Path
    curves_png: Path
    curves_tsv: Path
    landmark_match_tsv: Path
    runs_tsv: Path


def choose_metric(runs: pd.DataFrame, metric: str | None = None) -> str:
    """Return ``metric`` if the runs have it, else the first of :data:`PREFERRED_METRICS` they have."""
    if metric is not None:
        if metric not in runs:
            raise ConfigError(f"metric {metric!r} is not in the results; available: {', '.join(_numeric_columns(runs))}")
        return metric
    for name in PREFERRED_METRICS:
        if name in runs:
            return name
    candidates = [c for c in _numeric_columns(runs) if "mse" in c.lower()]
    if not candidates:
        raise ConfigError(f"no MSE column in the results; name one with --metric from: {', '.join(_numeric_columns(runs))}")
    return candidates[0]


def split_name(runs: pd.DataFrame) -> str:
    """The split the runs were evaluated on (``"test"`` unless the metrics say otherwise)."""
    if "split" in runs and runs["split"].nunique() == 1:
        return str(runs["split"].iloc[0])
    return "test"


def build_report(
    results_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    runs: pd.DataFrame | None = None,
    metric: str | None = None,
    title: str | None = None,
) -> ReportOutputs:
    """Aggregate a run directory and write its report.

    Parameters
    ----------
    results_dir
        The run directory (``results/<run>``).
    out_dir
        Where the report goes (default ``results_dir/report``).
    runs
        A runs table from :func:`genesel.report.aggregate.aggregate_results` (the workflow
        aggregates first); default: aggregate every result under ``results_dir``.
    metric
        Column of the runs table plotted against panel size (default: standardised test MSE).
    title
        Page title (default: names the run directory).

    Returns
    -------
    Paths of ``index.html``, ``curves.png``, ``curves.tsv``, ``landmark_match.tsv`` and ``runs.tsv``.
    """
    layout = ResultsLayout.at(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else layout.report_dir
    if runs is None:
        tables = aggregate_results(layout.root)
    else:
        panels = list(runs[["method", "n_genes", "seed"]].drop_duplicates().itertuples(index=False, name=None))
        tables = ResultTables(runs=runs, histories=read_histories(layout, panels), benchmarks=read_benchmarks(layout.benchmarks_dir))
    metric = choose_metric(tables.runs, metric)
    curves = summarize_curves(tables.runs, metric=metric)
    matches = match_landmarks(curves)
    metric_label = f"{split_name(tables.runs)} {METRIC_LABELS.get(metric, metric)}"
    figure = curves_figure(curves, metric_label=metric_label, noise_floor=tables.noise_floor, matches=matches)

    outputs = ReportOutputs(
        index=out_dir / "index.html",
        curves_png=out_dir / "curves.png",
        curves_tsv=out_dir / "curves.tsv",
        landmark_match_tsv=out_dir / "landmark_match.tsv",
        runs_tsv=out_dir / "runs.tsv",
    )
    curves_png = figure_png(figure)
    with atomic_output(outputs.curves_png) as tmp:
        tmp.write_bytes(curves_png)
    write_table(curves.assign(metric=metric), outputs.curves_tsv)
    write_table(matches, outputs.landmark_match_tsv)
    if runs is None:
        write_table(tables.runs, outputs.runs_tsv)
    sections = _sections(tables, curves, matches, curves_png, metric=metric)
    subtitle = f"{layout.root} · {len(tables.runs)} evaluated models · built {datetime.now():%Y-%m-%d %H:%M}"
    page = render_report(title or f"genesel report: {layout.root.name}", sections, subtitle=subtitle)
    with atomic_output(outputs.index) as tmp:
        tmp.write_text(page, encoding="utf-8")
    logger.info("report written to %s", outputs.index)
    return outputs


def _sections(tables: ResultTables, curves: pd.DataFrame, matches: pd.DataFrame, curves_png: bytes, *, metric: str) -> list[ReportSection]:
    runs = tables.runs
    methods = sorted(runs["method"].unique())
    sizes = sorted(int(k) for k in runs.loc[runs["method"] != REFERENCE_METHOD, "n_genes"].unique())
    seeds = sorted(int(s) for s in runs["seed"].unique())
    overview = (
        f"{len(methods)} methods ({', '.join(methods)}), panel sizes {', '.join(map(str, sizes))}, "
        f"seeds {', '.join(map(str, seeds))}, decoders {', '.join(sorted(runs['decoder'].unique()))}. "
        f"Error: {METRIC_LABELS.get(metric, metric)} on the {split_name(runs)} split."
    )
    bullets = summarize_matches(matches)
    if matches.empty:
        bullets = ["The landmark panel was not evaluated, so no method is compared with it."]
    sections = [
        ReportSection(
            "Panel size against imputation error",
            paragraphs=[
                overview,
                "Lines: mean over seeds, error bars: standard deviation. The star and dashed line are the "
                "L1000 landmark panel; a triangle on that line marks the (interpolated) panel size at which "
                "a method matches the landmarks' error. The dotted line is the simulator's noise floor, the "
                "best error any panel can reach, when the data is simulated.",
            ],
            figures={"curves": curves_png},
            bullets=bullets,
            tables={"Smallest panel matching the landmarks (linear interpolation between panel sizes run):": _match_table(matches)},
        ),
        ReportSection(
            "Error by panel size",
            tables={f"{metric}: mean ± standard deviation over seeds.": _curve_table(curves)},
        ),
        ReportSection(
            "Overlap with the L1000 landmarks",
            paragraphs=["Landmark genes in each panel (mean over seeds); the landmark panel itself is all landmarks."],
            tables={"Landmarks in the panel, by panel size:": _overlap_table(curves)},
        ),
    ]
    training = training_figure(tables.histories)
    if training is not None:
        sections.append(
            ReportSection(
                "Training traces",
                paragraphs=[
                    "Validation loss and the percentage of distinct genes among the selector's K choices, per "
                    "epoch, for each trained method's largest panel (one line per seed; LassoNet: one point "
                    "per lambda of its path). A concrete selector has converged to a valid panel when the "
                    "unique percentage reaches 100; below that, duplicate choices were replaced by next-best genes."
                ],
                figures={"training": _png(training)},
            )
        )
    by_rule, by_step = rule_times(tables.benchmarks), step_times(tables.histories)
    runtime = runtime_figure(by_rule, by_step)
    if runtime is not None:
        tables_shown = {}
        if len(by_rule):
            tables_shown["Wall time per workflow rule (Snakemake benchmark files):"] = by_rule
        if len(by_step):
            tables_shown["Training speed per method (median over epochs; methods that record steps per second):"] = by_step
        sections.append(ReportSection("Runtime", figures={"runtime": _png(runtime)}, tables=tables_shown))
    sections.append(
        ReportSection(
            "Files",
            paragraphs=[
                "curves.tsv (the curves above), landmark_match.tsv (the matching panel sizes), runs.tsv (every "
                "evaluated model with all its metrics) and curves.png lie beside this page."
            ],
        )
    )
    return sections


def _png(figure: Figure) -> bytes:
    return figure_png(figure)


def _match_table(matches: pd.DataFrame) -> pd.DataFrame:
    if matches.empty:
        return matches
    table = matches.copy()
    table["matching_genes"] = table["matching_genes"].round(0)
    table["saving_pct"] = table["saving_pct"].round(1)
    return table.rename(
        columns={
            "landmark_genes": "landmark genes",
            "landmark_error": "landmark error",
            "matching_genes": "matching genes",
            "saving_pct": "saving (%)",
            "largest_size": "largest size run",
        }
    )


def _curve_table(curves: pd.DataFrame) -> pd.DataFrame:
    cells = curves.assign(
        cell=[f"{m:.4g} ± {s:.2g}" if n > 1 else f"{m:.4g}" for m, s, n in zip(curves["mean"], curves["std"], curves["n_seeds"], strict=True)]
    )
    table = cells.pivot_table(index=["decoder", "method"], columns="n_genes", values="cell", aggfunc="first").fillna("")
    table.columns = [f"K={k}" for k in table.columns]
    return table


def _overlap_table(curves: pd.DataFrame) -> pd.DataFrame:
    first_decoder = sorted(curves["decoder"].unique())[0]
    subset = curves[curves["decoder"] == first_decoder]
    table = subset.pivot_table(index="method", columns="n_genes", values="landmark_overlap", aggfunc="first")
    table.columns = [f"K={k}" for k in table.columns]
    return table.round(1)


def _numeric_columns(runs: pd.DataFrame) -> list[str]:
    return [c for c in runs.columns if pd.api.types.is_numeric_dtype(runs[c]) and c not in ("n_genes", "seed")]
