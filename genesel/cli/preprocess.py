"""``genesel preprocess``: turn an expression matrix into a genesel store."""

from __future__ import annotations

import argparse

from genesel.cli.common import add_wait_argument
from genesel.errors import ConfigError
from genesel.io.lock import guarded_output
from genesel.io.open import FORMATS
from genesel.transforms import DUPLICATE_TOLERANCE


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``genesel preprocess``."""
    parser = subparsers.add_parser(
        "preprocess",
        help="probe -> gene, log2, quantile normalisation, split and statistics -> store",
        description=(
            "Read an expression matrix (GCTX, .h5ad, .zarr, CSV/TSV, or D-GEX/CAE .npy files) by row blocks "
            "and write a store (.h5ad): probes averaged into the D-GEX genes, optionally log2(x + 1), "
            "near-duplicate samples removed and quantile normalisation, a seeded train/validation/test "
            "split (D-GEX's 88,807/11,101/rest, proportional for other sizes), per-gene mean and std of "
            "the train split. Rows are grouped train, validation, test. See docs/data.md."
        ),
    )
    parser.add_argument(
        "input", metavar="INPUT", help="matrix file, or a directory of D-GEX/CAE .npy files"
    )
    parser.add_argument("--out", required=True, help="store to write (.h5ad)")
    parser.add_argument(
        "--format",
        choices=sorted(FORMATS),
        default=None,
        help="input format (default: from the extension)",
    )
    parser.add_argument(
        "--orientation",
        choices=("samples-by-genes", "genes-by-samples"),
        default=None,
        help="text/GCTX layout (default: guessed from the ids)",
    )
    parser.add_argument("--layer", default=None, help="AnnData layer to read instead of X")
    parser.add_argument(
        "--probe-map",
        default=None,
        help="probe -> gene map (symbol, gene id, probes[, landmark]; default D-GEX)",
    )
    parser.add_argument(
        "--log2",
        choices=("auto", "yes", "no"),
        default=None,
        help="take log2(x + 1): auto = only if not log-scale (default)",
    )
    parser.add_argument(
        "--force-log",
        action="store_true",
        default=None,
        help="with --log2 yes, log data that looks log-scale already",
    )
    parser.add_argument(
        "--quantile-normalize",
        action="store_true",
        default=None,
        help="quantile-normalise samples (reference: train split)",
    )
    parser.add_argument(
        "--remove-duplicates",
        action="store_true",
        default=None,
        help="drop samples repeating an earlier one",
    )
    parser.add_argument(
        "--duplicate-tolerance",
        type=float,
        default=None,
        help=f"max abs difference of duplicates (default {DUPLICATE_TOLERANCE:g})",
    )
    parser.add_argument(
        "--split-column", default=None, help="obs column holding train/validation/test labels"
    )
    parser.add_argument(
        "--group-column",
        default=None,
        help="obs column of groups (subject, patient, batch) kept whole within one split, so no test subject is trained on",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the random split (default 0)"
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="train and validation sizes [and test] (default: D-GEX's)",
    )
    parser.add_argument(
        "--block-rows", type=int, default=None, help="samples per block (default: about 64 MiB)"
    )
    add_wait_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``genesel preprocess``."""
    if args.sizes is not None and len(args.sizes) not in (2, 3):
        raise ConfigError(
            f"--sizes takes 2 or 3 numbers (train validation [test]), got {args.sizes}"
        )
    with guarded_output(args.out, kind="file", wait=args.wait):
        _preprocess(args)
    return 0


#: Options of ``genesel preprocess`` passed to :func:`~genesel.preprocess.preprocess` when given
#: (the others keep the function's defaults).
_OPTIONS = (
    "format",
    "orientation",
    "layer",
    "probe_map",
    "log2",
    "force_log",
    "quantile_normalize",
    "remove_duplicates",
    "duplicate_tolerance",
    "split_column",
    "group_column",
    "seed",
    "sizes",
    "block_rows",
)


def _preprocess(args: argparse.Namespace) -> None:
    from genesel.preprocess import preprocess

    given = {name: getattr(args, name) for name in _OPTIONS if getattr(args, name) is not None}
    preprocess(args.input, args.out, progress=getattr(args, "progress", True), **given)
