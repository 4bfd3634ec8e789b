"""Training checkpoints: what they hold, run fingerprints, best-weights files, reading and writing.

Every checkpoint records the run's fingerprint (:func:`run_fingerprint`: the store, how
batches are cut, the trainer options, the seed and the task's own options); resuming
refuses a checkpoint whose fingerprint differs from the run's, naming the fields
(:func:`check_fingerprint`). Files are written atomically.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genesel.errors import CheckpointMismatchError, InputFileError
from genesel.io.atomic import atomic_output
from genesel.run import RunConfig
from genesel.store import store_fingerprint
from genesel.training import BUDGET_FIELDS

if TYPE_CHECKING:
    from genesel.loader import MinibatchLoader
    from genesel.training import StepBudget, TrainerConfig

#: What to do about a checkpoint that cannot be resumed.
START_AFRESH = (
    "start afresh: drop --resume (the checkpoint is then overwritten) or delete the checkpoint"
)


def run_fingerprint(
    train: MinibatchLoader,
    config: TrainerConfig,
    task: Mapping[str, Any] | None = None,
    *,
    run: RunConfig | None = None,
) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the data, the batches, the options.

    Parameters
    ----------
    train
        The training loader: its store and how it cuts batches.
    config
        The trainer options, all recorded.
    task
        The task's own options that change the result (a selector's method, panel size
        and hyperparameters; a decoder's panel genes and architecture).
    run
        The run options: its seed is recorded with the trainer options; device,
        precision and progress are not (they change how a run executes, not what it
        computes, so a resumed run may change them). ``None``: the defaults (seed 0).

    Returns
    -------
    dict
        JSON-like groups ``store`` (:func:`genesel.store.store_fingerprint`: shape and a
        hash of the gene ids, gene statistics and splits), ``loader`` (batch size, last
        batch, batch order), ``trainer`` and ``task``.
    """
    loader = train.config
    order = (
        "resident"
        if train.is_resident
        else f"pools of {loader.blocks_per_pool} blocks of {loader.block_rows} rows"
    )
    return _plain(
        {
            "store": store_fingerprint(train.store),
            "loader": {
                "batch_size": loader.batch_size,
                "drop_last": loader.drop_last,
                "batch_order": order,
            },
            "trainer": {**asdict(config), "seed": (run or RunConfig()).seed},
            "task": dict(task or {}),
        }
    )


def fingerprint_differences(
    saved: Mapping[str, Any], current: Mapping[str, Any], *, ignore: Collection[str] = ()
) -> list[str]:
    """The fields in which two run fingerprints differ, described for a message (``name old -> new``).

    ``ignore`` holds the fields not compared, as ``group.name`` (e.g. ``trainer.max_epochs``).
    """
    flat_saved, flat_current = _flatten(saved), _flatten(current)
    differences = []
    for key in [*flat_saved, *(k for k in flat_current if k not in flat_saved)]:
        if key in ignore or flat_saved.get(key, _ABSENT) == flat_current.get(key, _ABSENT):
            continue
        differences.append(
            _describe(key, flat_saved.get(key, _ABSENT), flat_current.get(key, _ABSENT))
        )
    return differences


def check_fingerprint(
    path: Path,
    saved: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    *,
    ignore: Collection[str] = (),
) -> None:
    """Raise :class:`~genesel.errors.CheckpointMismatchError` unless checkpoint ``path`` (fingerprint ``saved``) was made by this run.

    A checkpoint without a fingerprint (written before genesel recorded one) is refused:
    nothing shows that it was made from the same inputs.
    """
    if not isinstance(saved, Mapping):
        raise CheckpointMismatchError(
            path,
            "checkpoint has no run fingerprint (written by an older genesel), so it cannot be checked against this run",
            START_AFRESH,
        )
    differences = fingerprint_differences(saved, current, ignore=ignore)
    if differences:
        shown = differences[:8] + (
            [f"and {len(differences) - 8} more"] if len(differences) > 8 else []
        )
        raise CheckpointMismatchError(
            path,
            f"checkpoint was made with other inputs (checkpoint -> this run: {'; '.join(shown)})",
            START_AFRESH,
        )


def check_resumable(
    path: Path,
    saved: Mapping[str, Any],
    fingerprint: Mapping[str, Any],
    *,
    config: TrainerConfig,
    budget: StepBudget,
    scheduled: bool,
) -> None:
    """Refuse checkpoint ``path`` (read as ``saved``) unless this run may continue it.

    Its fingerprint must equal this run's ``fingerprint``; a task without a schedule over
    the budget (not ``scheduled``) may change the budget (:data:`~genesel.training.BUDGET_FIELDS`)
    as long as the checkpoint has not trained past the new one.
    """
    ignore = () if scheduled else [f"trainer.{key}" for key in BUDGET_FIELDS]
    check_fingerprint(path, saved.get("fingerprint"), fingerprint, ignore=ignore)
    saved_budget = {key: saved["fingerprint"]["trainer"].get(key) for key in BUDGET_FIELDS}
    trained = (saved["epoch"] + 1) * budget.steps_per_epoch
    if (
        saved_budget != {key: getattr(config, key) for key in BUDGET_FIELDS}
        and trained > budget.step_limit
    ):
        raise CheckpointMismatchError(
            path,
            f"checkpoint has trained {saved['epoch'] + 1} epochs ({trained} steps), more than this run's budget of {budget.step_limit} steps",
            f"resume with at least {saved['epoch'] + 1} epochs, or {START_AFRESH}",
        )


