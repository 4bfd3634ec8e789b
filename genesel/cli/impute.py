"""``genesel impute fit|apply``: fit an imputation model on a store, apply it to new samples."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genesel.cli.common import (
    add_training_arguments,
    add_wait_argument,
    loader_config,
    resuming,
    trainer_config,
)
from genesel.decoders import ACTIVATIONS
from genesel.errors import ConfigError, InputFileError
from genesel.io.lock import guarded_output
from genesel.io.source import MatrixSource, check_unique

logger = logging.getLogger(__name__)

#: Text formats ``impute apply`` reads, by suffix (``.gz`` allowed after them).
TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": "\t"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``genesel impute`` and its ``fit`` and ``apply`` subcommands."""
    parser = subparsers.add_parser(
        "impute",
        help="fit an imputation model or apply one to new samples",
        description="Impute whole transcriptomes from a gene panel: `fit` a model on a store, `apply` it to new samples.",
    )
    actions = parser.add_subparsers(dest="impute_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: _usage(parser))
    _add_fit(actions)
    _add_apply(actions)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _add_fit(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "fit",
        help="fit a linear, MLP (D-GEX) or KNN imputation model",
        description=(
            "Fit a model that predicts every gene of the store from the panel genes, on the train split "
            "(the MLP keeps the weights of the best validation loss). Writes OUT/model.pt, OUT/model.json "
            "and, for the MLP, OUT/history.tsv (and OUT/checkpoint.pt while training, for --resume). The MLP decays the learning rate by 0.95 per epoch unless --lr-decay says otherwise."
        ),
    )
    parser.add_argument(
        "--data", required=True, help="preprocessed store (.h5ad from genesel preprocess)"
    )
    parser.add_argument(
        "--panel",
        required=True,
        nargs="+",
        help="panel.tsv from genesel select, or its directory; several: one model per panel, fitted in one process "
        "(the data read and torch imported once), with as many --out (and --metrics) values in the same order",
    )
    parser.add_argument(
        "--decoder",
        choices=("linear", "mlp", "knn"),
        default="linear",
        help="model kind (default linear)",
    )
    parser.add_argument(
        "--out", required=True, nargs="+", help="model directory to write (one per --panel)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[0],
        help="random seed (default 0; one value, or one per --panel)",
    )
    parser.add_argument(
        "--metrics",
        default=None,
        nargs="+",
        help="also score the fitted model (as `genesel evaluate` does) and write its metrics JSON here, in the same "
        "process (one per --panel)",
    )
    parser.add_argument(
        "--split",
        choices=("test", "validation"),
        default="test",
        help="rows --metrics scores (default test)",
    )
    linear = parser.add_argument_group("linear")
    linear.add_argument(
        "--ridge",
        default=None,
        help="penalty on the weights, relative to unit gene variance: 'auto' (default) picks it from a grid by the "
        "imputed-gene MSE on the validation split; a number fixes it (0 = exact least squares)",
    )
    linear.add_argument(
        "--precision",
        choices=("float64", "float32"),
        default="float64",
        help="arithmetic of the per-block products (default float64; float32 is about 2x faster on a CPU, sums stay float64)",
    )
    mlp = parser.add_argument_group("mlp")
    mlp.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=[9000],
        help="hidden layer widths, 1 to 3 (default 9000; D-GEX best: 9000 9000 9000)",
    )
    mlp.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        default="tanh",
        help="hidden activation (default tanh as D-GEX; leaky_relu as CAE)",
    )
    mlp.add_argument(
        "--dropout", type=float, default=0.1, help="dropout after each hidden layer (default 0.1)"
    )
    mlp.add_argument(
        "--keep-checkpoint",
        action="store_true",
        help="keep OUT/checkpoint.pt after the model is saved",
    )
    knn = parser.add_argument_group("knn")
    knn.add_argument(
        "--neighbors", type=int, default=10, help="k nearest train samples averaged (default 10)"
    )
    knn.add_argument(
        "--max-reference",
        type=int,
        default=10_000,
        help="train samples stored as reference, drawn with --seed (default 10000; 0 = all)",
    )
    add_wait_argument(parser)
    add_training_arguments(parser, epochs=100)
    parser.set_defaults(func=run_fit)


