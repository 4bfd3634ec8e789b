"""Entry point of the ``genesel`` command: dispatches to one module per subcommand.

Each subcommand module ``genesel.cli.<name>`` defines ``add_parser(subparsers)`` which
registers its parser (with ``help`` and ``description``) and sets ``func=run`` where
``run(args: argparse.Namespace) -> int`` does the work by calling package functions.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from genesel import __version__
from genesel.errors import GeneselError

#: Subcommands in the order ``genesel --help`` lists them.
SUBCOMMANDS = ("simulate", "preprocess", "moments", "select", "impute", "evaluate", "curve", "report")

logger = logging.getLogger("genesel")


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="genesel",
        description="Design reduced gene panels and impute whole transcriptomes from them.",
    )
    parser.add_argument("--version", action="version", version=f"genesel {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only, no progress bars")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"genesel.cli.{name}")
        module.add_parser(subparsers)
    return parser


def configure_logging(*, verbose: bool = False, quiet: bool = False) -> None:
    """Send genesel's log records to stderr with a short timestamped format."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``genesel`` command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    configure_logging(verbose=args.verbose, quiet=args.quiet)
    args.progress = not args.quiet
    try:
        return int(args.func(args) or 0)
    except GeneselError as error:
        logger.error("%s", error)
        return 1
    except KeyboardInterrupt:
        logger.error("interrupted; completed outputs are intact, rerun with --resume where offered")
        return 130


if __name__ == "__main__":
    sys.exit(main())
