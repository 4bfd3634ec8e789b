"""Entry point of the ``genesel`` command: dispatches to one module per subcommand.

Each subcommand module ``genesel.cli.<name>`` defines ``add_parser(subparsers)`` which
registers its parser (with ``help`` and ``description``) and sets ``func=run`` where
``run(args: argparse.Namespace) -> int`` does the work by calling package functions.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import cast

from genesel import __version__
from genesel.errors import ConfigError, GeneselError, parameter_flag, use_command_line_names
from genesel.io.atomic import DISK_FULL_ERRNOS
from genesel.usage import usage_line

#: Subcommands in the order ``genesel --help`` lists them.
SUBCOMMANDS = (
    "simulate",
    "preprocess",
    "moments",
    "select",
    "impute",
    "evaluate",
    "curve",
    "report",
)

logger = logging.getLogger("genesel")


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="genesel",
        description="Design reduced gene panels and impute whole transcriptomes from them.",
    )
    parser.add_argument("--version", action="version", version=f"genesel {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="log warnings only, no progress bars"
    )
    parser.add_argument(
        "--debug", action="store_true", help="let errors propagate with their full traceback"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"genesel.cli.{name}")
        module.add_parser(subparsers)
    return parser


def configure_logging(*, verbose: bool = False, quiet: bool = False) -> None:
    """Send genesel's log records to stderr with a short timestamped format."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``genesel`` command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    configure_logging(verbose=args.verbose, quiet=args.quiet)
    # hints built during the command name flags, not Python parameters (restored after, for
    # in-process callers such as the tests)
    names_before = use_command_line_names(True)
    args.progress = not args.quiet
    started = time.perf_counter()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        logger.error(
            "interrupted; completed outputs are intact, rerun with --resume where offered"
        )
        return 130
    except Exception as error:
        if args.debug:
            raise
        logger.error("%s", describe_error(error, args.command))
        return 1
    finally:
        use_command_line_names(names_before)
        # the report reads this line from each workflow job's log (genesel.usage)
        logger.info("%s", usage_line(time.perf_counter() - started))


def describe_error(error: BaseException, command: str | None = None) -> str:
    """Return the one-line message printed for an error a command raised.

    genesel's own errors carry their message (``path: problem (fix)``); a full disk
    (``ENOSPC``/``EDQUOT`` anywhere in the chain of causes) names the path being
    written; anything else is reported by type and message, with a hint to rerun with
    ``--debug`` for the traceback.
    """
    full = _disk_full(error)
    if full is not None:
        where = full.filename or full.filename2 or "the output"
        # _disk_full returns only errors whose errno is one of DISK_FULL_ERRNOS
        reason = os.strerror(cast(int, full.errno))
        return f"disk full at {where} ({reason}; free space or write elsewhere, then rerun)"
    if isinstance(error, ConfigError) and error.parameter:
        return f"{error} (command line: {parameter_flag(error.parameter)})"
    if isinstance(error, GeneselError):
        return str(error)
    message = str(error) or "(no message)"
    where = f"genesel {command}" if command else "genesel"
    return (
        f"{where} failed: {type(error).__name__}: {message} (rerun with --debug for the traceback)"
    )


def _disk_full(error: BaseException) -> OSError | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
