"""``genesel curve``: fit and score the linear decoder of many panels from the moments."""

from __future__ import annotations

import argparse
import logging

from genesel.cli.common import add_wait_argument
from genesel.io.lock import guarded_output

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``genesel curve``."""
    parser = subparsers.add_parser(
        "curve",
        help="linear decoder of many panels at once, from the moments",
        description=(
            "For every panel.tsv given (and, with --random-panels N, N seeded random panels of each --random-sizes "
            "size), fit the linear decoder (ridge validated unless --ridge says otherwise) and score it on the test "
            "split from the moments of `genesel moments`, in one process and without a pass over the data. Writes "
            "OUT/<method>/k<K>/seed<S>/linear/metrics.json, per_gene.tsv and per_sample.tsv (as `genesel evaluate` "
            "does) and OUT/linear_runs.tsv listing them. The numbers equal `genesel impute fit` + `genesel evaluate` "
            "to rounding."
        ),
    )
    parser.add_argument(
        "--data", required=True, help="preprocessed store (.h5ad from genesel preprocess)"
    )
    parser.add_argument("--moments", required=True, help="moments file from genesel moments")
    parser.add_argument(
        "--panels", nargs="*", default=[], help="panel.tsv files (with config.json beside them)"
    )
    parser.add_argument(
        "--random-panels",
        type=int,
        default=0,
        help="seeded random panels per size (the random-panel band)",
    )
    parser.add_argument(
        "--random-sizes", type=int, nargs="*", default=[], help="panel sizes of the random band"
    )
    parser.add_argument(
        "--ridge", default=None, help="'auto' (default: validated per panel) or a fixed penalty"
    )
    parser.add_argument(
        "--split",
        choices=("test", "validation"),
        default="test",
        help="rows to score (default test)",
    )
    parser.add_argument(
        "--out", required=True, help="metrics folder (results/<run>/metrics in the workflow)"
    )
    add_wait_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``genesel curve``."""
    from genesel.impute.curve import linear_curve
    from genesel.impute.ridge import parse_ridge

    with guarded_output(args.out, kind="dir", wait=args.wait):
        table = linear_curve(
            args.data,
            args.moments,
            panels=args.panels,
            random_panels=args.random_panels,
            random_sizes=args.random_sizes,
            out=args.out,
            split=args.split,
            progress=args.progress,
            **({} if args.ridge is None else {"ridge": parse_ridge(args.ridge)}),
        )
    logger.info(
        "scored %d linear panels; table written to %s/linear_runs.tsv", len(table), args.out
    )
    return 0
