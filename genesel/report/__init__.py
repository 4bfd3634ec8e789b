"""Aggregate a run's results, draw panel-size curves and write the HTML report."""

from genesel.report.aggregate import (
    ResultTables,
    aggregate_results,
    read_benchmarks,
    read_histories,
    read_metrics,
    read_runs,
)
from genesel.report.build import ReportOutputs, build_report, choose_metric
from genesel.report.curves import Curves, summarize_curves
from genesel.report.headline import headline, match_landmarks, matching_size, random_comparison
from genesel.report.layout import ResultsLayout, RunKey, parse_metrics_path

__all__ = [
    "Curves",
    "headline",
    "random_comparison",
    "ReportOutputs",
    "ResultTables",
    "ResultsLayout",
    "RunKey",
    "aggregate_results",
    "build_report",
    "choose_metric",
    "match_landmarks",
    "matching_size",
    "parse_metrics_path",
    "read_benchmarks",
    "read_histories",
    "read_metrics",
    "read_runs",
    "summarize_curves",
]
