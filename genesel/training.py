"""One training loop for every trainable method: epochs, checkpoints, resume, history.

A *task* is a ``torch.nn.Module`` that implements :class:`TrainingTask`. The
:class:`Trainer` owns the side effects: device placement, mixed precision, the
optimiser and learning-rate schedule, the best-validation weights, the per-epoch
checkpoint (written atomically) and resuming from it. Randomness is drawn from
streams seeded by ``(seed, epoch)``, so a resumed run is identical to an uninterrupted one
on the CPU. Every checkpoint records the run's fingerprint (:func:`run_fingerprint`: the
store, how batches are cut, the trainer options and the task's own options); resuming
refuses a checkpoint whose fingerprint differs from the run's, naming the fields.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from genesel.errors import CheckpointMismatchError, ConfigError, InputFileError
from genesel.io.atomic import atomic_output
from genesel.loader import MinibatchLoader
from genesel.run import RunConfig, resolve_device
from genesel.store import store_fingerprint

logger = logging.getLogger(__name__)


@runtime_checkable
class TrainingTask(Protocol):
    """What the :class:`Trainer` needs from a model.

    Optional hooks, called when defined: ``on_epoch_start(epoch, n_epochs)``,
    ``on_step_start(step, total_steps)``, ``after_optimizer_step()``,
    ``epoch_metrics() -> dict``, ``converged(metrics) -> bool``, ``on_epoch_end(metrics)``
    (after the best weights are kept, before the checkpoint is written),
    ``configure_optimizer(lr) -> torch.optim.Optimizer``. A task with ``on_epoch_start`` or
    ``on_step_start`` follows a schedule over the planned budget, so a resumed run must keep
    the budget (see :data:`BUDGET_FIELDS`).
    """

    def training_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Mean loss of a training minibatch (with the model in train mode)."""

    def validation_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Mean loss of a validation minibatch (eval mode, no gradient)."""


@dataclass(frozen=True)
class TrainerConfig:
    """The hyperparameters of :class:`Trainer`: epoch and step budget, learning rate, stopping rules.

    Frozen and free of how a run executes (seed, device, progress, precision: those are
    :class:`~genesel.run.RunConfig`); derive a changed copy with :func:`dataclasses.replace`.

    Parameters
    ----------
    max_epochs
        Epoch budget.
    learning_rate
        Adam learning rate (unless the task configures its own optimiser).
    lr_decay
        Multiply the learning rate by this after every epoch (D-GEX/CAE decoders: 0.95).
    patience
        Stop when the validation loss has not improved for this many epochs.
    max_steps_per_epoch
        Stop each epoch after this many steps (quick runs and benchmarks; ``None``: all).
    stop_when_converged
        Stop when the task reports convergence (e.g. CAE's mean max probability >= 0.99),
        checked after every epoch; and when the planned budget ends unconverged, go on (the
        task at its final state, e.g. the final temperature) for up to
        ``converge_extension`` times the planned steps. ``None``: the method's default
        (on for CAE and IP-CAE, off otherwise).
    min_steps
        Planned optimizer steps at least: when ``max_epochs`` epochs hold fewer steps, the
        epoch budget is raised to reach it (small data have few steps per epoch). ``None``:
        the method's default (0 for methods that set none).
    max_steps
        Hard cap on optimizer steps, extension included; the planned budget (and so an
        annealing schedule) is shortened to fit. ``None``: no cap.
    converge_extension
        With ``stop_when_converged``: extra steps allowed after the planned budget, as a
        multiple of it (1.0 = the CAE reference code's doubling; 0 = none). ``None``: the
        method's default (0 for methods that set none).
    """

    max_epochs: int = 100
    learning_rate: float = 1e-3
    lr_decay: float | None = None
    patience: int | None = None
    max_steps_per_epoch: int | None = None
    stop_when_converged: bool | None = None
    min_steps: int | None = None
    max_steps: int | None = None
    converge_extension: float | None = None

    def __post_init__(self) -> None:
        if self.min_steps is not None and self.min_steps < 0:
            raise ConfigError(
                f"min_steps must be >= 0, got {self.min_steps}", parameter="min_steps"
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(
                f"max_steps must be at least 1, got {self.max_steps}", parameter="max_steps"
            )
        if self.converge_extension is not None and not self.converge_extension >= 0:
            raise ConfigError(
                f"converge_extension must be >= 0, got {self.converge_extension}",
                parameter="converge_extension",
            )
        if self.max_epochs < 1:
            raise ConfigError(
                f"max_epochs must be at least 1, got {self.max_epochs}", parameter="max_epochs"
            )
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError(
                f"max_steps_per_epoch must be at least 1, got {self.max_steps_per_epoch}",
                parameter="max_steps_per_epoch",
            )
        if not self.learning_rate > 0:
            raise ConfigError(
                f"learning_rate must be positive, got {self.learning_rate}",
                parameter="learning_rate",
            )
        if self.lr_decay is not None and not 0 < self.lr_decay <= 1:
            raise ConfigError(
                f"lr_decay must be in (0, 1], got {self.lr_decay}", parameter="lr_decay"
            )


#: Keys of the trainer record in a panel's ``config.json`` (and a checkpoint's ``config``),
#: in the order they had when :class:`TrainerConfig` also held the run options.
TRAINER_RECORD_KEYS = (
    "max_epochs",
    "learning_rate",
    "lr_decay",
    "seed",
    "device",
    "mixed_precision",
    "patience",
    "max_steps_per_epoch",
    "progress",
    "stop_when_converged",
    "min_steps",
    "max_steps",
    "converge_extension",
)


def trainer_record(config: TrainerConfig, run: RunConfig) -> dict[str, Any]:
    """The trainer options and the run's seed, device, precision and progress as one flat dict.

    What a panel's ``config.json`` records under ``config.trainer`` (the same keys as before
    the run options left :class:`TrainerConfig`, so reports and resumes read them alike).
    """
    values = {**asdict(config), **asdict(run)}
    return {key: values[key] for key in TRAINER_RECORD_KEYS if key in values} | {
        key: value for key, value in values.items() if key not in TRAINER_RECORD_KEYS
    }


@dataclass
class TrainingResult:
    """What a training run produced."""

    history: pd.DataFrame
    best_epoch: int
    best_validation_loss: float
    stopped: str
    seconds: float
    resumed_from_epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Optimizer steps taken (all epochs, a resumed run's earlier ones included).
    steps: int = 0
    #: Steps of the planned budget (what annealing schedules span).
    planned_steps: int = 0
    #: Whether the task reported convergence after the last epoch (``None``: it has no such notion).
    converged: bool | None = None


#: Run options that change how a run executes, not what it computes; a resumed run may
#: change them (it then continues correctly, though not bit for bit on another device).
#: The run's seed is recorded in the fingerprint's ``trainer`` group.
EXECUTION_FIELDS = ("device", "mixed_precision", "progress")
#: Budget options a resumed run may change when its task follows no schedule over the
#: budget (no hook in :data:`SCHEDULE_HOOKS`) and has not trained past the new budget: the
#: result then equals an uninterrupted run with the new budget.
BUDGET_FIELDS = ("max_epochs", "min_steps", "max_steps")
#: Task hooks that receive the planned budget (annealing schedules depend on it).
SCHEDULE_HOOKS = ("on_epoch_start", "on_step_start")
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
        The run options: its seed is recorded with the trainer options (the other
        :data:`EXECUTION_FIELDS` are not). ``None``: the defaults (seed 0).

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
            "trainer": {
                key: value
                for key, value in trainer_record(config, run or RunConfig()).items()
                if key not in EXECUTION_FIELDS
            },
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


@dataclass(frozen=True)
class StepBudget:
    """How many optimizer steps a run plans and allows (see :func:`plan_budget`)."""

    steps_per_epoch: int
    #: Epochs spanned by the planned steps (``max_epochs``, raised for ``min_steps``).
    planned_epochs: int
    #: ``steps_per_epoch * planned_epochs`` before any ``max_steps`` cap.
    requested_steps: int
    #: The steps an annealing schedule spans.
    planned_steps: int
    #: Planned steps plus the convergence extension, capped by ``max_steps``.
    step_limit: int
    stop_when_converged: bool


def plan_budget(config: TrainerConfig, n_batches: int) -> StepBudget:
    """The step budget of ``config`` for a loader of ``n_batches`` minibatches per epoch.

    ``planned = max(max_epochs, ceil(min_steps / steps_per_epoch)) * steps_per_epoch``, cut
    to ``max_steps``; with ``stop_when_converged`` the run may go on to
    ``planned * (1 + converge_extension)`` steps (again at most ``max_steps``) while the
    task reports it has not converged.
    """
    per_epoch = max(
        1,
        n_batches
        if config.max_steps_per_epoch is None
        else min(n_batches, config.max_steps_per_epoch),
    )
    epochs = max(config.max_epochs, math.ceil((config.min_steps or 0) / per_epoch))
    requested = per_epoch * epochs
    cap = config.max_steps or requested * 10**6
    planned = min(requested, cap)
    stop = bool(config.stop_when_converged)
    extension = int(planned * (config.converge_extension or 0.0)) if stop else 0
    return StepBudget(
        per_epoch,
        math.ceil(planned / per_epoch),
        requested,
        planned,
        min(planned + extension, cap),
        stop,
    )


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


def adam(
    parameters: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]], lr: float
) -> torch.optim.Adam:
    """Adam with torch's fused kernel (one pass per parameter, no temporaries).

    On the CPU the fused kernel is about 10x faster than the default per-parameter loop
    for large parameters (0.16 s instead of 1.9 s per step for IP-CAE's 10,463 x 10,463
    ``W``) and needs no parameter-sized temporaries. The update rule is the same.
    """
    return torch.optim.Adam(parameters, lr=lr, fused=True)


def seed_everything(seed: int, epoch: int = 0) -> None:
    """Seed torch's global generators from ``(seed, epoch)``.

    Negative ``epoch`` values (the trainer uses -1 before training) are mapped to distinct
    non-negative words because ``SeedSequence`` only takes non-negative integers.
    """
    words = [int(seed) % (1 << 32), int(epoch) % (1 << 32)]
    torch.manual_seed(int(np.random.SeedSequence(words).generate_state(1)[0]))


class Trainer:
    """Train a task over streaming loaders with checkpoints and best-validation weights.

    Parameters
    ----------
    config
        The hyperparameters (epoch and step budget, learning rate, stopping rules);
        ``None``: the defaults.
    run
        How the run executes: seed, device, progress bar, mixed precision; ``None``: the
        defaults (seed 0, ``"auto"`` device).
    checkpoint_path
        Where the per-epoch checkpoint goes; ``None`` keeps nothing on disk.
    fingerprint
        The task's options that change the result (see :func:`run_fingerprint`), recorded
        in the checkpoint with the store, loader and trainer options; resuming refuses a
        checkpoint made with any other.
    """

    def __init__(
        self,
        config: TrainerConfig | None = None,
        *,
        run: RunConfig | None = None,
        checkpoint_path: str | os.PathLike[str] | None = None,
        fingerprint: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config or TrainerConfig()
        self.run = run or RunConfig()
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.device = resolve_device(self.run.device)
        self.fingerprint = dict(fingerprint or {})
        self._run_fingerprint: dict[str, Any] | None = None

    def fit(
        self,
        task: torch.nn.Module,
        train: MinibatchLoader,
        validation: MinibatchLoader | None = None,
        *,
        resume: bool = False,
    ) -> TrainingResult:
        """Train ``task`` in place; on return it holds its best-validation weights.

        With ``stop_when_converged`` and a task that reports convergence, a converged
        epoch's weights beat any unconverged epoch's (so a converged run returns converged
        weights); among equals the lower validation loss wins.

        The step loop never reads a device value on the host: losses are summed on the
        device and read once per epoch, where a non-finite sum (a non-finite loss in that
        epoch) stops training with :class:`FloatingPointError`.

        With ``resume``, an existing checkpoint is continued only when its fingerprint
        matches this run's (:func:`run_fingerprint`); otherwise
        :class:`~genesel.errors.CheckpointMismatchError` names the differing fields, before
        anything is trained or written. A task without a schedule over the budget (no
        :data:`SCHEDULE_HOOKS`) may be resumed with another budget (:data:`BUDGET_FIELDS`)
        as long as it has not trained past it.
        """
        cfg, run = self.config, self.run
        use_amp = run.mixed_precision and self.device.type == "cuda"
        seed_everything(run.seed, -1)
        task.to(self.device)
        optimizer = _call(task, "configure_optimizer", cfg.learning_rate) or adam(
            task.parameters(), cfg.learning_rate
        )
        scheduler = (
            torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
            if cfg.lr_decay
            else None
        )
        budget = plan_budget(cfg, len(train))
        steps_per_epoch, planned_steps, step_limit = (
            budget.steps_per_epoch,
            budget.planned_steps,
            budget.step_limit,
        )
        rows: list[dict[str, Any]] = []
        best_state: dict[str, torch.Tensor] | None = None
        best_file: str | None = None  # with a checkpoint path the best weights live on disk
        best_loss, best_epoch, start_epoch, resumed = math.inf, -1, 0, None
        best_rank = True  # (unconverged, validation loss) of the best weights; see below
        finished = False
        if self.checkpoint_path is not None:
            self._run_fingerprint = run_fingerprint(train, cfg, self.fingerprint, run=run)
        if resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            state = self._load_checkpoint(task, budget)
            task.load_state_dict(state["task"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state.get("scheduler") is not None:
                scheduler.load_state_dict(state["scheduler"])
            rows, best_state = state["history"], state["best_state"]
            best_file = state.get("best_file")
            if best_file is not None and not self.checkpoint_path.with_name(best_file).exists():
                raise InputFileError(
                    self.checkpoint_path,
                    f"the best weights it refers to ({best_file}) are missing",
                    "delete the checkpoint to start over",
                )
            best_loss, best_epoch = state["best_loss"], state["best_epoch"]
            best_rank = state.get("best_rank", False) if best_epoch >= 0 else True
            start_epoch = resumed = state["epoch"] + 1
            logger.info("resuming from %s after epoch %d", self.checkpoint_path, state["epoch"])
            finished = bool(state.get("finished"))
        steps_done = min(start_epoch * steps_per_epoch, step_limit)
        started = time.perf_counter()
        stopped = state.get("stopped", "max_epochs") if finished else "max_epochs"
        converged: bool | None = None
        planned_epochs = budget.planned_epochs
        bar = tqdm(
            total=planned_epochs,
            initial=start_epoch,
            desc=type(task).__name__,
            unit="epoch",
            disable=not run.progress,
            leave=False,
        )
        epochs_since_best = 0 if best_epoch < 0 else (start_epoch - 1 - best_epoch)
        epoch = start_epoch - 1
        while not finished and steps_done < step_limit:
            epoch += 1
            epoch_start = time.perf_counter()
            seed_everything(run.seed, epoch)
            train.set_epoch(epoch)
            task.train()
            _call(task, "on_epoch_start", epoch, planned_epochs)
            epoch_steps = min(steps_per_epoch, step_limit - steps_done)
            total = torch.zeros((), dtype=torch.float64, device=self.device)  # read once per epoch
            count = 0
            for step, batch in enumerate(train):
                if step == epoch_steps:
                    break
                _call(task, "on_step_start", steps_done + step, planned_steps)
                batch = batch.to(self.device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
                    loss = task.training_loss(batch)
                loss.backward()
                optimizer.step()
                _call(task, "after_optimizer_step")
                total += loss.detach().double() * batch.shape[0]
                count += batch.shape[0]
            steps_done += epoch_steps
            if scheduler is not None:
                scheduler.step()
            train_loss = float(total) / max(count, 1)  # the epoch's one host read
            if not math.isfinite(train_loss):
                raise FloatingPointError(
                    f"training loss became {train_loss} in epoch {epoch}; lower the learning rate"
                )
            train_seconds = time.perf_counter() - epoch_start
            val_loss = (
                self.evaluate(task, validation, use_amp=use_amp)
                if validation is not None
                else train_loss
            )
            metrics = _call(task, "epoch_metrics") or {}
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                "validation_loss": val_loss,
                "learning_rate": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - epoch_start,
                "steps_per_second": epoch_steps / max(train_seconds, 1e-9),
                **metrics,
            }
            rows.append(row)
            converged = _call(task, "converged", metrics)
            # with stop_when_converged a converged state beats any unconverged one
            rank = (
                (not converged) if budget.stop_when_converged and converged is not None else False
            )
            new_best = None  # best weights written this epoch, which no checkpoint refers to yet
            try:
                if (rank, val_loss) < (best_rank, best_loss):
                    best_loss, best_rank, best_epoch, epochs_since_best = val_loss, rank, epoch, 0
                    if self.checkpoint_path is None:
                        best_state = {
                            k: v.detach().to("cpu", copy=True)
                            for k, v in task.state_dict().items()
                        }
                    else:
                        best_state, best_file = None, self._save_best(task, epoch)
                        new_best = best_file
                else:
                    epochs_since_best += 1
                bar.update(1)
                bar.set_postfix(loss=f"{row['train_loss']:.4g}", val=f"{val_loss:.4g}")
                if budget.stop_when_converged and converged:
                    stopped, finished = "converged", True
                elif cfg.patience is not None and epochs_since_best >= cfg.patience:
                    stopped, finished = "patience", True
                elif steps_done >= planned_steps and not (
                    budget.stop_when_converged and converged is False
                ):
                    stopped, finished = (
                        ("max_steps" if steps_done < budget.requested_steps else "max_epochs"),
                        True,
                    )
                elif steps_done >= step_limit:
                    stopped, finished = "unconverged", True
                _call(
                    task, "on_epoch_end", metrics
                )  # after the best weights, before the checkpoint
                self._save_checkpoint(
                    task,
                    optimizer,
                    scheduler,
                    epoch,
                    rows,
                    best_state,
                    best_file,
                    best_loss,
                    best_epoch,
                    # a run that used up its budget continues when resumed with a larger one
                    finished=finished and stopped in ("converged", "patience"),
                    stopped=stopped,
                    best_rank=best_rank,
                )
            except (
                BaseException
            ):  # e.g. a full disk: leave no best weights without their checkpoint
                if new_best is not None:
                    self.checkpoint_path.with_name(new_best).unlink(missing_ok=True)
                raise
            self._remove_best_files(keep=best_file)
        bar.close()
        if converged is None and rows:
            converged = _call(task, "converged", {k: rows[-1][k] for k in rows[-1]})
        del optimizer, scheduler  # free the optimizer state before loading the best weights
        task.zero_grad(set_to_none=True)  # and the gradients (as large as the model)
        if best_state is not None:
            task.load_state_dict(best_state)
        elif best_file is not None:
            task.load_state_dict(
                torch.load(
                    self.checkpoint_path.with_name(best_file),
                    map_location=self.device,
                    weights_only=True,
                )
            )
        history = pd.DataFrame(rows)
        logger.info(
            "trained %s: best validation loss %.5g at epoch %d (%s after %d steps, %d planned)",
            type(task).__name__,
            best_loss,
            best_epoch,
            stopped,
            steps_done,
            planned_steps,
        )
        return TrainingResult(
            history,
            best_epoch,
            float(best_loss),
            stopped,
            time.perf_counter() - started,
            resumed,
            steps=steps_done,
            planned_steps=planned_steps,
            converged=converged,
        )

    @torch.no_grad()
    def evaluate(
        self, task: torch.nn.Module, loader: MinibatchLoader, *, use_amp: bool = False
    ) -> float:
        """Mean validation loss of ``task`` over ``loader``, weighted by batch size (one host read)."""
        task.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        for batch in loader:
            batch = batch.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = task.validation_loss(batch)
            total += loss.detach().double() * batch.shape[0]
            count += batch.shape[0]
        task.train()
        return float(total) / max(count, 1)

    # -- checkpoints --------------------------------------------------------
    def best_files(self) -> list[Path]:
        """Files holding best-validation weights beside the checkpoint (``NAME.best-EPOCH.pt``)."""
        return [] if self.checkpoint_path is None else best_weights_files(self.checkpoint_path)

    def _save_best(self, task: torch.nn.Module, epoch: int) -> str:
        """Write the current weights as the best ones; return the file name.

        Kept on disk rather than as a copy in memory: for IP-CAE at the gene scale a copy
        is 0.5 GB. Each epoch gets its own name, so the file a checkpoint refers to exists
        until a newer checkpoint refers to a newer one.
        """
        path = best_weights_path(self.checkpoint_path, epoch)
        with atomic_output(path) as tmp:
            torch.save(task.state_dict(), tmp)
        return path.name

    def _remove_best_files(self, *, keep: str | None) -> None:
        for path in self.best_files():
            if path.name != keep:
                path.unlink(missing_ok=True)

    def _save_checkpoint(
        self,
        task,
        optimizer,
        scheduler,
        epoch,
        rows,
        best_state,
        best_file,
        best_loss,
        best_epoch,
        *,
        finished,
        stopped="max_epochs",
        best_rank=False,
    ) -> None:
        if self.checkpoint_path is None:
            return
        payload = {
            "task": task.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "epoch": epoch,
            "history": rows,
            "best_state": best_state,
            "best_file": best_file,
            "best_loss": best_loss,
            "best_epoch": best_epoch,
            "best_rank": best_rank,
            "finished": finished,
            "stopped": stopped,
            "config": trainer_record(self.config, self.run),
            "fingerprint": self._run_fingerprint,
        }
        with atomic_output(self.checkpoint_path) as tmp:
            torch.save(payload, tmp)

    def _load_checkpoint(self, task: torch.nn.Module, budget: StepBudget) -> dict[str, Any]:
        """Read the checkpoint and refuse it unless it was made by this run (see :meth:`fit`)."""
        try:
            state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        except Exception as error:  # corrupt or foreign file
            raise InputFileError(
                self.checkpoint_path,
                f"cannot read checkpoint ({error})",
                "delete it to start over",
            ) from None
        if not isinstance(state, dict) or "task" not in state:
            raise InputFileError(
                self.checkpoint_path, "not a genesel training checkpoint", START_AFRESH
            )
        scheduled = any(callable(getattr(task, hook, None)) for hook in SCHEDULE_HOOKS)
        ignore = () if scheduled else [f"trainer.{key}" for key in BUDGET_FIELDS]
        check_fingerprint(
            self.checkpoint_path, state.get("fingerprint"), self._run_fingerprint, ignore=ignore
        )
        saved_budget = {key: state["fingerprint"]["trainer"].get(key) for key in BUDGET_FIELDS}
        trained = (state["epoch"] + 1) * budget.steps_per_epoch
        if (
            saved_budget != {key: getattr(self.config, key) for key in BUDGET_FIELDS}
            and trained > budget.step_limit
        ):
            raise CheckpointMismatchError(
                self.checkpoint_path,
                f"checkpoint has trained {state['epoch'] + 1} epochs ({trained} steps), more than this run's budget of {budget.step_limit} steps",
                f"resume with at least {state['epoch'] + 1} epochs, or {START_AFRESH}",
            )
        return state


def _call(task: Any, name: str, *args: Any) -> Any:
    method = getattr(task, name, None)
    return method(*args) if callable(method) else None
