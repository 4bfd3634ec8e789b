"""Unsupervised LassoNet (Lemhadri et al., JMLR 2021), registered as method ``"lassonet"``.

The network reconstructs every gene from every gene: a linear skip layer ``theta``
(genes x genes, no bias) plus an MLP. A group-lasso penalty ``lambda * sum_j ||theta_j||``
on each input gene's skip column, with the hierarchy ``|W_j|_inf <= M ||theta_j||`` on its
first-layer weights, is enforced by :func:`~genesel.selectors.hier_prox.group_hier_prox`
after every optimiser step. As in the paper's unsupervised variant the targets are the
inputs themselves: the dense model may copy each gene to itself, but every kept gene
costs ``lambda * ||theta_j||``, so along the dense-to-sparse path genes that the others
can reconstruct leave first and the last survivors are those the rest of the
transcriptome is best rebuilt from. A gene's importance is the ``lambda`` from which it
stays out of the model (minibatch noise can let a gene drop out and come back); the panel
of ``K`` genes is the ``K`` most important genes of one path, so panels of different sizes
from one path are nested.

This module is the registered selector; the network and its path-step task are in
:mod:`~genesel.selectors.lassonet_network`, the path algorithm in
:mod:`~genesel.selectors.lassonet_path`, its points and memory policy in
:mod:`~genesel.selectors.lassonet_points`, the step-size estimates in
:mod:`~genesel.selectors.lassonet_rates`, the checkpoint in
:mod:`~genesel.selectors.lassonet_checkpoint` and the refit in
:mod:`~genesel.selectors.lassonet_refit`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from genesel.checkpoint import run_fingerprint
from genesel.errors import ConfigError
from genesel.loader import LoaderConfig, MinibatchLoader
from genesel.panel import PanelResult
from genesel.run import RunConfig, resolve_device
from genesel.selectors.base import register_selector, training_loaders
from genesel.selectors.lassonet_checkpoint import (
    PATH_CHECKPOINT_NAME,
    PathProgress,
    load_path_checkpoint,
    path_options,
    save_path_checkpoint,
)
from genesel.selectors.lassonet_network import LassoNetAutoencoder
from genesel.selectors.lassonet_path import PathFollower, PathSettings
from genesel.selectors.lassonet_points import LassoNetPath, LassoNetPathPoint, forget_states
from genesel.selectors.lassonet_rates import capped_path_learning_rate, covariance_rule
from genesel.selectors.lassonet_refit import RefitOptions
from genesel.selectors.lassonet_refit import restore_panel_model as restore_from_path
from genesel.selectors.reconstruction import reconstruction_mse
from genesel.selectors.trained import TrainedSelector, cpu_state, seeded_init
from genesel.store import Store
from genesel.training import TrainerConfig

logger = logging.getLogger(__name__)

#: Seconds between path checkpoints (the last point is always saved).
CHECKPOINT_INTERVAL = 60.0
#: Path optimisers (``path_optimizer``).
PATH_OPTIMIZERS = ("sgd", "adam")


def _require(valid: bool, name: str, expected: str, value: object) -> None:
    """Raise :class:`ConfigError` naming hyperparameter ``name`` unless ``valid``."""
    if not valid:
        raise ConfigError(f"{name} must be {expected}, got {value!r}", parameter=f"param:{name}")


def _auto_or_positive(value: float | str) -> bool:
    """Whether ``value`` is ``"auto"`` or a positive number."""
    return value == "auto" or (isinstance(value, int | float) and value > 0)


@register_selector
class LassoNetSelector(TrainedSelector[LassoNetAutoencoder]):
    """Unsupervised LassoNet path selector (method ``"lassonet"``).

    Parameters
    ----------
    n_genes
        Panel size ``K``.
    seed
        Seed of initialisation and shuffling (the run's seed wins when given).
    hidden
        Hidden layer widths of the MLP part (the skip layer is the linear part).
    activation
        Hidden nonlinearity (``relu`` as in the paper).
    dropout
        Dropout after the hidden layers.
    hierarchy
        ``M``, the hierarchy bound (paper default 10).
    lambda_start
        First ``lambda`` of the path, or ``"auto"`` (see
        :func:`~genesel.selectors.lassonet_rates.estimate_lambda_start`).
    lambda_start_fraction
        ``fraction`` of the automatic start.
    path_multiplier
        ``lambda`` grows by this factor between points (paper: 1.02).
    adaptive_path
        Double the log-step after each point that set no new low of the number of genes in
        use (capped at a factor of 2), back to ``path_multiplier`` once one does: the same
        path where genes leave, far fewer points where nothing happens.
    lambda_bar
        Extra lasso penalty on the first-layer weights.
    epochs_per_lambda
        Epoch budget of each path point (warm-started from the previous one).
    lambda_patience
        Stop a point when the validation objective has not improved for this many epochs.
    path_optimizer
        ``"sgd"`` (as in the paper) or ``"adam"`` (then the trainer's learning rate by default).
    path_learning_rate, momentum
        SGD of the path steps (the dense start and the refit use Adam with the trainer's rate);
        ``"auto"`` is ``0.05 / lambda_max`` of the genes' covariance (the skip layer's
        curvature is ``2 lambda_max``), capped at ``1 / lambda_max`` of the loss Hessian at the
        dense fit (see
        :func:`~genesel.selectors.lassonet_rates.largest_hessian_eigenvalue`). A step that diverges is retried
        with half the rate.
    l2_penalty
        ``gamma``: ridge penalty on the MLP weights after the first layer. Without it the MLP
        can shrink its first layer (and so the skip norms bounding it) while scaling up the
        next layer at no cost, and genes leave the path only at very large ``lambda``.
    stop_at
        End the path once at most this many genes remain (``None``: ``n_genes``; 0: run to empty).
    keep_states_below
        Keep weights only for points with at most this many genes, plus the sparsest point
        with at least ``n_genes`` (``None``: ``2 * n_genes``; ``-1``: every point). A state
        holds ``D x n`` skip weights for a point with ``n`` genes (GEO scale, ``n = 1,886``: 79 MB).
    refit_epochs
        After the path, fine-tune the model restricted to the panel (no penalty) for at most
        this many epochs (0: use the path point's weights with the other inputs zeroed).
    refit_patience
        Early-stopping patience of the refit.
    """

    method: ClassVar[str] = "lassonet"
    checkpoint_name: ClassVar[str] = PATH_CHECKPOINT_NAME
    checkpoint_files: ClassVar[tuple[str, ...]] = (PATH_CHECKPOINT_NAME,)

    def __init__(
        self,
        *,
        n_genes: int,
        seed: int = 0,
        hidden: Sequence[int] = (200,),
        activation: str = "relu",
        dropout: float = 0.0,
        hierarchy: float = 10.0,
        lambda_start: float | str = "auto",
        lambda_start_fraction: float = 0.1,
        path_multiplier: float = 1.05,
        adaptive_path: bool = True,
        lambda_bar: float = 0.0,
        epochs_per_lambda: int = 50,
        lambda_patience: int = 5,
        path_optimizer: str = "sgd",
        path_learning_rate: float | str = "auto",
        momentum: float = 0.9,
        l2_penalty: float = 0.01,
        stop_at: int | None = None,
        keep_states_below: int | None = None,
        refit_epochs: int = 100,
        refit_patience: int = 10,
    ) -> None:
        super().__init__(n_genes=n_genes, seed=seed)
        self.hidden = (
            [int(hidden)] if isinstance(hidden, int | np.integer) else [int(h) for h in hidden]
        )
        self.activation = str(activation)
        self.dropout = float(dropout)
        self.hierarchy = float(hierarchy)
        self.lambda_start = lambda_start
        self.lambda_start_fraction = float(lambda_start_fraction)
        self.path_multiplier = float(path_multiplier)
        self.adaptive_path = bool(adaptive_path)
        self.lambda_bar = float(lambda_bar)
        self.epochs_per_lambda = int(epochs_per_lambda)
        self.lambda_patience = int(lambda_patience)
        self.path_learning_rate = path_learning_rate
        self.momentum = float(momentum)
        self.path_optimizer = path_optimizer
        self.l2_penalty = float(l2_penalty)
        self.stop_at = None if stop_at is None else int(stop_at)
        self.keep_states_below = None if keep_states_below is None else int(keep_states_below)
        self.refit_epochs = int(refit_epochs)
        self.refit_patience = int(refit_patience)
        _require(_auto_or_positive(lambda_start), "lambda_start", "'auto' or > 0", lambda_start)
        _require(self.path_multiplier > 1.0, "path_multiplier", "> 1", path_multiplier)
        _require(self.hierarchy > 0, "hierarchy", "positive (M)", hierarchy)
        _require(
            _auto_or_positive(path_learning_rate),
            "path_learning_rate",
            "'auto' or > 0",
            path_learning_rate,
        )
        _require(
            path_optimizer in PATH_OPTIMIZERS, "path_optimizer", "'sgd' or 'adam'", path_optimizer
        )
        _require(self.l2_penalty >= 0, "l2_penalty", ">= 0", l2_penalty)
        _require(self.epochs_per_lambda >= 1, "epochs_per_lambda", "at least 1", epochs_per_lambda)
        self.model_: LassoNetAutoencoder | None = None
        self.path_: LassoNetPath | None = None
        self.lambda_start_: float | None = None
        self.path_learning_rate_: float | None = None

    # -- path ---------------------------------------------------------------------------
    def path_settings(self) -> PathSettings:
        """The options that shape the path."""
        return PathSettings(
            hierarchy=self.hierarchy,
            lambda_bar=self.lambda_bar,
            l2_penalty=self.l2_penalty,
            optimizer=self.path_optimizer,
            momentum=self.momentum,
            epochs_per_lambda=self.epochs_per_lambda,
            lambda_patience=self.lambda_patience,
            path_multiplier=self.path_multiplier,
            adaptive_path=self.adaptive_path,
            lambda_start_fraction=self.lambda_start_fraction,
        )

    def build_model(self, n_vars: int, *, seed: int) -> LassoNetAutoencoder:
        """The untrained autoencoder for ``n_vars`` genes, initialised from ``seed`` (on the CPU)."""
        with seeded_init(seed):
            return LassoNetAutoencoder(
                n_vars, hidden=self.hidden, activation=self.activation, dropout=self.dropout
            )

    def fit_path(
        self,
        store: Store,
        *,
        trainer: TrainerConfig | None = None,
        loader: LoaderConfig | None = None,
        run: RunConfig | None = None,
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> LassoNetPath:
        """Train the dense model, then follow the path until ``stop_at`` genes remain."""
        trainer, loader, run = self.resolve_configs(trainer, loader, run)
        train, validation = training_loaders(store, loader=loader, run=run, method=self.method)
        model = self.build_model(store.n_vars, seed=run.seed).to(resolve_device(run.device))
        self._apply_constraints(model, store.n_vars)
        follower = PathFollower(model, self.path_settings(), train, validation, trainer, run)
        checkpoint = self.checkpoint_path(work_dir, resume=resume)
        fingerprint = run_fingerprint(train, trainer, path_options(self.fingerprint()), run=run)
        if resume and checkpoint is not None and checkpoint.exists():
            progress = load_path_checkpoint(checkpoint, model, fingerprint)
            follower.learning_rate = progress.learning_rate
            logger.info(
                "lassonet: resuming the path after %d points from %s",
                len(progress.points),
                checkpoint,
            )
        else:
            progress = self._start_path(follower)
        points, self.lambda_start_ = progress.points, progress.lambda_start
        logger.info(
            "lassonet: dense model uses %d genes; path starts at lambda=%.4g",
            points[0].n_selected,
            progress.lambda_start,
        )
        stop_at = self.n_genes if self.stop_at is None else self.stop_at
        stop_at = max(stop_at, int(self.constraints.include.size))  # included genes never leave
        last_saved = time.monotonic()

        def on_point(points: list[LassoNetPathPoint], finished: bool) -> None:
            nonlocal last_saved
            forget_states(points, n_genes=self.n_genes, keep_states_below=self.keep_states_below)
            if checkpoint is not None and (
                time.monotonic() - last_saved > CHECKPOINT_INTERVAL or finished
            ):
                progress.learning_rate = follower.learning_rate
                save_path_checkpoint(checkpoint, progress, model, fingerprint)
                last_saved = time.monotonic()

        follower.follow(
            points,
            progress.lambda_start,
            done=lambda point: self._path_done(point, stop_at),
            on_point=on_point,
            progress=run.progress,
        )
        self.path_learning_rate_ = follower.learning_rate
        self.model_ = model
        self.path_ = LassoNetPath(points, self.path_multiplier)
        return self.path_

    def _start_path(self, follower: PathFollower) -> PathProgress:
        """The dense fit, the path's step size and its first ``lambda``."""
        covariance_rate = None
        if self.path_learning_rate == "auto" and self.path_optimizer == "sgd":
            covariance_rate = covariance_rule(follower.train)
        dense = follower.fit_dense()
        follower.learning_rate = self._path_learning_rate(
            follower.model, follower.train, follower.trainer, covariance_rate=covariance_rate
        )
        self.path_learning_rate_ = follower.learning_rate
        if self.lambda_start == "auto":
            lambda_start = follower.search_lambda_start(n_dense=dense.n_selected)
        else:
            lambda_start = float(self.lambda_start)
        return PathProgress([dense], lambda_start, follower.learning_rate)

    def _path_done(self, point: LassoNetPathPoint, stop_at: int) -> bool:
        """Whether the path ends at ``point``: at most ``stop_at`` genes, within the budget if any, or none left."""
        budget = self.constraints.budget
        cost = (
            None if budget is None else self.constraints.panel_cost(np.flatnonzero(point.selected))
        )
        over = budget is not None and cost is not None and cost > budget * (1.0 + 1e-9)
        return point.n_selected == 0 or (point.n_selected <= stop_at and not over)

    def _apply_constraints(self, model: LassoNetAutoencoder, n_vars: int) -> None:
        """Included genes unpenalised (they stay on the whole path); excluded genes out of the inputs.

        With per-gene costs each gene's penalty weight is its cost relative to the mean cost
        of the candidates, so ``lambda`` prices a gene's group norm in cost units and
        expensive genes leave the path first unless they carry more signal.
        """
        fixed = self.constraints
        if fixed.include.size or fixed.cost is not None:
            weights = torch.ones(n_vars, device=model.input_mask.device)
            if fixed.cost is not None:
                cost = fixed.cost
                relative = cost / cost[fixed.candidate_mask(n_vars)].mean()
                weights = torch.as_tensor(relative, dtype=weights.dtype, device=weights.device)
            weights[torch.as_tensor(fixed.include, device=weights.device)] = 0.0
            model.penalty_weights = weights
        if fixed.exclude.size:
            model.restrict_inputs(np.flatnonzero(~fixed.excluded_mask(n_vars)))

    def _path_learning_rate(
        self,
        model: LassoNetAutoencoder,
        train: MinibatchLoader,
        trainer: TrainerConfig,
        *,
        covariance_rate: float | None,
    ) -> float:
        """The path's step size: ``path_learning_rate``, or the ``"auto"`` rule at the dense fit.

        ``"auto"`` with SGD is ``0.05 / lambda_max(cov)`` capped at ``1 / lambda_max(Hessian)``
        (:func:`~genesel.selectors.lassonet_rates.capped_path_learning_rate`); with Adam the
        trainer's learning rate.
        """
        if self.path_learning_rate != "auto":
            return float(self.path_learning_rate)
        if self.path_optimizer == "adam":
            return float(trainer.learning_rate)
        return capped_path_learning_rate(
            model, train, covariance_rate=covariance_rate, l2_penalty=self.l2_penalty
        )

    # -- selection ------------------------------------------------------------------
    def select(
        self,
        store: Store,
        *,
        trainer: TrainerConfig | None = None,
        loader: LoaderConfig | None = None,
        run: RunConfig | None = None,
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> PanelResult:
        """Run one path and return its ``n_genes`` most important genes."""
        trainer, loader, run = self.resolve_configs(trainer, loader, run)
        self.check_panel_size(store)
        started = time.perf_counter()
        path = self.fit_path(
            store, trainer=trainer, loader=loader, run=run, work_dir=work_dir, resume=resume
        )
        panel = self.constraints.complete(path.ranking(), self.n_genes)
        refit = self.restore_panel_model(store, panel, trainer=trainer, loader=loader, run=run)
        scores = path.scores()
        summary = path.summary()
        extra = {
            "lambda_start": self.lambda_start_,
            "path_learning_rate": self.path_learning_rate_,
            "path": summary.to_dict(orient="list"),
            "ranking": "lambda from which the gene stays out of the path, descending (ties: skip norm before leaving)",
            "refit": refit,
            "seconds": time.perf_counter() - started,
            "converged": None,  # the path ends when K genes remain; no convergence notion applies
        }
        return PanelResult(
            method=self.method,
            n_genes=int(panel.size),
            seed=int(run.seed),
            gene_indices=panel,
            var=store.var,
            scores=np.where(np.isin(panel, self.constraints.include), np.nan, scores[panel]),
            history=summary,
            state_dict=cpu_state(self._fitted_model("select")),
            extra=extra,
        )

    def restore_panel_model(
        self,
        store: Store,
        panel: np.ndarray,
        *,
        trainer: TrainerConfig | None = None,
        loader: LoaderConfig | None = None,
        run: RunConfig | None = None,
    ) -> dict[str, Any]:
        """Load the sparsest path point covering ``panel``, restrict its inputs, optionally refit.

        See :func:`~genesel.selectors.lassonet_refit.restore_panel_model`.
        """
        if self.path_ is None or self.model_ is None:
            raise ConfigError("lassonet: call select() or fit_path() first")
        trainer, loader, run = self.resolve_configs(trainer, loader, run)
        options = RefitOptions(self.refit_epochs, self.refit_patience, self.l2_penalty)
        loaders: tuple[MinibatchLoader, MinibatchLoader | None] | None = None
        if options.epochs > 0:
            loaders = training_loaders(store, loader=loader, run=run, method=self.method)
        info = restore_from_path(
            self.model_, self.path_, panel, options, loaders=loaders, trainer=trainer, run=run
        )
        self.model_ = self.model_.eval()
        return info

    @torch.no_grad()
    def reconstruction_mse(
        self, store: Store, split: str, *, units: str = "standardized", batch_size: int = 1024
    ) -> float:
        """MSE of the panel model (inputs restricted to the panel) on ``split``, per gene and sample."""
        model = self._fitted_model("reconstruction_mse").eval()
        device = model.input_mask.device
        return reconstruction_mse(
            model, store, split, units=units, batch_size=batch_size, device=device
        )

    def _fitted_model(self, caller: str) -> LassoNetAutoencoder:
        """The trained model; a :class:`ConfigError` before :meth:`select`."""
        if self.model_ is None:
            raise ConfigError(f"lassonet: call select() before {caller}()")
        return self.model_
