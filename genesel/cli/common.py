"""Options shared by several subcommands (training, loading, parameters)."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from genesel.errors import ConfigError

if TYPE_CHECKING:  # torch is imported when a command runs, not when the parser is built
    from genesel.loader import LoaderConfig
    from genesel.run import RunConfig
    from genesel.training import TrainerConfig

logger = logging.getLogger(__name__)
T = TypeVar("T")


def add_wait_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--wait``: queue behind another genesel run writing the same ``--out`` (see :mod:`genesel.io.lock`)."""
    parser.add_argument(
        "--wait",
        action="store_true",
        help="if another genesel run is writing --out, wait for it instead of failing",
    )


def add_training_arguments(parser: argparse.ArgumentParser, *, epochs: int | None = None) -> None:
    """Add the trainer and loader options.

    A flag left out is not passed on: the core decides (:class:`~genesel.training.TrainerConfig`:
    100 epochs, learning rate 0.001; :class:`~genesel.loader.LoaderConfig`: batches of 256).
    ``epochs`` gives a command an epoch default of its own instead.
    """
    group = parser.add_argument_group("training")
    group.add_argument(
        "--epochs",
        type=int,
        default=epochs,
        help=f"epoch budget (default {100 if epochs is None else epochs})",
    )
    group.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 0.001)")
    group.add_argument(
        "--lr-decay",
        type=float,
        default=None,
        help="multiply the learning rate by this each epoch",
    )
    group.add_argument("--batch-size", type=int, default=None, help="minibatch size (default 256)")
    group.add_argument(
        "--patience",
        type=int,
        default=None,
        help="stop after this many epochs without validation improvement (default: none; the MLP decoder 10)",
    )
    group.add_argument(
        "--max-steps-per-epoch",
        type=int,
        default=None,
        help="end each epoch after this many steps (quick runs, benchmarks)",
    )
    group.add_argument(
        "--min-steps",
        type=int,
        default=None,
        help="plan at least this many optimizer steps, raising --epochs on small data (default: the method's; CAE/IP-CAE 1000)",
    )
    group.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="hard cap on optimizer steps, any extension included (default: none)",
    )
    group.add_argument(
        "--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N"
    )
    group.add_argument(
        "--no-mixed-precision", action="store_true", help="train in float32 on the GPU"
    )
    group.add_argument(
        "--block-rows",
        type=int,
        default=None,
        help="rows read from disk at a time (default: 256 for minibatches, shuffled 4 blocks at a time; 2048 for one-pass fits)",
    )
    group.add_argument(
        "--resident-gib",
        type=float,
        default=None,
        help="keep a split in device memory when it is at most this many GiB (default: 0.25 on CPU, 80%% of free GPU memory)",
    )
    resume = group.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint in the output directory; refused (exit 1, naming the fields) when it was made "
        "with other data, panel or options",
    )
    resume.add_argument(
        "--resume-if-same",
        action="store_true",
        help="continue from the checkpoint when it was made with the same data, panel and options, else delete it and "
        "start afresh with a warning (what the workflow passes)",
    )


def resuming(args: argparse.Namespace, work: Callable[[bool], T]) -> T:
    """Run ``work(resume)`` as ``--resume`` or ``--resume-if-same`` ask.

    A checkpoint that this run must not continue (made with other data or options, written
    before run fingerprints, or trained past the budget:
    :class:`~genesel.errors.CheckpointMismatchError`, raised before anything is trained)
    stops ``--resume`` with that error; ``--resume-if-same`` logs it as a warning, deletes
    the checkpoint and calls ``work(False)``.
    """
    from genesel.checkpoint import remove_checkpoint
    from genesel.errors import CheckpointMismatchError

    try:
        return work(args.resume or args.resume_if_same)
    except CheckpointMismatchError as error:
        if not args.resume_if_same:
            raise
        logger.warning(
            "%s: %s; deleting it and starting afresh (--resume-if-same)", error.path, error.problem
        )
        remove_checkpoint(Path(error.path))
        return work(False)


def trainer_config(
    args: argparse.Namespace, *, lr_decay: float | None = None, **overrides: Any
) -> TrainerConfig:
    """Build a :class:`~genesel.training.TrainerConfig` (the hyperparameters) from parsed arguments.

    ``lr_decay`` is used when ``--lr-decay`` is not given; ``overrides`` set further options.
    """
    from genesel.training import TrainerConfig

    return TrainerConfig(
        **given(max_epochs=args.epochs, learning_rate=args.lr),
        lr_decay=args.lr_decay if args.lr_decay is not None else lr_decay,
        patience=args.patience,
        max_steps_per_epoch=args.max_steps_per_epoch,
        min_steps=getattr(args, "min_steps", None),
        max_steps=getattr(args, "max_steps", None),
        **overrides,
    )


def run_config(args: argparse.Namespace, *, seed: int) -> RunConfig:
    """Build a :class:`~genesel.run.RunConfig` (seed, device, progress, precision) from parsed arguments.

    Also allows TF32 matmuls when the device is CUDA (:func:`genesel.run.configure_precision`).
    """
    from genesel.run import RunConfig, configure_precision

    run = RunConfig(
        seed=seed,
        device=args.device,
        progress=getattr(args, "progress", True),
        mixed_precision=not args.no_mixed_precision,
    )
    configure_precision(run.device)
    return run


def loader_config(args: argparse.Namespace) -> LoaderConfig:
    """Build a :class:`LoaderConfig` from parsed arguments."""
    from genesel.loader import LoaderConfig

    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
    resident = None if args.resident_gib is None else int(args.resident_gib * (1 << 30))
    return LoaderConfig(
        resident_bytes=resident, **given(batch_size=args.batch_size, block_rows=args.block_rows)
    )


def given(**options: Any) -> dict[str, Any]:
    """The ``options`` that are not ``None`` (flags left out leave the core's default)."""
    return {key: value for key, value in options.items() if value is not None}


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` pairs; values are read as JSON when they parse, else kept as text."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param expects KEY=VALUE, got {pair!r}")
        try:
            params[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            params[key.replace("-", "_")] = value
    return params
