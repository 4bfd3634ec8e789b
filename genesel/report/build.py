"""Build the report of a run directory: tables, figures and a self-contained ``index.html``."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from genesel.errors import ConfigError
from genesel.evaluate import HEADLINE_METRIC
from genesel.io.atomic import atomic_output
from genesel.report.aggregate import (
    ResultTables,
    aggregate_results,
    read_benchmarks,
    read_histories,
    read_per_sample,
    write_table,
)
from genesel.report.curves import Curves, summarize_curves
from genesel.report.figures import (
    cost_figure,
    curves_figure,
    decoder_order,
    figure_png,
    runtime_figure,
    training_figure,
)
from genesel.report.headline import headline, match_landmarks, random_comparison
from genesel.report.html import ReportSection, render_report
from genesel.report.layout import ResultsLayout
from genesel.report.runtime import rule_times, step_times
from genesel.report.tables import (
    all_gene_table,
    curve_table,
    match_table,
    overlap_table,
    random_table,
    ridge_table,
    unconverged_runs,
)
from genesel.report.uncertainty import LEVEL, RESAMPLES
from genesel.sweep_plan import LANDMARK_METHOD, RANDOM_METHOD

logger = logging.getLogger(__name__)

#: Metrics the curves use when none is named, most preferred first: the imputed-gene MSE
#: (genes outside the panel, standardised units), the number `genesel evaluate` prints.
PREFERRED_METRICS = (HEADLINE_METRIC, "mse")

#: Axis labels of the metrics ``genesel evaluate`` writes.
METRIC_LABELS = {
    "mse": "MSE, all genes (standardised)",
    "mae": "MAE, all genes (standardised)",
    "mse_imputed": "MSE, imputed genes (standardised)",
    "mae_imputed": "MAE, imputed genes (standardised)",
    "mse_original": "MSE, all genes (log2 units)",
    "mae_original": "MAE, all genes (log2 units)",
    "mse_imputed_original": "MSE, imputed genes (log2 units)",
    "mae_imputed_original": "MAE, imputed genes (log2 units)",
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
    random_tsv: Path
    runs_tsv: Path
    headline: list[str]


def choose_metric(runs: pd.DataFrame, metric: str | None = None) -> str:
    """Return ``metric`` if the runs have it, else the first of :data:`PREFERRED_METRICS` they have."""
    if metric is not None:
        if metric not in runs:
            raise ConfigError(
                f"metric {metric!r} is not in the results; available: {', '.join(_numeric_columns(runs))}",
                parameter="metric",
            )
        return metric
    for name in PREFERRED_METRICS:
        if name in runs:
            return name
    candidates = [c for c in _numeric_columns(runs) if "mse" in c.lower()]
    if not candidates:
        raise ConfigError(
            f"no MSE column in the results; name one as metric from: {', '.join(_numeric_columns(runs))}",
            parameter="metric",
        )
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
    transfer: pd.DataFrame | None = None,
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
    transfer
        A table from :func:`genesel.report.transfer.transfer_curve`: adds the section "Transfer
        to another data set" and writes it as ``transfer.tsv`` beside the page.

    Returns
    -------
    Paths of ``index.html``, ``curves.png``, ``curves.tsv``, ``landmark_match.tsv`` and ``runs.tsv``.
    """
    layout = ResultsLayout.at(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else layout.report_dir
    aggregated = runs is None
    if runs is None:
        tables = aggregate_results(layout.root)
    else:
        panels = list(
            runs[["method", "n_genes", "seed"]]
            .drop_duplicates()
            .itertuples(index=False, name=None)
        )
        tables = ResultTables(
            runs=runs,
            histories=read_histories(layout, panels),
            benchmarks=read_benchmarks(layout.benchmarks_dir, layout.logs_dir),
        )
    metric = choose_metric(tables.runs, metric)
    runs = tables.runs.reset_index(drop=True)
    per_sample = (
        read_per_sample(layout, runs, metric=metric) if metric == HEADLINE_METRIC else None
    )
    curves = summarize_curves(runs, metric=metric, per_sample=per_sample)
    decoders = decoder_order(runs["decoder"].unique())
    if (
        metric == HEADLINE_METRIC
    ):  # the matching rule, the ceiling and the wording assume this error metric
        matches = match_landmarks(curves)
        versus_random = random_comparison(curves)
        sentences = [headline(matches, curves, decoder=decoder) for decoder in decoders]
    else:
        matches, versus_random = (
            match_landmarks(Curves(curves.table.iloc[0:0])),
            random_comparison(Curves(curves.table.iloc[0:0])),
        )
        sentences = [
            f"The report plots {metric}; the landmark match and the comparison with random panels are made on {HEADLINE_METRIC} only."
        ]
    metric_label = f"{split_name(runs)} {METRIC_LABELS.get(metric, metric)}"
    figure = curves_figure(
        curves.table, metric_label=metric_label, noise_floor=tables.noise_floor, decoders=decoders
    )

    outputs = ReportOutputs(
        index=out_dir / "index.html",
        curves_png=out_dir / "curves.png",
        curves_tsv=out_dir / "curves.tsv",
        landmark_match_tsv=out_dir / "landmark_match.tsv",
        random_tsv=out_dir / "versus_random.tsv",
        runs_tsv=out_dir / "runs.tsv",
        headline=sentences,
    )
    curves_png = figure_png(figure)
    with atomic_output(outputs.curves_png) as tmp:
        tmp.write_bytes(curves_png)
    write_table(curves.table.assign(metric=metric), outputs.curves_tsv)
    write_table(matches, outputs.landmark_match_tsv)
    write_table(versus_random, outputs.random_tsv)
    if aggregated:
        write_table(tables.runs, outputs.runs_tsv)
    sections = _sections(
        tables,
        curves,
        matches,
        versus_random,
        curves_png,
        metric=metric,
        sentences=sentences,
        bootstrapped=per_sample is not None,
    )
    costs = cost_figure(runs, metric=metric, metric_label=metric_label, decoders=decoders)
    if costs is not None:  # panels chosen with gene costs: the error against what they cost
        sections.insert(
            2,
            ReportSection(
                "Imputation error against total panel cost",
                paragraphs=[
                    "Panels selected with per-gene costs (--gene-cost / --budget): each point is one method at one panel "
                    "size, placed at the mean total cost of its panels (panel.tsv's total_cost) and their mean error over "
                    "seeds. Methods that choose by cost (greedy, lassonet, logitnormal) should reach a given error for less."
                ],
                figures={"cost": figure_png(costs)},
            ),
        )
    if transfer is not None and len(transfer):
        from genesel.report.transfer import transfer_section

        sections.insert(-1, transfer_section(transfer))  # before "Files"
        write_table(transfer, out_dir / "transfer.tsv")
    subtitle = f"{layout.root} · {len(tables.runs)} evaluated models · built {datetime.now():%Y-%m-%d %H:%M}"
    page = render_report(
        title or f"genesel report: {layout.root.name}", sections, subtitle=subtitle
    )
    with atomic_output(outputs.index) as tmp:
        tmp.write_text(page, encoding="utf-8")
    for sentence in sentences:
        logger.info("%s", sentence)
    logger.info("report written to %s", outputs.index)
    return outputs


def _sections(
    tables: ResultTables,
    curves: Curves,
    matches: pd.DataFrame,
    versus_random: pd.DataFrame,
    curves_png: bytes,
    *,
    metric: str,
    sentences: list[str],
    bootstrapped: bool,
) -> list[ReportSection]:
    runs = tables.runs
    methods = sorted(runs["method"].unique())
    sizes = sorted(int(k) for k in runs.loc[runs["method"] != LANDMARK_METHOD, "n_genes"].unique())
    # the random band's seeds (0 .. random_panels - 1) are panels of their own, not repeats of a selector
    selector_seeds = runs.loc[runs["method"] != RANDOM_METHOD, "seed"]
    seeds = sorted(
        int(s) for s in (selector_seeds if len(selector_seeds) else runs["seed"]).unique()
    )
    n_random = (
        runs[runs["method"] == RANDOM_METHOD].groupby(["decoder", "n_genes"])["seed"].nunique()
    )
    overview = (
        f"{len(methods)} methods ({', '.join(methods)}), panel sizes {', '.join(map(str, sizes))}, "
        f"seeds {', '.join(map(str, seeds))}"
        + (f" ({int(n_random.max())} random panels per size)" if len(n_random) else "")
        + f", decoders {', '.join(decoder_order(runs['decoder'].unique()))}. "
        f"Error: {METRIC_LABELS.get(metric, metric)} on the {split_name(runs)} split"
        + (
            ": the mean squared error over the genes outside the panel (panel genes are measured, not imputed), each "
            "gene in units of its train standard deviation; predicting every gene's train mean scores about 1."
            if metric == HEADLINE_METRIC
            else "."
        )
    )
    how_intervals = (
        f"Bars: {100 * LEVEL:.0f}% intervals from {RESAMPLES} bootstrap resamples of the test samples (the same "
        "resamples for every method, so comparisons are paired), resampling seeds too where a point averages several."
        if bootstrapped
        else "Bars: the range over seeds (no per-sample errors were found, so no bootstrap)."
    )
    band = (
        f"The grey band spans 10-90% of {int(n_random.max())} random panels per size, the reference a selector must beat. "
        if len(n_random) and n_random.max() >= 3
        else ""
    )
    sections = [
        ReportSection("The answer", bullets=sentences, lead=True),
        ReportSection(
            "Panel size against imputation error",
            paragraphs=[
                overview,
                f"{how_intervals} {band}The star (with its interval) and the dashed line are the L1000 landmark panel; "
                "the dotted line is the simulator's noise floor, the best any panel can do, when the data is simulated.",
            ],
            figures={"curves": curves_png},
        ),
    ]
    if len(matches):
        sections.append(
            ReportSection(
                "Genes needed to reach the landmarks",
                paragraphs=[
                    "For each method, the panel size at which its curve first falls to the landmark panel's error "
                    "(interpolated between the sizes run, only where the curve goes down and is below the mean "
                    "predictor), with the interval from the same rule applied to every bootstrap replicate. Fewer or "
                    "more genes than the landmarks is claimed only when the whole interval says so; otherwise it is a tie."
                ],
                tables={"": match_table(matches)},
            )
        )
    if len(versus_random):
        sections.append(
            ReportSection(
                "Against random panels",
                paragraphs=[
                    "Each method minus the mean of the random panels of the same size (negative: lower error than "
                    f"random), with its {100 * LEVEL:.0f}% paired bootstrap interval: better or worse only when the "
                    "interval excludes zero."
                ],
                tables={"": random_table(versus_random)},
            )
        )
    flagged = unconverged_runs(runs)
    if len(flagged):
        sections.append(
            ReportSection(
                "Unconverged selectors",
                paragraphs=[
                    "These trained panels ended before their selector met its convergence rule (docs/methods.md; "
                    "CAE/IP-CAE: mean max selection probability >= 0.99 with distinct genes; logitNormal: K gates open "
                    "at zero temperature, within 5%): each is the method's best guess so far, and may be far from its choice. Compare them with "
                    "random panels above, and give them more steps or epochs."
                ],
                tables={"": flagged},
            )
        )
    sections.append(
        ReportSection(
            "Error by panel size",
            tables={
                f"{metric}: mean over seeds [{100 * LEVEL:.0f}% interval].": curve_table(
                    curves.table
                ),
                "Secondary: MSE over all genes (panel genes count as zero error, which flatters large panels), mean over seeds.": all_gene_table(
                    runs
                ),
                "Linear decoder: the ridge penalty used (median over seeds; relative to unit gene variance): validated on the validation split, by GCV without validation rows, or fixed by the config; grids and criterion values in each metrics.json.": ridge_table(
                    runs
                ),
            },
        )
    )
    sections.append(
        ReportSection(
            "Overlap with the L1000 landmarks",
            paragraphs=[
                "Landmark genes in each panel (mean over seeds); the landmark panel itself is all landmarks."
            ],
            tables={"Landmarks in the panel, by panel size:": overlap_table(curves.table)},
        )
    )
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
                figures={"training": figure_png(training)},
            )
        )
    by_rule, by_step = rule_times(tables.benchmarks), step_times(tables.histories)
    runtime = runtime_figure(by_rule, by_step)
    if runtime is not None:
        tables_shown = {}
        if len(by_rule):
            tables_shown[
                "Wall time per workflow rule (Snakemake benchmark files) and CPU time (user + system, from each genesel command's own resource-usage line in its log; Snakemake's sampled figure where a log lacks it):"
            ] = by_rule
        if len(by_step):
            tables_shown[
                "Training speed per method (median over epochs; methods that record steps per second):"
            ] = by_step
        sections.append(
            ReportSection("Runtime", figures={"runtime": figure_png(runtime)}, tables=tables_shown)
        )
    sections.append(
        ReportSection(
            "Files",
            paragraphs=[
                "curves.tsv (the curves above, with intervals), landmark_match.tsv (the matching panel sizes), "
                "versus_random.tsv (each method against random panels), runs.tsv (every evaluated model with all "
                "its metrics) and curves.png lie beside this page."
            ],
        )
    )
    return sections


def _numeric_columns(runs: pd.DataFrame) -> list[str]:
    return [
        c
        for c in runs.columns
        if pd.api.types.is_numeric_dtype(runs[c]) and c not in ("n_genes", "seed")
    ]
