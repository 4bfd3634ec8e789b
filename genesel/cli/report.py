"""``genesel report``: aggregate a results directory into tables, curves and an HTML page."""

from __future__ import annotations

import argparse
import logging

from genesel.cli.common import add_wait_argument
from genesel.io.lock import guarded_output

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``genesel report``."""
    parser = subparsers.add_parser(
        "report",
        help="build the HTML report of a results directory",
        description=(
            "Collect every evaluated model under a run directory (results/<run>: metrics/, panels/, "
            "benchmarks/) and write OUT/index.html (self-contained), curves.png, curves.tsv "
            "(imputed-gene test MSE against panel size, mean over seeds with 95%% bootstrap intervals), "
            "landmark_match.tsv (genes needed to reach the L1000 landmarks' error, with intervals), "
            "versus_random.tsv and runs.tsv; prints the headline sentence."
        ),
    )
    parser.add_argument(
        "--results", required=True, metavar="DIR", help="run directory, e.g. results/demo"
    )
    parser.add_argument(
        "--out", default=None, metavar="DIR", help="report directory (default DIR/report)"
    )
    parser.add_argument(
        "--runs",
        default=None,
        metavar="TSV",
        help="use this aggregated runs table (from the workflow's aggregate step) instead of scanning DIR/metrics",
    )
    parser.add_argument(
        "--metric",
        default=None,
        help="metric plotted against panel size (default: mse_imputed, the imputed-gene test MSE in standardised units)",
    )
    parser.add_argument("--title", default=None, help="page title")
    add_wait_argument(parser)
    parser.add_argument(
        "--transfer",
        default=None,
        metavar="TSV",
        help="a transfer table (the workflow's transfer step: this run's panels imputing another data set): adds a "
        "'Transfer to another data set' section and OUT/transfer.tsv",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``genesel report``."""
    from genesel.report.aggregate import read_runs
    from genesel.report.build import build_report
    from genesel.report.layout import ResultsLayout

    out = args.out if args.out is not None else ResultsLayout.at(args.results).report_dir
    with guarded_output(out, kind="dir", wait=args.wait):
        runs = read_runs(args.runs) if args.runs else None
        transfer = None
        if args.transfer:
            from genesel.report.transfer import read_transfer

            transfer = read_transfer(args.transfer)
        outputs = build_report(
            args.results, out, runs=runs, metric=args.metric, title=args.title, transfer=transfer
        )
    for sentence in outputs.headline:
        print(sentence)
    logger.info("open %s in a browser", outputs.index)
    return 0
