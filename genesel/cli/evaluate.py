"""``genesel evaluate``: errors of an imputation model on a split of a store."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from genesel.cli.common import add_wait_argument
from genesel.io.lock import guarded_output

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``genesel evaluate``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="measure an imputation model's errors on a split",
        description=(
            "Impute a split of a store from its panel genes and compare with the measured values. "
            "Prints the imputed-gene MSE (standardised units, genes outside the panel) with a 95%% bootstrap "
            "interval over samples. Writes OUT (metrics JSON: MSE/MAE over the imputed genes and over all genes, in "
            "standardised and original units, Pearson r, the mean predictor's error, the simulator's noise floor "
            "when known), and per_gene.tsv and per_sample.tsv beside it."
        ),
    )
    parser.add_argument(
        "--data",
        required=True,
        help="preprocessed store (.h5ad from genesel preprocess): the model's own, or another data set (a transfer: genes "
        "matched by id, then symbol; panel genes must all be there, missing target genes are left out of the scores). "
        "Any other gene-level file (a CMap .gctx with Entrez gene ids as rows, .h5ad, .csv/.tsv) is evaluated whole, as "
        "its test split",
    )
    parser.add_argument("--model", required=True, help="model directory from genesel impute fit")
    parser.add_argument(
        "--split",
        choices=("test", "validation", "train"),
        default="test",
        help="rows to evaluate (default test)",
    )
    parser.add_argument(
        "--standardize",
        default=None,
        metavar="{model,data}",
        help="whose train mean and std define the standardised units: the model's, i.e. its training store's (default), "
        "or the evaluated data's own",
    )
    parser.add_argument(
        "--out", required=True, help="metrics .json (or a directory for DIR/metrics.json)"
    )
    parser.add_argument(
        "--orientation",
        choices=("samples-by-genes", "genes-by-samples"),
        default=None,
        help="layout of a text or .gctx --data that is not a store (default: inferred)",
    )
    # unset options are left to evaluate_model, which owns the defaults
    parser.add_argument(
        "--block-rows", type=int, default=None, help="samples per block (default 2048)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default cpu)")
    add_wait_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``genesel evaluate``."""
    from genesel.evaluate import describe_metrics, evaluate_model
    from genesel.evaluation_data import open_evaluation_data
    from genesel.impute import load_model

    # a .json names the metrics file (tables beside it); anything else is a folder for metrics.json
    with guarded_output(
        args.out, kind="file" if Path(args.out).suffix == ".json" else "dir", wait=args.wait
    ):
        model = load_model(args.model)
        # the core owns the defaults (the model's statistics, the block size, the CPU)
        options = {
            name: value
            for name, value in (
                ("standardize", args.standardize),
                ("block_rows", args.block_rows),
                ("device", args.device),
            )
            if value is not None
        }
        blocks = {} if args.block_rows is None else {"block_rows": args.block_rows}
        with open_evaluation_data(
            args.data,
            orientation=args.orientation,
            statistics=args.standardize == "data",
            **blocks,
        ) as store:
            evaluation = evaluate_model(
                store, model, split=args.split, progress=args.progress, **options
            )
        path = evaluation.write(args.out)
    logger.info(
        "%s split: %s; metrics written to %s",
        args.split,
        describe_metrics(evaluation.metrics),
        path,
    )
    return 0