_ABSENT = object()


def _plain(value: Any) -> Any:
    """``value`` as JSON types (lists, not tuples; Python numbers), so fingerprints compare and load safely."""

    def convert(item: Any) -> Any:
        if isinstance(item, np.generic):
            return item.item()
        if isinstance(item, np.ndarray):
            return item.tolist()
        return str(item)

    return json.loads(json.dumps(value, default=convert, sort_keys=True))


def _flatten(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    return {
        f"{group}.{key}": value
        for group, fields in fingerprint.items()
        for key, value in (fields or {}).items()
    }


def _describe(key: str, saved: Any, current: Any) -> str:
    group, _, name = key.partition(".")
    if group == "store":
        name = (
            "store content (gene ids, gene statistics or splits)"
            if name == "sha256"
            else f"store {name}"
        )
        if name.startswith("store content"):
            return f"{name} differs"
    if saved is _ABSENT or current is _ABSENT:
        return f"{name} {'not recorded' if saved is _ABSENT else 'recorded'} in the checkpoint{'' if saved is _ABSENT else ' but not set now'}"
    if (
        isinstance(saved, list)
        and isinstance(current, list)
        and len(str(saved)) + len(str(current)) > 60
    ):
        if len(saved) != len(current):
            return f"{name} ({len(saved)} -> {len(current)} entries)"
        return f"{name} ({sum(a != b for a, b in zip(saved, current, strict=True))} of {len(saved)} entries differ)"
    return f"{name} {saved!r} -> {current!r}"


def best_weights_path(checkpoint: Path, epoch: int | str) -> Path:
    """Where a trainer keeps the best weights of ``epoch`` beside ``checkpoint`` (``NAME.best-EPOCH.pt``)."""
    return checkpoint.with_name(f"{checkpoint.stem}.best-{epoch}.pt")


def best_weights_files(checkpoint: Path) -> list[Path]:
    """The best-weights files present beside ``checkpoint``."""
    return sorted(checkpoint.parent.glob(best_weights_path(checkpoint, "*").name))


def remove_checkpoint(path: Path) -> None:
    """Delete a trainer checkpoint and the best-weights files beside it, if present."""
    path = Path(path)
    for stale in best_weights_files(path):
        stale.unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def save_weights(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` (a state dict or a checkpoint payload) to ``path`` atomically."""
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """Read a trainer checkpoint onto ``device``; :class:`InputFileError` when it is unreadable or foreign."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as error:
        raise InputFileError(
            path, f"cannot read checkpoint ({error})", "delete it to start over"
        ) from None
    if not isinstance(state, dict) or "task" not in state:
        raise InputFileError(path, "not a genesel training checkpoint", START_AFRESH)
    return state


@dataclass
class FitState:
    """What a fit carries from epoch to epoch and a checkpoint saves: history, best weights, counters."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    #: The best weights in memory (a trainer without a checkpoint path) ...
    best_state: dict[str, torch.Tensor] | None = None
    #: ... or the name of their file beside the checkpoint.
    best_file: str | None = None
    best_loss: float = math.inf
    best_epoch: int = -1
    #: Whether the best weights are unconverged: with ``stop_when_converged`` the best
    #: weights are the least ``(unconverged, validation loss)``, so a converged state beats
    #: any unconverged one.
    best_rank: bool = True
    epochs_since_best: int = 0
    #: The last epoch trained (-1: none).
    epoch: int = -1
    steps_done: int = 0
    resumed: int | None = None
    finished: bool = False
    stopped: str = "max_epochs"
    converged: bool | None = None

    def payload(
        self,
        task: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        *,
        config: Mapping[str, Any],
        fingerprint: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The checkpoint of this state: weights, optimizer and schedule, history, best weights.

        ``config`` is the trainer record (:func:`genesel.training.trainer_record`) and
        ``fingerprint`` the run's (:func:`run_fingerprint`).
        """
        return {
            "task": task.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "epoch": self.epoch,
            "history": self.rows,
            "best_state": self.best_state,
            "best_file": self.best_file,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "best_rank": self.best_rank,
            # a run that used up its budget continues when resumed with a larger one
            "finished": self.finished and self.stopped in ("converged", "patience"),
            "stopped": self.stopped,
            "config": dict(config),
            "fingerprint": fingerprint,
        }

    @classmethod
    def from_checkpoint(cls, saved: Mapping[str, Any]) -> FitState:
        """The state a checkpoint (:meth:`payload`) saved, to resume after its epoch."""
        finished = bool(saved.get("finished"))
        best_epoch = saved["best_epoch"]
        return cls(
            rows=saved["history"],
            best_state=saved["best_state"],
            best_file=saved.get("best_file"),
            best_loss=saved["best_loss"],
            best_epoch=best_epoch,
            best_rank=saved.get("best_rank", False) if best_epoch >= 0 else True,
            epoch=saved["epoch"],
            resumed=saved["epoch"] + 1,
            finished=finished,
            stopped=saved.get("stopped", "max_epochs") if finished else "max_epochs",
        )
