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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from genesel.errors import ConfigError
from genesel.loader import LoaderConfig, MinibatchLoader
from genesel.panel import PanelResult
from genesel.selectors.base import PanelSelector, register_selector, training_loaders
from genesel.selectors.lassonet_checkpoint import (
    PATH_CHECKPOINT_NAME,
    PathProgress,
    load_path_checkpoint,
    path_options,
    save_path_checkpoint,
)
from genesel.selectors.lassonet_network import LassoNetAutoencoder, PathStep
from genesel.selectors.lassonet_path import PathFollower, PathSettings
from genesel.selectors.lassonet_points import LassoNetPath, LassoNetPathPoint, forget_states
from genesel.selectors.lassonet_rates import capped_path_learning_rate, covariance_rule
from genesel.selectors.reconstruction import reconstruction_mse
from genesel.store import Store
from genesel.training import (
    Trainer,
    TrainerConfig,
    resolve_device,
    run_fingerprint,
    seed_everything,
)

logger = logging.getLogger(__name__)

#: Seconds between path checkpoints (the last point is always saved).
CHECKPOINT_INTERVAL = 60.0


@register_selector
class LassoNetSelector(PanelSelector):
    """Unsupervised LassoNet path selector (method ``"lassonet"``).

    Parameters
    ----------
    n_genes
        Panel size ``K``.
    seed
        Seed of initialisation and shuffling.
    hidden
        Hidden layer widths of the MLP part (the skip layer is the linear part).
    activation
        Hidden nonlinearity (``relu`` as in the paper).
    dropout
        Dropout after the hidden layers.
    hierarchy
        ``M``, the hierarchy bound (paper default 10).
    lambda_start
        First ``lambda`` of the path, or ``"auto"`` (see :func:`estimate_lambda_start`).
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
    path_learning_rate, momentum
        SGD of the path steps (the dense start and the refit use Adam with the trainer's rate);
        ``"auto"`` is ``0.05 / lambda_max`` of the genes' covariance (the skip layer's
        curvature is ``2 lambda_max``), capped at ``1 / lambda_max`` of the loss Hessian at the
        dense fit (see :func:`largest_hessian_eigenvalue`). A step that diverges is retried
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
    trainable: ClassVar[bool] = True
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
        if not (
            lambda_start == "auto" or (isinstance(lambda_start, int | float) and lambda_start > 0)
        ):
            raise ConfigError(
                f"lambda_start must be 'auto' or a positive number, got {lambda_start!r}"
            )
        self.lambda_start = lambda_start
        self.lambda_start_fraction = float(lambda_start_fraction)
        self.path_multiplier = float(path_multiplier)
        self.adaptive_path = bool(adaptive_path)
        if self.path_multiplier <= 1.0:
            raise ConfigError(f"path_multiplier must be > 1, got {path_multiplier}")
        if self.hierarchy <= 0:
            raise ConfigError(f"hierarchy (M) must be positive, got {hierarchy}")
        self.lambda_bar = float(lambda_bar)
        self.epochs_per_lambda = int(epochs_per_lambda)
        self.lambda_patience = int(lambda_patience)
        if not (
            path_learning_rate == "auto"
            or (isinstance(path_learning_rate, int | float) and path_learning_rate > 0)
        ):
            raise ConfigError(
                f"path_learning_rate must be 'auto' or a positive number, got {path_learning_rate!r}"
            )
        self.path_learning_rate = path_learning_rate
        self.momentum = float(momentum)
        if path_optimizer not in ("sgd", "adam"):
            raise ConfigError(f"path_optimizer must be 'sgd' or 'adam', got {path_optimizer!r}")
        self.path_optimizer = path_optimizer
        self.l2_penalty = float(l2_penalty)
        if self.l2_penalty < 0:
            raise ConfigError(f"l2_penalty must be >= 0, got {l2_penalty}")
        self.stop_at = None if stop_at is None else int(stop_at)
        self.keep_states_below = None if keep_states_below is None else int(keep_states_below)
        self.refit_epochs = int(refit_epochs)
        self.refit_patience = int(refit_patience)
        if self.epochs_per_lambda < 1:
            raise ConfigError(f"epochs_per_lambda must be at least 1, got {epochs_per_lambda}")
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

    def fit_path(
        self,
        store: Store,
        *,
        trainer: TrainerConfig | None = None,
        loader: LoaderConfig | None = None,
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> LassoNetPath:
        """Train the dense model, then follow the path until ``stop_at`` genes remain."""
        trainer, loader = self.training_configs(trainer, loader)
        train, validation = training_loaders(
            store, trainer=trainer, loader=loader, method=self.method
        )
        model = self._build_model(store.n_vars, trainer)
        follower = PathFollower(model, self.path_settings(), train, validation, trainer)
        checkpoint = None if work_dir is None else Path(work_dir) / PATH_CHECKPOINT_NAME
        fingerprint = run_fingerprint(train, trainer, path_options(self.fingerprint()))
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
            progress=trainer.progress,
        )
        self.path_learning_rate_ = follower.learning_rate
        self.model_ = model
        self.path_ = LassoNetPath(points, self.path_multiplier)
        return self.path_

    def _build_model(self, n_vars: int, trainer: TrainerConfig) -> LassoNetAutoencoder:
        """The untrained autoencoder on the trainer's device, constraints applied."""
        with torch.random.fork_rng(devices=[]):
            seed_everything(trainer.seed, -2)
            model = LassoNetAutoencoder(
                n_vars, hidden=self.hidden, activation=self.activation, dropout=self.dropout
            ).to(resolve_device(trainer.device))
        self._apply_constraints(model, n_vars)
        return model

    def _start_path(self, follower: PathFollower) -> PathProgress:
        """The dense fit, the path's step size and its first ``lambda``."""
        covariance_rate = None
        if self.path_learning_rate == "auto" and self.path_optimizer == "sgd":
            covariance_rate = covariance_rule(follower.train)
        dense = follower.fit_dense()
        follower.learning_rate = self._path_learning_rate(
            follower.model, follower.train, follower.trainer, covariance_rule=covariance_rate
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
        covariance_rule: float | None,
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
            model, train, covariance_rate=covariance_rule, l2_penalty=self.l2_penalty
        )

    # -- selection ------------------------------------------------------------------
    def select(
        self,
        store: Store,
        *,
        trainer: TrainerConfig | None = None,
        loader: LoaderConfig | None = None,
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> PanelResult:
        """Run one path and return its ``n_genes`` most important genes."""
        trainer, loader = self.training_configs(trainer, loader)
        self.check_panel_size(store)
        started = time.perf_counter()
        path = self.fit_path(
            store, trainer=trainer, loader=loader, work_dir=work_dir, resume=resume
        )
        panel = self.constraints.complete(path.ranking(), self.n_genes)
        refit = self.restore_panel_model(store, panel, trainer=trainer, loader=loader)
        model = self._fitted_model("select")
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
            seed=int(trainer.seed),
            gene_indices=panel,
            var=store.var,
            scores=np.where(np.isin(panel, self.constraints.include), np.nan, scores[panel]),
            history=summary,
            state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
            extra=extra,
        )

    def restore_panel_model(
        self,
        store: Store,
        panel: np.ndarray,
        *,
        trainer: TrainerConfig | None = None,
        loader: LoaderConfig | None = None,
    ) -> dict[str, Any]:
        """Load the sparsest path point covering ``panel``, restrict its inputs, optionally refit."""
        if self.path_ is None or self.model_ is None:
            raise ConfigError("lassonet: call select() or fit_path() first")
        trainer, loader = self.training_configs(trainer, loader)
        point = self.path_.point_for(len(panel))
        model = self.model_
        model.load_state_dict(point.full_state_dict())
        model.restrict_inputs(panel)
        info: dict[str, Any] = {
            "from_lambda": point.lambda_,
            "from_n_selected": point.n_selected,
            "epochs": 0,
        }
        if self.refit_epochs > 0:
            train, validation = training_loaders(
                store, trainer=trainer, loader=loader, method=self.method
            )
            config = replace(
                trainer,
                max_epochs=self.refit_epochs,
                patience=self.refit_patience,
                lr_decay=None,
                progress=False,
            )
            fit = Trainer(config).fit(
                PathStep(model, l2_penalty=self.l2_penalty, optimizer="adam"), train, validation
            )
            # Adam moved nothing outside the mask, but keep the zeros exact
            model.restrict_inputs(panel)
            info.update(
                epochs=len(fit.history),
                best_validation_loss=fit.best_validation_loss / store.n_vars,
            )
        self.model_ = model.eval()
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
