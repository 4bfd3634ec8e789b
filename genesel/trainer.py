"""The training loop shared by every trainable method: :class:`Trainer`.

A *task* is a ``torch.nn.Module`` that implements :class:`~genesel.training.TrainingTask`.
The :class:`Trainer` owns the side effects: device placement, mixed precision, the
optimiser and learning-rate schedule, the best-validation weights, the per-epoch
checkpoint (written atomically, see :mod:`genesel.checkpoint`) and resuming from it.
Randomness is drawn from streams seeded by ``(seed, epoch)``, so a resumed run is identical
to an uninterrupted one on the CPU; resuming refuses a checkpoint whose run fingerprint
differs from the run's, naming the fields.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pandas as pd
import torch
from tqdm.auto import tqdm

from genesel.checkpoint import (
    FitState,
    best_weights_files,
    best_weights_path,
    check_resumable,
    read_checkpoint,
    run_fingerprint,
    save_weights,
)
from genesel.errors import InputFileError
from genesel.loader import MinibatchLoader
from genesel.run import RunConfig, resolve_device
from genesel.training import (
    SCHEDULE_HOOKS,
    StepBudget,
    TrainerConfig,
    TrainingResult,
    TrainingTask,
    adam,
    plan_budget,
    seed_everything,
    trainer_record,
)

logger = logging.getLogger(__name__)


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
        The task's options that change the result (see
        :func:`~genesel.checkpoint.run_fingerprint`), recorded in the checkpoint with the
        store, loader and trainer options; resuming refuses a checkpoint made with any other.

    Attributes
    ----------
    config, run, checkpoint_path, fingerprint
        As given (defaults filled in); a trainer holds no state of a fit between calls of
        :meth:`fit`, so one trainer may fit several tasks.
    device
        The torch device ``run.device`` resolves to.
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
        #: This run's fingerprint (set by :meth:`fit` when there is a checkpoint path).
        self._run_fingerprint: dict[str, Any] = {}

    @property
    def use_amp(self) -> bool:
        """Whether steps run under bfloat16 autocast (mixed precision asked for, on CUDA)."""
        return self.run.mixed_precision and self.device.type == "cuda"

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
        matches this run's (:func:`~genesel.checkpoint.run_fingerprint`); otherwise
        :class:`~genesel.errors.CheckpointMismatchError` names the differing fields, before
        anything is trained or written. A task without a schedule over the budget (no
        :data:`~genesel.training.SCHEDULE_HOOKS`) may be resumed with another budget
        (:data:`~genesel.training.BUDGET_FIELDS`) as long as it has not trained past it.
        """
        seed_everything(self.run.seed, -1)
        task.to(self.device)
        rate = self.config.learning_rate
        optimizer = _call(task, "configure_optimizer", rate) or adam(task.parameters(), rate)
        scheduler = (
            torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.config.lr_decay)
            if self.config.lr_decay
            else None
        )
        budget = plan_budget(self.config, len(train))
        if self.checkpoint_path is not None:
            self._run_fingerprint = run_fingerprint(
                train, self.config, self.fingerprint, run=self.run
            )
        state = FitState()
        if resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            state = self._restore(self.checkpoint_path, task, optimizer, scheduler, budget)
        state.steps_done = min((state.epoch + 1) * budget.steps_per_epoch, budget.step_limit)
        state.epochs_since_best = 0 if state.best_epoch < 0 else state.epoch - state.best_epoch
        started = time.perf_counter()
        bar = tqdm(
            total=budget.planned_epochs,
            initial=state.epoch + 1,
            desc=type(task).__name__,
            unit="epoch",
            disable=not self.run.progress,
            leave=False,
        )
        while not state.finished and state.steps_done < budget.step_limit:
            state.epoch += 1
            self._run_epoch(task, train, validation, optimizer, scheduler, budget, state)
            bar.update(1)
            bar.set_postfix(
                loss=f"{state.rows[-1]['train_loss']:.4g}",
                val=f"{state.rows[-1]['validation_loss']:.4g}",
            )
        bar.close()
        if state.converged is None and state.rows:
            state.converged = _call(task, "converged", dict(state.rows[-1]))
        del optimizer, scheduler  # free the optimizer state before loading the best weights
        task.zero_grad(set_to_none=True)  # and the gradients (as large as the model)
        self._load_best(task, state)
        logger.info(
            "trained %s: best validation loss %.5g at epoch %d (%s after %d steps, %d planned)",
            type(task).__name__,
            state.best_loss,
            state.best_epoch,
            state.stopped,
            state.steps_done,
            budget.planned_steps,
        )
        return TrainingResult(
            pd.DataFrame(state.rows),
            state.best_epoch,
            float(state.best_loss),
            state.stopped,
            time.perf_counter() - started,
            state.resumed,
            steps=state.steps_done,
            planned_steps=budget.planned_steps,
            converged=state.converged,
        )

    # -- one epoch ----------------------------------------------------------------------
    def _run_epoch(
        self,
        task: torch.nn.Module,
        train: MinibatchLoader,
        validation: MinibatchLoader | None,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        budget: StepBudget,
        state: FitState,
    ) -> None:
        """Train epoch ``state.epoch``, validate, record its row and do the bookkeeping."""
        epoch_start = time.perf_counter()
        train_loss, epoch_steps = self._train_epoch(
            task, train, optimizer, scheduler, budget, state
        )
        train_seconds = time.perf_counter() - epoch_start
        val_loss = (
            self.evaluate(task, validation, use_amp=self.use_amp)
            if validation is not None
            else train_loss
        )
        metrics = _call(task, "epoch_metrics") or {}
        state.rows.append(
            {
                "epoch": state.epoch,
                "train_loss": train_loss,
                "validation_loss": val_loss,
                "learning_rate": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - epoch_start,
                "steps_per_second": epoch_steps / max(train_seconds, 1e-9),
                **metrics,
            }
        )
        state.converged = _call(task, "converged", metrics)
        self._end_epoch(task, optimizer, scheduler, budget, state, val_loss, metrics)

    def _train_epoch(
        self,
        task: torch.nn.Module,
        train: MinibatchLoader,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        budget: StepBudget,
        state: FitState,
    ) -> tuple[float, int]:
        """The optimizer steps of epoch ``state.epoch``; return its mean training loss and step count.

        The step loop never reads a device value on the host: the loss is summed on the
        device and read once, at the end, where a non-finite sum stops training with
        :class:`FloatingPointError`.
        """
        epoch = state.epoch
        seed_everything(self.run.seed, epoch)
        train.set_epoch(epoch)
        task.train()
        _call(task, "on_epoch_start", epoch, budget.planned_epochs)
        epoch_steps = min(budget.steps_per_epoch, budget.step_limit - state.steps_done)
        losses = cast(TrainingTask, task)  # a task implements TrainingTask (see fit)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        for step, batch in enumerate(train):
            if step == epoch_steps:
                break
            _call(task, "on_step_start", state.steps_done + step, budget.planned_steps)
            batch = batch.to(self.device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
                loss = losses.training_loss(batch)
            loss.backward()
            optimizer.step()
            _call(task, "after_optimizer_step")
            total += loss.detach().double() * batch.shape[0]
            count += batch.shape[0]
        state.steps_done += epoch_steps
        if scheduler is not None:
            scheduler.step()
        train_loss = float(total) / max(count, 1)  # the epoch's one host read
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"training loss became {train_loss} in epoch {epoch}; lower the learning rate"
            )
        return train_loss, epoch_steps

    # -- end of an epoch ----------------------------------------------------------------
    def _end_epoch(
        self,
        task: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        budget: StepBudget,
        state: FitState,
        val_loss: float,
        metrics: Mapping[str, Any],
    ) -> None:
        """Keep the best weights, decide whether to stop, call ``on_epoch_end``, write the checkpoint."""
        converged = state.converged
        rank = (not converged) if budget.stop_when_converged and converged is not None else False
        new_best = None  # best weights written this epoch, which no checkpoint refers to yet
        try:
            if (rank, val_loss) < (state.best_rank, state.best_loss):
                new_best = self._keep_best(task, state, val_loss, rank)
            else:
                state.epochs_since_best += 1
            self._decide_stop(budget, state)
            _call(task, "on_epoch_end", metrics)  # after the best weights, before the checkpoint
            self._save_checkpoint(task, optimizer, scheduler, state)
        except BaseException:  # e.g. a full disk: leave no best weights without their checkpoint
            if new_best is not None and self.checkpoint_path is not None:
                self.checkpoint_path.with_name(new_best).unlink(missing_ok=True)
            raise
        self._remove_best_files(keep=state.best_file)

    def _keep_best(
        self, task: torch.nn.Module, state: FitState, val_loss: float, rank: bool
    ) -> str | None:
        """Make this epoch's weights the best ones; return the file they were written to, if any.

        With a checkpoint path they are kept on disk rather than as a copy in memory (for
        IP-CAE at the gene scale a copy is 0.5 GB); each epoch gets its own file, so the
        file a checkpoint refers to exists until a newer checkpoint refers to a newer one.
        """
        state.best_loss, state.best_rank, state.best_epoch = val_loss, rank, state.epoch
        state.epochs_since_best = 0
        if self.checkpoint_path is None:
            state.best_state = {
                key: value.detach().to("cpu", copy=True)
                for key, value in task.state_dict().items()
            }
            return None
        path = best_weights_path(self.checkpoint_path, state.epoch)
        save_weights(path, task.state_dict())
        state.best_state, state.best_file = None, path.name
        return path.name

    def _decide_stop(self, budget: StepBudget, state: FitState) -> None:
        """Set ``state.finished`` and ``state.stopped`` when the run ends after this epoch."""
        converge_rule = budget.stop_when_converged
        if converge_rule and state.converged:
            stopped = "converged"
        elif self.config.patience is not None and state.epochs_since_best >= self.config.patience:
            stopped = "patience"
        elif state.steps_done >= budget.planned_steps and not (
            converge_rule and state.converged is False
        ):
            stopped = "max_steps" if state.steps_done < budget.requested_steps else "max_epochs"
        elif state.steps_done >= budget.step_limit:
            stopped = "unconverged"
        else:
            return
        state.stopped, state.finished = stopped, True

    def _load_best(self, task: torch.nn.Module, state: FitState) -> None:
        """Load the best weights into ``task`` (from memory or from their file)."""
        if state.best_state is not None:
            task.load_state_dict(state.best_state)
        elif state.best_file is not None and self.checkpoint_path is not None:
            path = self.checkpoint_path.with_name(state.best_file)
            task.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))

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
                loss = cast(TrainingTask, task).validation_loss(batch)
            total += loss.detach().double() * batch.shape[0]
            count += batch.shape[0]
        task.train()
        return float(total) / max(count, 1)

    # -- checkpoints --------------------------------------------------------------------
    def best_files(self) -> list[Path]:
        """Files holding best-validation weights beside the checkpoint (``NAME.best-EPOCH.pt``)."""
        return [] if self.checkpoint_path is None else best_weights_files(self.checkpoint_path)

    def _remove_best_files(self, *, keep: str | None) -> None:
        for path in self.best_files():
            if path.name != keep:
                path.unlink(missing_ok=True)

    def _save_checkpoint(
        self,
        task: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        state: FitState,
    ) -> None:
        if self.checkpoint_path is None:
            return
        payload = state.payload(
            task,
            optimizer,
            scheduler,
            config=trainer_record(self.config, self.run),
            fingerprint=self._run_fingerprint,
        )
        save_weights(self.checkpoint_path, payload)

    def _restore(
        self,
        path: Path,
        task: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        budget: StepBudget,
    ) -> FitState:
        """Load checkpoint ``path`` into ``task``, ``optimizer`` and ``scheduler``; return the fit's state.

        Refuses a checkpoint not made by this run (see :meth:`fit`) before changing anything.
        """
        saved = read_checkpoint(path, self.device)
        check_resumable(
            path,
            saved,
            self._run_fingerprint,
            config=self.config,
            budget=budget,
            scheduled=any(callable(getattr(task, hook, None)) for hook in SCHEDULE_HOOKS),
        )
        task.load_state_dict(saved["task"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved.get("scheduler") is not None:
            scheduler.load_state_dict(saved["scheduler"])
        best_file = saved.get("best_file")
        if best_file is not None and not path.with_name(best_file).exists():
            raise InputFileError(
                path,
                f"the best weights it refers to ({best_file}) are missing",
                "delete the checkpoint to start over",
            )
        logger.info("resuming from %s after epoch %d", path, saved["epoch"])
        return FitState.from_checkpoint(saved)


def _call(task: Any, name: str, *args: Any) -> Any:
    method = getattr(task, name, None)
    return method(*args) if callable(method) else None
