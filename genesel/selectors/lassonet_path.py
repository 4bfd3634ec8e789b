"""The LassoNet path algorithm: dense fit, starting ``lambda``, then warm-started proximal steps.

Each step from dense to sparse gives one typed path point
(:class:`~genesel.selectors.lassonet_points.LassoNetPathPoint`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from genesel.loader import MinibatchLoader
from genesel.run import RunConfig
from genesel.selectors.lassonet_network import LassoNetAutoencoder, PathStep
from genesel.selectors.lassonet_points import (
    LassoNetPathPoint,
    compact_state,
    snapshot,
)
from genesel.selectors.lassonet_rates import estimate_lambda_start
from genesel.trainer import Trainer
from genesel.training import TrainerConfig, TrainingResult

logger = logging.getLogger(__name__)

#: How often a diverging path step is retried with half the learning rate.
MAX_STEP_HALVINGS = 8
#: Attempts of each half of the search for the starting ``lambda``.
START_SEARCH_ATTEMPTS = 60


@dataclass(frozen=True)
class PathSettings:
    """The selector's options that shape the path.

    Each is described at :class:`~genesel.selectors.lassonet.LassoNetSelector`.
    """

    hierarchy: float = 10.0
    lambda_bar: float = 0.0
    l2_penalty: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    epochs_per_lambda: int = 50
    lambda_patience: int = 5
    path_multiplier: float = 1.05
    adaptive_path: bool = True
    lambda_start_fraction: float = 0.1


def next_lambda(
    points: list[LassoNetPathPoint], lambda_start: float, settings: PathSettings
) -> float:
    """The ``lambda`` after ``points`` (the dense point first).

    ``lambda * path_multiplier``; with ``adaptive_path`` the log-step doubles for every
    preceding point in a row that did not set a new low of ``n_selected`` (a gene that
    drops out for one point and returns is not progress), at most a factor of 2, and
    falls back to ``path_multiplier`` as soon as the count reaches a new low.
    """
    if len(points) < 2:
        return float(lambda_start)
    quiet = 0
    if settings.adaptive_path:
        counts = [p.n_selected for p in points[1:]]
        lowest_before = np.minimum.accumulate([points[0].n_selected, *counts])[:-1]
        for count, low in zip(counts[::-1], lowest_before[::-1], strict=True):
            if count < low:  # a new low: genes left for good so far
                break
            quiet += 1
    multiplier = settings.path_multiplier
    return points[-1].lambda_ * min(multiplier ** (2.0 ** min(quiet, 30)), max(2.0, multiplier))


def path_point(
    task: PathStep, fit: TrainingResult, validation: MinibatchLoader | None
) -> LassoNetPathPoint:
    """The point ``task`` reached in ``fit``: genes in use, losses per gene, compact weights."""
    model, lambda_ = task.model, task.lambda_
    n_vars = model.input_mask.numel()
    selected = model.active_genes().cpu().numpy()
    history = fit.history
    best = history.loc[history["epoch"] == fit.best_epoch].iloc[0] if len(history) else None
    train_loss = float(best["train_loss"]) / n_vars if best is not None else math.nan
    if validation is not None:
        validation_loss = (fit.best_validation_loss - float(task.penalties())) / n_vars
    else:
        validation_loss = math.nan
    return LassoNetPathPoint(
        lambda_=float(lambda_),
        selected=selected,
        n_selected=int(selected.sum()),
        train_loss=train_loss,
        validation_loss=float(validation_loss),
        n_epochs=len(history),
        group_norms=model.group_norms().cpu().numpy(),
        state_dict=compact_state(model, selected),
    )


class PathFollower:
    """Trains one model along the path, one warm-started fit per ``lambda``.

    Parameters
    ----------
    model
        The autoencoder, trained in place.
    settings
        The path's options.
    train, validation
        The loaders (the train loader's seed is set per step).
    trainer
        Training hyperparameters of the dense fit; the path steps derive theirs from it.
    run
        Seed and device; each path step runs with its own seed stream from ``run.seed``.
    learning_rate
        Step size of the path steps (halved after a diverging step; set it before the
        path steps when it depends on the dense fit).
    """

    def __init__(
        self,
        model: LassoNetAutoencoder,
        settings: PathSettings,
        train: MinibatchLoader,
        validation: MinibatchLoader | None,
        trainer: TrainerConfig,
        run: RunConfig,
        *,
        learning_rate: float = math.nan,
    ) -> None:
        self.model = model
        self.settings = settings
        self.train = train
        self.validation = validation
        self.trainer = trainer
        self.run = run
        self.learning_rate = learning_rate

    def fit_dense(self) -> LassoNetPathPoint:
        """Fit the unpenalised model with Adam; the path's first point (``lambda = 0``)."""
        task = PathStep(self.model, l2_penalty=self.settings.l2_penalty, optimizer="adam")
        trainer = Trainer(self.trainer, run=replace(self.run, progress=False))
        fit = trainer.fit(task, self.train, self.validation)
        return path_point(task, fit, self.validation)

    def _step_task(self, lambda_: float) -> PathStep:
        """The proximal task of the path step at ``lambda_``."""
        s = self.settings
        return PathStep(
            self.model,
            lambda_=lambda_,
            lambda_bar=s.lambda_bar,
            hierarchy=s.hierarchy,
            l2_penalty=s.l2_penalty,
            optimizer=s.optimizer,
            momentum=s.momentum,
        )

    def _step_trainer(self, seed: int) -> Trainer:
        """The trainer of one path step (seed stream of that step, no progress bar)."""
        config = replace(
            self.trainer,
            max_epochs=self.settings.epochs_per_lambda,
            learning_rate=self.learning_rate,
            lr_decay=None,
            patience=self.settings.lambda_patience,
        )
        return Trainer(config, run=replace(self.run, seed=seed, progress=False))

    def train_lambda(
        self, lambda_: float, index: int, *, start: dict[str, torch.Tensor] | None = None
    ) -> tuple[PathStep, TrainingResult]:
        """Warm-started proximal SGD at one ``lambda`` (seed stream ``(seed, index)``).

        A step that diverges (non-finite loss) is retried from the same weights with half
        the learning rate, which the rest of the path then keeps. ``start`` is a copy of the
        model's current weights when the caller already holds one (saves a ``D x D`` copy).
        """
        step_seed = int(
            np.random.SeedSequence([self.run.seed, index]).generate_state(1)[0] % (2**31)
        )
        if start is None:
            start = snapshot(self.model)
        for halvings in range(MAX_STEP_HALVINGS + 1):
            self.train.seed = step_seed
            task = self._step_task(lambda_)
            try:
                fit = self._step_trainer(step_seed).fit(task, self.train, self.validation)
            except FloatingPointError:
                if halvings == MAX_STEP_HALVINGS:
                    break
                self.model.load_state_dict(start)
                self.learning_rate /= 2.0
                logger.warning(
                    "lassonet: the path step at lambda=%.4g diverged; learning rate halved to %.3g",
                    lambda_,
                    self.learning_rate,
                )
                continue
            return task, fit
        raise FloatingPointError(
            f"lassonet: the path step at lambda={lambda_:.4g} diverged even at learning rate "
            f"{self.learning_rate:.3g}; set the selector parameter path_learning_rate lower"
        )

    def _genes_in_use(self) -> int:
        return int(self.model.active_genes().sum())

    def search_lambda_start(self, *, n_dense: int) -> float:
        """Double ``lambda`` (warm-started) until a gene leaves; return the last one where none did.

        The model is left at that ``lambda``'s weights. Genes leave when the penalty beats
        the combined push on a gene's skip column and first-layer weights, which the
        hierarchy couples, so a closed-form start is unreliable; this search costs a few
        coarse points. The first guess is :func:`~genesel.selectors.lassonet_rates.estimate_lambda_start`.
        """
        model = self.model
        dense_state = snapshot(model)
        guess = estimate_lambda_start(
            model, self.train, fraction=self.settings.lambda_start_fraction
        )
        for attempt in range(START_SEARCH_ATTEMPTS):  # the guess may already remove genes
            self.train_lambda(guess, 10**6 + attempt, start=dense_state)
            if self._genes_in_use() >= n_dense:
                break
            model.load_state_dict(dense_state)
            guess /= 2.0
        del dense_state  # one D x D copy at a time at the GEO scale
        lambda_, state = guess, snapshot(model)
        for attempt in range(START_SEARCH_ATTEMPTS):
            candidate = lambda_ * 2.0
            self.train_lambda(candidate, 2 * 10**6 + attempt, start=state)
            logger.debug(
                "lassonet: start search lambda=%.4g genes=%d", candidate, self._genes_in_use()
            )
            if self._genes_in_use() < n_dense:
                break
            del state
            lambda_, state = candidate, snapshot(model)
        model.load_state_dict(state)
        return lambda_

    def follow(
        self,
        points: list[LassoNetPathPoint],
        lambda_start: float,
        *,
        done: Callable[[LassoNetPathPoint], bool],
        on_point: Callable[[list[LassoNetPathPoint], bool], None],
        progress: bool,
    ) -> None:
        """Add points to ``points`` (the dense point first) until ``done`` holds for the last.

        ``on_point(points, finished)`` runs after every new point (memory policy,
        checkpoints). The train loader's seed is back at the run's on return.
        """
        bar = tqdm(desc="lassonet path", unit="lambda", disable=not progress, leave=False)
        while not done(points[-1]):
            lambda_ = next_lambda(points, lambda_start, self.settings)
            task, fit = self.train_lambda(lambda_, len(points))
            point = path_point(task, fit, self.validation)
            points.append(point)
            finished = done(point)
            on_point(points, finished)
            logger.debug(
                "lassonet: lambda=%.4g genes=%d validation=%.4g epochs=%d",
                lambda_,
                point.n_selected,
                point.validation_loss,
                point.n_epochs,
            )
            bar.update(1)
            bar.set_postfix(
                lam=f"{lambda_:.3g}", genes=point.n_selected, val=f"{point.validation_loss:.4g}"
            )
        bar.close()
        self.train.seed = self.run.seed
