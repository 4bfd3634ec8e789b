"""``genesel moments``: the gene-by-gene moments of a store, for every linear panel at once."""

from __future__ import annotations

import argparse
import logging

from genesel.blocks import DEFAULT_BLOCK_ROWS
from genesel.cli.common import add_wait_argument
from genesel.io.lock import guarded_output

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``genesel moments``."""
    parser = subparsers.add_parser(
        "moments",
        help="gene-by-gene moments of a store (one pass per split)",
        description=(
            "Accumulate, for each split, the row count, the sum and the genes x genes cross-product of the "
            "standardised values in float64, and write them to OUT (HDF5, with the store's fingerprint). "
            "`genesel curve` then fits and scores the linear decoder of any number of panels without reading "
            "the data again, and the `greedy` method selects from them. Memory: two D x D float64 matrices."
        ),
    )
    parser.add_argument(
        "--data", required=True, help="preprocessed store (.h5ad from genesel preprocess)"
    )
    parser.add_argument("--out", required=True, help="moments file to write (.h5)")
    parser.add_argument(
        "--precision",
        choices=("float64", "float32"),
        default=None,
        help="arithmetic of the per-block products (default float64; sums over blocks are float64 either way)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument(
        "--block-rows",
        type=int,
        default=None,
        help=f"rows per block (default {DEFAULT_BLOCK_ROWS})",
    )
    parser.add_argument(
        "--max-memory-gib",
        type=float,
        default=None,
        help="memory budget for the matrices (default: half the machine's)",
    )
    add_wait_argument(parser)
    parser.set_defaults(func=run)


#: Options of ``genesel moments`` passed to :func:`~genesel.moments.compute_moments` when given.
_OPTIONS = ("precision", "device", "block_rows", "max_memory_gib")


def run(args: argparse.Namespace) -> int:
    """Run ``genesel moments``."""
    from genesel.moments import compute_moments
    from genesel.store import Store

    with guarded_output(args.out, kind="file", wait=args.wait), Store.open(args.data) as store:
        given = {name: getattr(args, name) for name in _OPTIONS if getattr(args, name) is not None}
        path = compute_moments(store, args.out, progress=args.progress, **given)
    logger.info("moments written to %s", path)
    return 0