def _add_apply(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "apply",
        help="impute the whole transcriptome of new samples",
        description=(
            "Read samples measured on the panel genes (.h5ad; .csv/.tsv with samples as rows or "
            "columns; or a CMap .gctx, e.g. L1000 Level 3/4 profiles with Entrez gene ids as rows), match the "
            "panel genes by gene id or symbol (Entrez rows through CMap's pr_gene_symbol or the shipped L1000 "
            "landmark table; any order; extra genes ignored) and "
            "write all genes as .h5ad: var = gene id with symbol and a `measured` flag, values in the "
            "training data's units. The input must be in those units (e.g. log2, quantile-normalised)."
        ),
    )
    parser.add_argument("--model", required=True, help="model directory from genesel impute fit")
    parser.add_argument(
        "--input", required=True, help="measured samples: .h5ad, .csv/.tsv or .gctx"
    )
    parser.add_argument("--out", required=True, help="output .h5ad")
    parser.add_argument("--layer", default=None, help="AnnData layer to read instead of X")
    parser.add_argument(
        "--orientation",
        choices=("samples-by-genes", "genes-by-samples"),
        default=None,
        help="layout of a text input (default: the axis that names the panel genes), or how a .gctx stores its matrix "
        "(default: from its row and column id counts; CMap's files are stored samples-by-genes)",
    )
    parser.add_argument(
        "--batch-rows", type=int, default=4096, help="samples imputed at a time (default 4096)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    add_wait_argument(parser)
    parser.set_defaults(func=run_apply)


def run_fit(args: argparse.Namespace) -> int:
    """Run ``genesel impute fit``."""
    from genesel.checkpoint import remove_checkpoint
    from genesel.impute import fit_imputer
    from genesel.impute.mlp import CHECKPOINT_NAME, DEFAULT_LR_DECAY
    from genesel.impute.ridge import parse_ridge
    from genesel.store import Store

    fits = fit_runs(args.panel, args.out, args.metrics, args.seed)
    with Store.open(args.data) as store:
        for panel, out, metrics, seed in fits:
            with guarded_output(out, kind="dir", wait=args.wait):
                model = resuming(
                    args,
                    lambda resume, panel=panel, out=out, seed=seed: fit_imputer(
                        store,
                        panel,
                        decoder=args.decoder,
                        **({} if args.ridge is None else {"ridge": parse_ridge(args.ridge)}),
                        precision=args.precision,
                        hidden=tuple(args.hidden),
                        activation=args.activation,
                        dropout=args.dropout,
                        n_neighbors=args.neighbors,
                        max_reference=args.max_reference or None,
                        trainer=trainer_config(args, seed=seed, lr_decay=DEFAULT_LR_DECAY),
                        loader=loader_config(args),
                        block_rows=args.block_rows,
                        work_dir=out,
                        resume=resume,
                        progress=args.progress,
                    ),
                )
                model.training["panel"] = str(Path(panel))
                model.save(out)
                if metrics is not None:
                    from genesel.evaluate import describe_metrics, evaluate_model

                    evaluation = evaluate_model(
                        store, model, split=args.split, progress=args.progress
                    )
                    path = evaluation.write(metrics)
                    logger.info(
                        "%s split: %s; metrics written to %s",
                        args.split,
                        describe_metrics(evaluation.metrics),
                        path,
                    )
                if args.decoder == "mlp" and not args.keep_checkpoint:
                    remove_checkpoint(out / CHECKPOINT_NAME)
            logger.info(
                "%s imputation model (%d panel genes -> %d genes) written to %s",
                args.decoder,
                model.n_panel,
                model.n_genes,
                out,
            )
    return 0


def fit_runs(
    panels: list[str], outs: list[str], metrics: list[str] | None, seeds: list[int]
) -> list[tuple[str, Path, str | None, int]]:
    """``(panel, out, metrics, seed)`` of each fit: the lists of ``impute fit`` matched by position."""
    counts = {"--out": len(outs), "--metrics": len(panels) if metrics is None else len(metrics)}
    counts["--seed"] = len(panels) if len(seeds) == 1 else len(seeds)
    wrong = [f"{flag} ({count})" for flag, count in counts.items() if count != len(panels)]
    if wrong:
        raise ConfigError(f"{len(panels)} --panel values need as many {', '.join(wrong)} values")
    if len(set(outs)) != len(outs):
        raise ConfigError("every --out value must be a different directory")
    metrics = metrics or [None] * len(panels)
    seeds = seeds * len(panels) if len(seeds) == 1 else seeds
    return [
        (panel, Path(out), m, int(seed))
        for panel, out, m, seed in zip(panels, outs, metrics, seeds, strict=True)
    ]


def run_apply(args: argparse.Namespace) -> int:
    """Run ``genesel impute apply``."""
    from genesel.impute import load_model

    if args.batch_rows < 1:
        raise ConfigError(f"--batch-rows must be positive, got {args.batch_rows}")
    model = load_model(args.model)
    data = read_measured(args.input, model, orientation=args.orientation)
    try:
        with guarded_output(args.out, kind="file", wait=args.wait):
            result = model.impute(
                data,
                layer=args.layer,
                batch_rows=args.batch_rows,
                out=args.out,
                device=args.device,
                progress=args.progress,
            )
            result.file.close()
    finally:
        if getattr(data, "isbacked", False):
            data.file.close()
        elif isinstance(data, MatrixSource):
            data.close()
    logger.info(
        "imputed %d samples x %d genes (%d measured) written to %s",
        result.n_obs,
        model.n_genes,
        model.n_panel,
        args.out,
    )
    return 0


def read_measured(path: str | Path, model: Any, *, orientation: str | None = None) -> Any:
    """Open new samples for imputation: ``.h5ad`` backed, ``.gctx`` lazily, text as a samples x genes DataFrame."""
    import anndata

    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file")
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if suffixes and suffixes[-1] == ".gctx":
        from genesel.io.gctx import read_gctx

        return read_gctx(path, orientation=orientation)  # type: ignore[arg-type]
    if suffixes and suffixes[-1] == ".h5ad":
        try:
            adata = anndata.read_h5ad(path, backed="r")
        except Exception as error:
            raise InputFileError(path, f"not a readable .h5ad ({error})") from None
        try:
            check_unique(path, pd.Index(adata.var_names.astype(str)), "gene")
            check_unique(path, pd.Index(adata.obs_names.astype(str)), "sample")
        except InputFileError:
            adata.file.close()
            raise
        return adata
    if not suffixes or suffixes[-1] not in TEXT_SUFFIXES:
        raise InputFileError(
            path, "unsupported input format", "give a .h5ad, .gctx, .csv or .tsv file"
        )
    sep = TEXT_SUFFIXES[suffixes[-1]]
    try:
        table = pd.read_csv(path, sep=sep, index_col=0)
        # pandas renames a repeated column name GENE to GENE.1: read the header as data to see the real names
        header = (
            pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
            .iloc[0]
            .tolist()
        )
    except Exception as error:
        raise InputFileError(path, f"cannot parse the table ({error})") from None
    table.index = table.index.astype(str)
    table.columns = pd.Index([str(name) for name in header[len(header) - table.shape[1] :]])
    if orientation is None:
        names = set(model.panel_ids) | set(model.panel_symbols)
        in_columns = sum(c in names for c in table.columns)
        in_rows = sum(r in names for r in table.index)
        orientation = "genes-by-samples" if in_rows > in_columns else "samples-by-genes"
        logger.info(
            "%s: reading as %s (%d panel genes found)", path, orientation, max(in_rows, in_columns)
        )
    if orientation == "genes-by-samples":
        table = table.T
    check_unique(path, table.columns, "gene")
    check_unique(path, table.index, "sample")
    non_numeric = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        raise InputFileError(
            path,
            f"non-numeric values in columns {non_numeric[:5]}",
            "the table must hold numbers apart from its id row and column",
        )
    frame = table.astype(np.float32)
    frame.attrs["source"] = str(path)
    return frame
