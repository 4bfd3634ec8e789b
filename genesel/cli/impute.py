"""``genesel impute fit|apply``: fit an imputation model on a store, apply it to new samples."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genesel.cli.common import (
    add_training_arguments,
    add_wait_argument,
    loader_config,
    parse_params,
    resuming,
    run_config,
    trainer_config,
)
from genesel.errors import ConfigError, InputFileError
from genesel.impute.decoders import DECODER_SUMMARIES, available_decoders
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


#: Stands in the ``impute fit`` epilog for the decoder table, generated when help is printed.
DECODER_HELP = "\x00decoders"


class _DecoderHelpFormatter(argparse.HelpFormatter):
    """Formats ``impute fit --help``, with the decoders' ``--param`` keys read from their classes.

    Generated only when the help is printed, so that building the parser imports no torch.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text == DECODER_HELP:
            return "\n".join(indent + line for line in decoder_help())
        return super()._fill_text(text, width, indent)


def decoder_help() -> list[str]:
    """Lines listing every decoder with its ``--param`` keys and defaults (from the classes)."""
    from genesel.impute.base import get_decoder_class

    lines = ["decoders, with their --param keys and defaults:"]
    for name in available_decoders():
        cls = get_decoder_class(name)
        lines.append(f"  {name}: {DECODER_SUMMARIES.get(name, '')}".rstrip())
        lines += [
            f"      --param {key}={_shown(value)}" for key, value in cls.parameters().items()
        ]
        training = getattr(cls, "training_defaults", {})
        if training:
            shown = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in training.items())
            lines.append(f"      training unless given: {shown}")
    return lines


def _shown(value: Any) -> str:
    """A default as ``--param`` reads it back (JSON; plain text for strings)."""
    if isinstance(value, str):
        return value
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _add_fit(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "fit",
        help="fit a linear, MLP (D-GEX) or KNN imputation model",
        description=(
            "Fit a model that predicts every gene of the store from the panel genes, on the train split "
            "(the MLP keeps the weights of the best validation loss). Writes OUT/model.pt, OUT/model.json "
            "and, for the MLP, OUT/history.tsv (and OUT/checkpoint.pt while training, for --resume). "
            "Decoder hyperparameters are given with --param KEY=VALUE; their defaults are listed below."
        ),
        epilog=DECODER_HELP,
        formatter_class=_DecoderHelpFormatter,
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
        choices=available_decoders(),
        default="linear",
        help="model kind (default linear)",
    )
    parser.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="decoder hyperparameter, repeatable, value read as JSON (e.g. --param hidden=[9000,9000] "
        "--param ridge=1e-3 --param n_neighbors=5); see the list below",
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
    parser.add_argument(
        "--keep-checkpoint",
        action="store_true",
        help="keep a trained decoder's OUT/checkpoint.pt after the model is saved",
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
    from genesel.impute.base import make_decoder
    from genesel.store import Store

    fits = fit_runs(args.panel, args.out, args.metrics, args.seed)
    params = decoder_params(args)
    decoder = make_decoder(args.decoder, **params)  # refuse unknown parameters before reading
    with Store.open(args.data) as store:
        for panel, out, metrics, seed in fits:
            with guarded_output(out, kind="dir", wait=args.wait):

                def fit(
                    resume: bool, panel: str = panel, out: Path = out, seed: int = seed
                ) -> Any:
                    return fit_imputer(
                        store,
                        panel,
                        decoder=args.decoder,
                        trainer=trainer_config(args),
                        run=run_config(args, seed=seed),
                        loader=loader_config(args),
                        work_dir=out,
                        resume=resume,
                        **params,
                    )

                model = resuming(args, fit)
                model.training["panel"] = str(Path(panel))
                model.save(out)
                if metrics is not None:
                    _score(store, model, metrics, args)
                if not args.keep_checkpoint:
                    for name in decoder.checkpoint_files:
                        remove_checkpoint(out / name)
            logger.info(
                "%s imputation model (%d panel genes -> %d genes) written to %s",
                args.decoder,
                model.n_genes,
                model.n_vars,
                out,
            )
    return 0


def decoder_params(args: argparse.Namespace) -> dict[str, Any]:
    """The decoder hyperparameters of ``impute fit``: the ``--param`` pairs, and ``--block-rows``.

    ``--block-rows`` goes to the decoders that read the data in blocks themselves (a
    ``block_rows`` parameter: the linear and KNN fits); trained decoders get it through the
    loader.
    """
    from genesel.impute.base import get_decoder_class

    params = parse_params(args.param)
    if (
        args.block_rows is not None
        and "block_rows" in get_decoder_class(args.decoder).parameters()
    ):
        params.setdefault("block_rows", args.block_rows)
    return params


def _score(store: Any, model: Any, metrics: str, args: argparse.Namespace) -> None:
    """Score a fitted model on ``--split`` and write its metrics JSON to ``metrics``."""
    from genesel.evaluate import describe_metrics, evaluate_model

    evaluation = evaluate_model(store, model, split=args.split, progress=args.progress)
    path = evaluation.write(metrics)
    logger.info(
        "%s split: %s; metrics written to %s",
        args.split,
        describe_metrics(evaluation.metrics),
        path,
    )


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
    written: list[str | None] = list(metrics) if metrics else [None] * len(panels)
    seeds = seeds * len(panels) if len(seeds) == 1 else seeds
    return [
        (panel, Path(out), m, int(seed))
        for panel, out, m, seed in zip(panels, outs, written, seeds, strict=True)
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
        model.n_vars,
        model.n_genes,
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

        # argparse's choices hold orientation to the Literal values read_gctx takes
        return read_gctx(path, orientation=orientation)  # type: ignore[arg-type]
    if suffixes and suffixes[-1] == ".h5ad":
        try:
            adata = anndata.read_h5ad(path, backed="r")
        except (OSError, KeyError, ValueError, TypeError) as error:  # h5py and anndata's
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
    except (OSError, ValueError, IndexError) as error:  # pandas' parser errors are ValueErrors
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
