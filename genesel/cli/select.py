"""``genesel select``: choose a panel of K genes with one method."""

from __future__ import annotations

import argparse
import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genesel.cli.common import (
    add_training_arguments,
    add_wait_argument,
    loader_config,
    parse_params,
    resuming,
    run_config,
    trainer_config,
)
from genesel.selectors.methods import METHOD_SUMMARIES, available_methods

if TYPE_CHECKING:  # the parser is built without torch; these load when a command runs
    from genesel.panel import PanelResult
    from genesel.store import Store

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``genesel select``."""
    parser = subparsers.add_parser(
        "select",
        help="select a gene panel",
        description=(
            "Select K genes from a preprocessed store. Writes DIR/panel.tsv (rank, gene id, symbol,\n"
            "landmark flag, score, status: included or selected), DIR/history.tsv, DIR/config.json and DIR/model.pt for trained methods.\n\nmethods:\n"
            + "\n".join(f"  {name:<17} {line}" for name, line in METHOD_SUMMARIES.items())
            + "\n\n`genesel select --method M --help-params` lists M's --param keys with their defaults."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data", help="preprocessed store (.h5ad from genesel preprocess); required"
    )
    parser.add_argument(
        "--method", required=True, choices=available_methods(), help="selection method (see above)"
    )
    parser.add_argument(
        "--help-params",
        action="store_true",
        help="print the --param keys of --method with their defaults, and exit",
    )
    parser.add_argument(
        "--n-genes",
        "-k",
        type=int,
        nargs="+",
        help="panel size K, included genes among them; required unless --budget is given (several: one run per size, see --out)",
    )
    parser.add_argument(
        "--include",
        metavar="GENES",
        default=None,
        help="genes every panel contains (they lead panel.tsv, marked 'included'): gene ids or symbols as a comma list, "
        "a file (one per line, or a table with a gene_id column such as an earlier panel.tsv), or the word 'landmarks'",
    )
    parser.add_argument(
        "--exclude",
        metavar="GENES",
        default=None,
        help="genes no panel contains (same forms as --include); every method honours both",
    )
    parser.add_argument(
        "--gene-cost",
        metavar="TSV",
        default=None,
        help="per-gene costs: a TSV with columns gene (id or symbol, as for --include) and cost (positive); greedy, "
        "lassonet and logitnormal weigh genes by cost, panel.tsv gets a cost column; cae/ipcae refuse it",
    )
    parser.add_argument(
        "--default-cost",
        type=float,
        default=None,
        help="cost of genes --gene-cost does not name (default 1)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="most the panel's genes may cost in all, included genes among them (with --gene-cost; without it every gene "
        "costs --default-cost); alone: as many genes as fit, with --n-genes: exactly K genes within it",
    )
    parser.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[0],
        help="random seed (default 0; several: one run per seed, see --out)",
    )
    parser.add_argument(
        "--out",
        help="output directory; required. With several --n-genes or --seed values every run (each size x each seed, "
        "in one process: the data is read and torch imported once) writes its own directory, so OUT names them "
        "with {n_genes} and {seed}, e.g. panels/cae/k{n_genes}/seed{seed}",
    )
    parser.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="method hyperparameter, repeatable (e.g. --param hidden=[256] --param gjsd_weight=0.1)",
    )
    add_training_arguments(parser, epochs=100)
    parser.add_argument(
        "--stop-when-converged",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            "CAE/IP-CAE: stop once the mean max selection probability reaches 0.99 (the CAE paper's rule), and go on "
            "past the planned steps while unconverged (see --converge-extension); default on for CAE/IP-CAE"
        ),
    )
    parser.add_argument(
        "--converge-extension",
        type=float,
        default=None,
        help="extra steps allowed while unconverged after the planned ones, as a multiple of them (default: CAE/IP-CAE 1.0; 0 = none)",
    )
    parser.add_argument(
        "--refine",
        action="store_true",
        help="then swap panel genes for outside genes while that lowers the validated ridge imputation error "
        "(exact, from the gene-by-gene moments; any method)",
    )
    parser.add_argument(
        "--refine-max-swaps", type=int, default=None, help="swap budget of --refine (default: K)"
    )
    parser.add_argument(
        "--refine-ridge", type=float, default=None, help="ridge penalty of --refine (default 1.0)"
    )
    parser.add_argument(
        "--moments",
        default=None,
        help="moments file of the store (genesel moments) for --refine and for methods that use moments (greedy, qr's "
        "completion); default: STORE.moments.h5 beside the store if present, else computed into DIR",
    )
    parser.add_argument(
        "--keep-checkpoint",
        action="store_true",
        help="keep the resume checkpoint in DIR after the panel is written",
    )
    add_wait_argument(parser)
    parser.set_defaults(func=run)


def method_params(method: str) -> list[tuple[str, object]]:
    """The ``--param`` keys of ``method`` with their defaults (from its selector's signature)."""
    import inspect

    from genesel.selectors.base import get_selector_class

    signature = inspect.signature(get_selector_class(method).__init__)
    return [
        (name, p.default)
        for name, p in signature.parameters.items()
        if name not in ("self", "n_genes", "seed")
    ]


def run(args: argparse.Namespace) -> int:
    """Run ``genesel select``."""
    from genesel.errors import ConfigError

    if args.help_params:
        listed = method_params(args.method)
        print(f"{args.method}: {METHOD_SUMMARIES[args.method]}")
        print(
            "\n".join(f"  --param {name}={default!r}" for name, default in listed)
            or "  (no parameters)"
        )
        return 0
    size = args.budget if args.n_genes is None else args.n_genes
    missing = [
        flag
        for flag, value in (
            ("--data", args.data),
            ("--n-genes or --budget", size),
            ("--out", args.out),
        )
        if value is None
    ]
    if missing:
        raise ConfigError(
            f"genesel select needs {', '.join(missing)} (or --help-params to list the method's parameters)"
        )
    costs: dict[str, Any] = {"gene_cost": args.gene_cost, "budget": args.budget}
    if args.default_cost is not None:
        costs["default_cost"] = args.default_cost
    import inspect

    from genesel.checkpoint import remove_checkpoint
    from genesel.io.lock import guarded_output
    from genesel.selectors.base import get_selector_class
    from genesel.store import Store

    params = parse_params(args.param)
    accepts_moments = (
        "moments" in inspect.signature(get_selector_class(args.method).__init__).parameters
    )
    if args.moments is not None and accepts_moments:
        params.setdefault("moments", args.moments)
    runs = run_directories(
        args.out, args.n_genes or [None], args.seed
    )  # [None]: only a budget, as many genes as fit
    with Store.open(args.data) as store:
        for n_genes, seed, out in runs:
            with guarded_output(out, kind="dir", wait=args.wait):
                result = resuming(
                    args, partial(select_run, args, store, params, costs, n_genes, seed, out)
                )
                if not args.keep_checkpoint:
                    for name in get_selector_class(args.method).checkpoint_files:
                        remove_checkpoint(Path(out) / name)
            overlap = int(result.table()["landmark"].sum())
            logger.info(
                "panel of %d genes (%d L1000 landmarks) written to %s/panel.tsv",
                result.n_genes,
                overlap,
                out,
            )
    return 0


def select_run(
    args: argparse.Namespace,
    store: Store,
    params: dict[str, Any],
    costs: dict[str, Any],
    n_genes: int | None,
    seed: int,
    out: str,
    resume: bool,
) -> PanelResult:
    """Select one panel (size ``n_genes``, seed ``seed``) into ``out`` as the options ask."""
    from genesel.selectors.select import select_panel

    return select_panel(
        store,
        method=args.method,
        n_genes=n_genes,
        seed=seed,
        params=dict(params),
        trainer=trainer_config(
            args,
            stop_when_converged=args.stop_when_converged,
            converge_extension=args.converge_extension,
        ),
        loader=loader_config(args),
        run=run_config(args, seed=seed),
        out_dir=out,
        resume=resume,
        refine=refine_options(args),
        include=args.include,
        exclude=args.exclude,
        **costs,
    )


def run_directories(
    out: str, sizes: list[int | None], seeds: list[int]
) -> list[tuple[int | None, int, str]]:
    """``(n_genes, seed, directory)`` of every run: each size with each seed, in that order.

    One run writes to ``out`` as given (its ``{n_genes}`` and ``{seed}`` filled in, if named);
    several need ``{n_genes}`` and/or ``{seed}`` in ``out`` so that each gets its own directory.
    A size ``None`` (only ``--budget``) names its directory ``{n_genes}`` as ``budget``.
    """
    from genesel.errors import ConfigError

    pairs = [(None if k is None else int(k), int(s)) for k in sizes for s in seeds]
    if len(set(pairs)) != len(pairs):
        raise ConfigError(f"--n-genes {sizes} --seed {seeds}: repeated values")
    if len(pairs) == 1 and "{n_genes}" not in out and "{seed}" not in out:
        return [(*pairs[0], out)]
    fields = {"n_genes": len(set(sizes)) > 1, "seed": len(set(seeds)) > 1}
    lacking = [
        f"{{{name}}}" for name, needed in fields.items() if needed and f"{{{name}}}" not in out
    ]
    if lacking:
        raise ConfigError(
            f"--out {out!r} must contain {' and '.join(lacking)} to give each of the {len(pairs)} runs its own directory"
        )
    try:
        return [(k, s, out.format(n_genes="budget" if k is None else k, seed=s)) for k, s in pairs]
    except (KeyError, IndexError, ValueError) as error:
        raise ConfigError(
            f"--out {out!r}: only {{n_genes}} and {{seed}} may be named in braces ({error})"
        ) from None


def refine_options(args: argparse.Namespace) -> bool | dict[str, object]:
    """``select_panel``'s ``refine`` from the ``--refine*`` options."""
    if not args.refine:
        return False
    options: dict[str, object] = {}
    if args.refine_max_swaps is not None:
        options["max_swaps"] = args.refine_max_swaps
    if args.refine_ridge is not None:
        options["ridge"] = args.refine_ridge
    if args.moments is not None:
        options["moments"] = args.moments
    return options or True
