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
import math
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from genesel.decoders import build_decoder
from genesel.errors import ConfigError, InputFileError
from genesel.io.atomic import atomic_output
from genesel.loader import LoaderConfig, MinibatchLoader
from genesel.panel import PanelResult
from genesel.selectors.base import PanelSelector, register_selector, training_loaders
from genesel.selectors.hier_prox import column_norms, hier_prox_factors
from genesel.selectors.reconstruction import reconstruction_mse
from genesel.store import Store
from genesel.training import (
    Trainer,
    TrainerConfig,
    adam,
    check_fingerprint,
    resolve_device,
    run_fingerprint,
    seed_everything,
)

logger = logging.getLogger(__name__)

#: File in ``work_dir`` holding the path computed so far (for ``resume``).
PATH_CHECKPOINT_NAME = "lassonet_path.pt"
#: Train rows of the Hessian estimate behind ``path_learning_rate="auto"``.
HESSIAN_ROWS = 256
#: How often a diverging path step is retried with half the learning rate.
MAX_STEP_HALVINGS = 8
#: Weights with one column per input gene, zero for genes out of the model.
COLUMN_KEYS = ("skip.weight", "mlp.0.weight")


class LassoNetAutoencoder(nn.Module):
    """Skip layer plus MLP reconstructing all genes from the (masked) genes.

    Parameters
    ----------
    n_genes
        Genes in and out.
    hidden
        Widths of the MLP's hidden layers (at least one).
    activation, dropout
        Hidden-layer nonlinearity and dropout (see :func:`~genesel.decoders.build_decoder`).
    """

    def __init__(
        self,
        n_genes: int,
        *,
        hidden: Sequence[int] = (200,),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not hidden:
            raise ConfigError(
                "lassonet needs at least one hidden layer (hidden=[...]); the skip layer is the linear part"
            )
        self.skip = nn.Linear(n_genes, n_genes, bias=False)
        self.mlp = build_decoder(
            n_genes, n_genes, hidden=hidden, activation=activation, dropout=dropout
        )
        self.register_buffer("input_mask", torch.ones(n_genes))
        #: Per-gene weight of the penalty (``None``: 1 for every gene); 0 leaves a gene
        #: unpenalised, so it never leaves the path (included genes). Not learned state.
        self.penalty_weights: torch.Tensor | None = None

    @property
    def first_layer(self) -> nn.Linear:
        """The MLP's first linear layer (its columns obey the hierarchy)."""
        return self.mlp[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct all genes from ``x`` (standardised, samples x genes)."""
        x = x * self.input_mask
        return self.skip(x) + self.mlp(x)

    def group_norms(self) -> torch.Tensor:
        """Norm of each input gene's skip column (zero = gene not used)."""
        return column_norms(self.skip.weight.detach())

    def penalty(self) -> torch.Tensor:
        """``sum_j w_j ||theta_j||`` (``w_j``: :attr:`penalty_weights`, default 1)."""
        norms = self.group_norms()
        return (
            norms.sum() if self.penalty_weights is None else (norms * self.penalty_weights).sum()
        )

    def ridge(self) -> torch.Tensor:
        """Squared norm of the MLP weights after the first layer (LassoNet's ``gamma`` term)."""
        layers = [m for m in self.mlp if isinstance(m, nn.Linear)][1:]
        return sum((layer.weight**2).sum() for layer in layers)

    def active_genes(self) -> torch.Tensor:
        """Boolean mask of the genes the model still uses."""
        return (self.group_norms() > 0) & (self.input_mask > 0)

    @torch.no_grad()
    def prox(self, *, lambda_: float, lambda_bar: float = 0.0, hierarchy: float = 10.0) -> None:
        """Apply Group-Hier-Prox in place (thresholds already multiplied by the step size)."""
        if self.penalty_weights is not None:
            lambda_, lambda_bar = lambda_ * self.penalty_weights, lambda_bar * self.penalty_weights
        scale, first = hier_prox_factors(
            column_norms(self.skip.weight.data),
            self.first_layer.weight.data,
            lambda_=lambda_,
            lambda_bar=lambda_bar,
            hierarchy=hierarchy,
        )
        self.skip.weight.data.mul_(scale)  # in place: at the GEO scale the skip layer is D x D
        self.first_layer.weight.data.copy_(first)

    @torch.no_grad()
    def restrict_inputs(self, genes: np.ndarray) -> None:
        """Use only ``genes`` as inputs from now on (others' columns zeroed, mask set)."""
        mask = torch.zeros_like(self.input_mask)
        mask[torch.as_tensor(np.asarray(genes), device=mask.device)] = 1.0
        self.input_mask.copy_(mask)
        self.skip.weight.mul_(mask)
        self.first_layer.weight.mul_(mask)


def sum_squared_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error summed over genes, averaged over samples (the path's loss)."""
    return ((prediction.float() - target.float()) ** 2).sum(dim=1).mean()


class _PathStep(nn.Module):
    """Trainer task: one ``lambda`` of the path (SGD + prox), or the dense/refit fits (Adam)."""

    def __init__(
        self,
        model: LassoNetAutoencoder,
        *,
        lambda_: float = 0.0,
        lambda_bar: float = 0.0,
        hierarchy: float = 10.0,
        l2_penalty: float = 0.0,
        optimizer: str = "adam",
        momentum: float = 0.9,
    ) -> None:
        super().__init__()
        self.model = model
        self.l2_penalty = float(l2_penalty)
        self.lambda_ = float(lambda_)
        self.lambda_bar = float(lambda_bar)
        self.hierarchy = float(hierarchy)
        self.optimizer_name = optimizer
        self.momentum = float(momentum)
        # a weak reference: the optimizer state (D x D moments at the GEO scale) is freed as soon
        # as the trainer lets go of it, even while the task object lives on
        self._optimizer: weakref.ref[torch.optim.Optimizer] | None = None

    def configure_optimizer(self, learning_rate: float) -> torch.optim.Optimizer:
        if self.optimizer_name == "sgd":
            optimizer = torch.optim.SGD(
                self.parameters(), lr=learning_rate, momentum=self.momentum
            )
        else:
            optimizer = adam(self.parameters(), learning_rate)
        self._optimizer = weakref.ref(optimizer)
        return optimizer

    def training_loss(self, batch: torch.Tensor) -> torch.Tensor:
        loss = sum_squared_error(self.model(batch), batch)
        return loss + self.l2_penalty * self.model.ridge() if self.l2_penalty else loss

    def validation_loss(self, batch: torch.Tensor) -> torch.Tensor:
        # the path's objective (penalties included) picks each lambda's weights, as in the paper
        return sum_squared_error(self.model(batch), batch) + self.penalties()

    @torch.no_grad()
    def penalties(self) -> torch.Tensor:
        """``lambda * sum_j ||theta_j|| + gamma * ridge``."""
        value = self.lambda_ * self.model.penalty()
        return value + self.l2_penalty * self.model.ridge() if self.l2_penalty else value

    def after_optimizer_step(self) -> None:
        if self.lambda_ > 0 or self.lambda_bar > 0:
            step = self._optimizer().param_groups[0]["lr"]
            self.model.prox(
                lambda_=self.lambda_ * step,
                lambda_bar=self.lambda_bar * step,
                hierarchy=self.hierarchy,
            )


@dataclass
class LassoNetPathPoint:
    """One point of the path.

    Attributes
    ----------
    lambda_
        Penalty weight (0 for the dense start).
    selected
        Boolean mask of the genes in use.
    n_selected
        ``selected.sum()``.
    train_loss, validation_loss
        Mean squared error per gene and sample (standardised units) of the chosen weights
        (training: running mean over the epoch; validation: NaN without a validation split).
    n_epochs
        Epochs trained at this ``lambda``.
    group_norms
        Skip-column norm of every gene.
    state_dict
        The model's weights at this point (``None`` when not kept), stored compactly: the skip
        and first-layer weights keep only the columns of the selected genes (the others are
        exactly zero), so a point with ``n`` genes holds ``D x n``, not ``D x D``, skip
        weights. :meth:`full_state_dict` gives the loadable form.
    """

    lambda_: float
    selected: np.ndarray
    n_selected: int
    train_loss: float
    validation_loss: float
    n_epochs: int
    group_norms: np.ndarray
    state_dict: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The weights at this point, loadable into :class:`LassoNetAutoencoder`."""
        if self.state_dict is None:
            return None
        columns = torch.from_numpy(np.flatnonzero(self.selected))
        full = dict(self.state_dict)
        for key in COLUMN_KEYS:
            compact = self.state_dict[key]
            if (
                compact.shape[1] == self.selected.size
            ):  # stored in full (a checkpoint of an older version)
                continue
            weight = compact.new_zeros(compact.shape[0], self.selected.size)
            weight[:, columns] = compact
            full[key] = weight
        return full


def compact_state(model: LassoNetAutoencoder, selected: np.ndarray) -> dict[str, torch.Tensor]:
    """A CPU copy of ``model``'s weights with only the ``selected`` input columns of
    :data:`COLUMN_KEYS` (see :attr:`LassoNetPathPoint.state_dict`).
    """
    columns = torch.from_numpy(np.flatnonzero(selected))
    state = {}
    for key, value in model.state_dict().items():
        value = value.detach()
        state[key] = (
            value[:, columns.to(value.device)].cpu()
            if key in COLUMN_KEYS
            else value.to("cpu", copy=True)
        )
    return state


@dataclass
class LassoNetPath:
    """A dense-to-sparse LassoNet path; any point with a kept state can be restored."""

    points: list[LassoNetPathPoint]
    path_multiplier: float

    @property
    def n_genes(self) -> int:
        """Genes of the data."""
        return int(self.points[0].selected.size)

    def _last_exits(self) -> tuple[np.ndarray, np.ndarray]:
        """Per gene: index of the point after which it never returns (-1: still in use), and
        its skip norm at the point before that.
        """
        selected = np.stack([p.selected for p in self.points])  # points x genes
        alive_at_end = selected[-1]
        # last point at which each gene was in use
        last_alive = selected.shape[0] - 1 - np.argmax(selected[::-1], axis=0)
        last_alive = np.where(selected.any(axis=0), last_alive, -1)
        exit_index = np.where(alive_at_end, -1, last_alive + 1)
        norms = np.stack([p.group_norms for p in self.points])
        before = np.where(alive_at_end, selected.shape[0] - 1, np.maximum(last_alive, 0))
        return exit_index, norms[before, np.arange(self.n_genes)]

    def importance(self) -> np.ndarray:
        """``lambda`` from which each gene stays out of the model (``inf``: still in use)."""
        exit_index, _ = self._last_exits()
        lambdas = np.array([p.lambda_ for p in self.points])
        return np.where(exit_index >= 0, lambdas[np.maximum(exit_index, 0)], np.inf)

    def scores(self) -> np.ndarray:
        """Importance with survivors given the next ``lambda`` (a lower bound of their exit)."""
        importance = self.importance()
        last = self.points[-1].lambda_ * self.path_multiplier
        return np.where(np.isfinite(importance), importance, last)

    def ranking(self) -> np.ndarray:
        """All genes, most important first; ties broken by the skip norm just before leaving."""
        _, tie_break = self._last_exits()
        return np.lexsort((np.arange(self.n_genes), -tie_break, -self.importance()))

    def panel(self, n_genes: int) -> np.ndarray:
        """The ``n_genes`` most important genes (nested across ``n_genes``)."""
        if not 1 <= n_genes <= self.n_genes:
            raise ConfigError(f"n_genes must be between 1 and {self.n_genes}, got {n_genes}")
        return self.ranking()[:n_genes]

    def point_for(self, n_genes: int, *, with_state: bool = True) -> LassoNetPathPoint:
        """The sparsest point still using at least ``n_genes`` genes (with a kept state)."""
        candidates = [
            p
            for p in self.points
            if p.n_selected >= n_genes and (p.state_dict is not None or not with_state)
        ]
        if not candidates:
            raise ConfigError(
                f"no path point with >= {n_genes} genes and a kept state; lower keep_states_below or rerun"
            )
        return min(candidates, key=lambda p: (p.n_selected, -p.lambda_))

    def summary(self) -> pd.DataFrame:
        """One row per point: lambda, n_selected, train/validation loss, epochs."""
        return pd.DataFrame(
            {
                "lambda": [p.lambda_ for p in self.points],
                "n_selected": [p.n_selected for p in self.points],
                "train_loss": [p.train_loss for p in self.points],
                "validation_loss": [p.validation_loss for p in self.points],
                "epochs": [p.n_epochs for p in self.points],
            }
        )


@torch.no_grad()
def estimate_lambda_start(
    model: LassoNetAutoencoder, train: MinibatchLoader, *, fraction: float = 0.1
) -> float:
    """A ``lambda`` just below where genes start to leave the path.

    Removing gene ``j`` from a fitted model (others fixed) raises the loss by about
    ``||theta_j||^2 E[x_j^2]`` and the penalty's gradient needed to remove it is about
    ``2 ||theta_j|| E[x_j^2]``; the smallest such value over the genes that carry weight,
    times ``fraction`` (the other genes partly compensate), starts the path.
    """
    second_moment = torch.zeros(
        model.input_mask.numel(), dtype=torch.float64, device=model.input_mask.device
    )
    rows = 0
    for batch in train:
        batch = batch.to(second_moment.device)
        second_moment += (batch.double() ** 2).sum(dim=0)
        rows += batch.shape[0]
    second_moment /= max(rows, 1)
    needed = 2.0 * model.group_norms().double() * second_moment
    if model.penalty_weights is not None:  # unpenalised (included) genes never leave
        needed = needed[model.penalty_weights.to(needed.device) > 0]
    needed = needed[needed > 0]
    if needed.numel() == 0:
        raise ConfigError(
            "lassonet: the dense model uses no gene; check the data (all genes constant?)"
        )
    return float(fraction * torch.quantile(needed, 0.05))


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s weights on its device (to fall back to)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _sample_rows(train: MinibatchLoader, max_rows: int) -> torch.Tensor:
    """Up to ``max_rows`` standardised train rows (the first batches), as float32."""
    parts, rows = [], 0
    for batch in train:
        parts.append(batch.float())
        rows += batch.shape[0]
        if rows >= max_rows:
            break
    return torch.cat(parts)[:max_rows]


@torch.no_grad()
def largest_covariance_eigenvalue(
    train: MinibatchLoader, *, max_rows: int = 4096, n_iter: int = 50
) -> float:
    """Largest eigenvalue of ``E[x x^T]`` over (up to ``max_rows``) standardised train rows."""
    sample = _sample_rows(train, max_rows)
    generator = torch.Generator(device="cpu").manual_seed(0)
    vector = torch.randn(sample.shape[1], generator=generator).to(sample.device)
    value = 0.0
    for _ in range(n_iter):
        product = sample.T @ (sample @ vector) / sample.shape[0]
        value = float(torch.linalg.vector_norm(product))
        if value == 0.0:
            return 1.0
        vector = product / value
    return value


def _total_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Euclidean norm of a list of tensors taken as one vector."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


def largest_hessian_eigenvalue(task: _PathStep, batch: torch.Tensor, *, n_iter: int = 10) -> float:
    """Largest ``|eigenvalue|`` of the smooth path loss's Hessian at the current weights.

    Power iteration on Hessian-vector products (double backward) of
    :meth:`_PathStep.training_loss` on ``batch``, with dropout off. It bounds the step size
    of every layer at once; the covariance rule only sees the skip layer, and with ``D``
    outputs summed the MLP's first layer can be far stiffer (about ``||W_2||^2`` times).
    """
    model = task.model
    was_training = model.training
    model.eval()
    try:
        params = [p for p in model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(task.training_loss(batch), params, create_graph=True)
        generator = torch.Generator(device="cpu").manual_seed(0)
        vector = [torch.randn(p.shape, generator=generator).to(p.device) for p in params]
        value = 0.0
        for _ in range(n_iter):
            norm = _total_norm(vector)
            products = torch.autograd.grad(
                grads, params, grad_outputs=[v / norm for v in vector], retain_graph=True
            )
            value = float(_total_norm(products))
            if value == 0.0 or not math.isfinite(value):
                break
            vector = [h.detach() for h in products]
        return value
    finally:
        model.train(was_training)


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
        device = resolve_device(trainer.device)
        train, validation = training_loaders(
            store, trainer=trainer, loader=loader, method=self.method
        )
        with torch.random.fork_rng(devices=[]):
            seed_everything(trainer.seed, -2)
            model = LassoNetAutoencoder(
                store.n_vars, hidden=self.hidden, activation=self.activation, dropout=self.dropout
            ).to(device)
        self._apply_constraints(model, store.n_vars)
        stop_at = self.n_genes if self.stop_at is None else self.stop_at
        stop_at = max(stop_at, int(self.constraints.include.size))  # included genes never leave
        checkpoint = None if work_dir is None else Path(work_dir) / PATH_CHECKPOINT_NAME
        points: list[LassoNetPathPoint] = []
        fingerprint = None if checkpoint is None else self._path_fingerprint(train, trainer)
        if resume and checkpoint is not None and checkpoint.exists():
            points, lambda_start, self.path_learning_rate_ = self._load_path_checkpoint(
                checkpoint, model, fingerprint
            )
            logger.info(
                "lassonet: resuming the path after %d points from %s", len(points), checkpoint
            )
        else:
            covariance_rule = None
            if self.path_learning_rate == "auto" and self.path_optimizer == "sgd":
                covariance_rule = 0.05 / largest_covariance_eigenvalue(train)
            task = _PathStep(model, l2_penalty=self.l2_penalty, optimizer="adam")
            fit = Trainer(replace(trainer, progress=False)).fit(task, train, validation)
            points.append(self._point(task, fit, validation))
            self.path_learning_rate_ = self._path_learning_rate(
                model, train, trainer, covariance_rule=covariance_rule
            )
            if self.lambda_start == "auto":
                lambda_start = self._search_lambda_start(
                    model, train, validation, trainer, n_dense=points[0].n_selected
                )
            else:
                lambda_start = float(self.lambda_start)
        self.lambda_start_ = lambda_start
        logger.info(
            "lassonet: dense model uses %d genes; path starts at lambda=%.4g",
            points[0].n_selected,
            lambda_start,
        )
        bar = tqdm(desc="lassonet path", unit="lambda", disable=not trainer.progress, leave=False)
        last_saved = time.monotonic()
        while not self._path_done(points[-1], stop_at):
            lambda_ = self.next_lambda(points, lambda_start)
            task, fit = self._train_lambda(model, lambda_, len(points), train, validation, trainer)
            points.append(self._point(task, fit, validation))
            self._forget_states(points)
            logger.debug(
                "lassonet: lambda=%.4g genes=%d validation=%.4g epochs=%d",
                lambda_,
                points[-1].n_selected,
                points[-1].validation_loss,
                points[-1].n_epochs,
            )
            bar.update(1)
            bar.set_postfix(
                lam=f"{lambda_:.3g}",
                genes=points[-1].n_selected,
                val=f"{points[-1].validation_loss:.4g}",
            )
            if checkpoint is not None and (
                time.monotonic() - last_saved > 60 or self._path_done(points[-1], stop_at)
            ):
                self._save_path_checkpoint(checkpoint, points, lambda_start, model, fingerprint)
                last_saved = time.monotonic()
        bar.close()
        train.seed = trainer.seed
        self.model_ = model
        self.path_ = LassoNetPath(points, self.path_multiplier)
        return self.path_

    def _path_done(self, point: LassoNetPathPoint, stop_at: int) -> bool:
        """Whether the path ends at ``point``: at most ``stop_at`` genes, within the budget if any, or none left."""
        fixed = self.constraints
        over = fixed.budgeted and fixed.panel_cost(
            np.flatnonzero(point.selected)
        ) > fixed.budget * (1.0 + 1e-9)
        return point.n_selected == 0 or (point.n_selected <= stop_at and not over)

    def _apply_constraints(self, model: LassoNetAutoencoder, n_vars: int) -> None:
        """Included genes unpenalised (they stay on the whole path); excluded genes out of the inputs.

        With per-gene costs each gene's penalty weight is its cost relative to the mean cost
        of the candidates, so ``lambda`` prices a gene's group norm in cost units and
        expensive genes leave the path first unless they carry more signal.
        """
        fixed = self.constraints
        if fixed.include.size or fixed.costs is not None:
            weights = torch.ones(n_vars, device=model.input_mask.device)
            if fixed.costs is not None:
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

        ``"auto"`` with SGD is ``0.05 / lambda_max(cov)`` (``covariance_rule``, computed before
        the dense fit), capped at ``1 / lambda_max(Hessian)`` of the loss at the dense weights
        so that no layer's step diverges; the cap binds when many genes feed a small hidden
        layer (GEO scale), not on the paper benchmarks.
        """
        if self.path_learning_rate != "auto":
            return float(self.path_learning_rate)
        if self.path_optimizer == "adam":
            return float(trainer.learning_rate)
        train.set_epoch(
            0
        )  # both estimates read the first rows of epoch 0, as before the dense fit
        if covariance_rule is None:
            covariance_rule = 0.05 / largest_covariance_eigenvalue(train)
        curvature = largest_hessian_eigenvalue(
            _PathStep(model, l2_penalty=self.l2_penalty), _sample_rows(train, HESSIAN_ROWS)
        )
        if not curvature > 0 or 1.0 / curvature >= covariance_rule:
            return covariance_rule
        logger.info(
            "lassonet: path learning rate %.3g (1 / largest Hessian eigenvalue %.3g) instead of the covariance rule's %.3g",
            1.0 / curvature,
            curvature,
            covariance_rule,
        )
        return 1.0 / curvature

    def next_lambda(self, points: list[LassoNetPathPoint], lambda_start: float) -> float:
        """The ``lambda`` after ``points`` (the dense point first).

        ``lambda * path_multiplier``; with ``adaptive_path`` the log-step doubles for every
        preceding point in a row that did not set a new low of ``n_selected`` (a gene that
        drops out for one point and returns is not progress), at most a factor of 2, and
        falls back to ``path_multiplier`` as soon as the count reaches a new low.
        """
        if len(points) < 2:
            return float(lambda_start)
        quiet = 0
        if self.adaptive_path:
            counts = [p.n_selected for p in points[1:]]
            lowest_before = np.minimum.accumulate([points[0].n_selected, *counts])[:-1]
            for count, low in zip(counts[::-1], lowest_before[::-1]):
                if count < low:  # a new low: genes left for good so far
                    break
                quiet += 1
        return points[-1].lambda_ * min(
            self.path_multiplier ** (2.0 ** min(quiet, 30)), max(2.0, self.path_multiplier)
        )

    def _train_lambda(
        self,
        model: LassoNetAutoencoder,
        lambda_: float,
        index: int,
        train: MinibatchLoader,
        validation: MinibatchLoader | None,
        trainer: TrainerConfig,
        *,
        start: dict[str, torch.Tensor] | None = None,
    ) -> tuple[_PathStep, Any]:
        """Warm-started proximal SGD at one ``lambda`` (seed stream ``(seed, index)``).

        A step that diverges (non-finite loss) is retried from the same weights with half
        the learning rate, which the rest of the path then keeps. ``start`` is a copy of the
        model's current weights when the caller already holds one (saves a ``D x D`` copy).
        """
        step_seed = int(
            np.random.SeedSequence([trainer.seed, index]).generate_state(1)[0] % (2**31)
        )
        if start is None:
            start = snapshot(model)
        halvings = 0
        while True:
            train.seed = step_seed
            config = replace(
                trainer,
                max_epochs=self.epochs_per_lambda,
                learning_rate=self.path_learning_rate_,
                lr_decay=None,
                patience=self.lambda_patience,
                seed=step_seed,
                progress=False,
            )
            task = _PathStep(
                model,
                lambda_=lambda_,
                lambda_bar=self.lambda_bar,
                hierarchy=self.hierarchy,
                l2_penalty=self.l2_penalty,
                optimizer=self.path_optimizer,
                momentum=self.momentum,
            )
            try:
                return task, Trainer(config).fit(task, train, validation)
            except FloatingPointError:
                if halvings == MAX_STEP_HALVINGS:
                    raise FloatingPointError(
                        f"lassonet: the path step at lambda={lambda_:.4g} diverged even at learning rate "
                        f"{self.path_learning_rate_:.3g}; set --param path_learning_rate=... lower"
                    ) from None
                model.load_state_dict(start)
                self.path_learning_rate_ /= 2.0
                halvings += 1
                logger.warning(
                    "lassonet: the path step at lambda=%.4g diverged; learning rate halved to %.3g",
                    lambda_,
                    self.path_learning_rate_,
                )

    def _search_lambda_start(
        self,
        model: LassoNetAutoencoder,
        train: MinibatchLoader,
        validation: MinibatchLoader | None,
        trainer: TrainerConfig,
        *,
        n_dense: int,
    ) -> float:
        """Double ``lambda`` (warm-started) until a gene leaves; return the last one where none did.

        The model is left at that ``lambda``'s weights. Genes leave when the penalty beats
        the combined push on a gene's skip column and first-layer weights, which the
        hierarchy couples, so a closed-form start is unreliable; this search costs a few
        coarse points. The first guess is :func:`estimate_lambda_start`.
        """
        dense_state = snapshot(model)
        guess = estimate_lambda_start(model, train, fraction=self.lambda_start_fraction)
        for attempt in range(60):  # the guess itself already removes genes: halve it
            self._train_lambda(
                model, guess, 10**6 + attempt, train, validation, trainer, start=dense_state
            )
            if int(model.active_genes().sum()) >= n_dense:
                break
            model.load_state_dict(dense_state)
            guess /= 2.0
        del dense_state  # one D x D copy at a time at the GEO scale
        lambda_, state = guess, snapshot(model)
        for attempt in range(60):
            candidate = lambda_ * 2.0
            self._train_lambda(
                model, candidate, 2 * 10**6 + attempt, train, validation, trainer, start=state
            )
            logger.debug(
                "lassonet: start search lambda=%.4g genes=%d",
                candidate,
                int(model.active_genes().sum()),
            )
            if int(model.active_genes().sum()) < n_dense:
                break
            del state
            lambda_, state = candidate, snapshot(model)
        model.load_state_dict(state)
        return lambda_

    def _forget_states(self, points: list[LassoNetPathPoint]) -> None:
        """Drop the weights of points above ``keep_states_below`` genes, except the sparsest
        point that still uses at least ``n_genes`` genes (the panel model starts from it).
        """
        limit = 2 * self.n_genes if self.keep_states_below is None else self.keep_states_below
        if limit < 0:
            return
        covering = [p for p in points if p.n_selected >= self.n_genes]
        keep = min(covering, key=lambda p: (p.n_selected, -p.lambda_)) if covering else None
        for point in points:
            if point.n_selected > limit and point is not keep:
                point.state_dict = None

    def _point(
        self, task: _PathStep, fit: Any, validation: MinibatchLoader | None
    ) -> LassoNetPathPoint:
        model, lambda_ = task.model, task.lambda_
        n_genes = model.input_mask.numel()
        selected = model.active_genes().cpu().numpy()
        n_selected = int(selected.sum())
        history = fit.history
        best = history.loc[history["epoch"] == fit.best_epoch].iloc[0] if len(history) else None
        train_loss = float(best["train_loss"]) / n_genes if best is not None else math.nan
        if validation is not None:
            validation_loss = (fit.best_validation_loss - float(task.penalties())) / n_genes
        else:
            validation_loss = math.nan
        state = compact_state(model, selected)
        return LassoNetPathPoint(
            lambda_=float(lambda_),
            selected=selected,
            n_selected=n_selected,
            train_loss=train_loss,
            validation_loss=float(validation_loss),
            n_epochs=len(history),
            group_norms=model.group_norms().cpu().numpy(),
            state_dict=state,
        )

    def _path_fingerprint(self, train: MinibatchLoader, trainer: TrainerConfig) -> dict[str, Any]:
        """The run fingerprint of the path: data, batches, trainer and every option but the refit's."""
        options = {
            k: v
            for k, v in self.fingerprint().items()
            if k not in ("refit_epochs", "refit_patience")
        }
        return run_fingerprint(train, trainer, options)

    def _save_path_checkpoint(
        self,
        path: Path,
        points: list[LassoNetPathPoint],
        lambda_start: float,
        model: nn.Module,
        fingerprint: dict[str, Any],
    ) -> None:
        payload = {
            "fingerprint": fingerprint,
            "lambda_start": lambda_start,
            "path_learning_rate": self.path_learning_rate_,
            "model": model.state_dict(),
            "points": [
                {
                    **p.__dict__,
                    "selected": torch.from_numpy(p.selected),
                    "group_norms": torch.from_numpy(p.group_norms),
                }
                for p in points
            ],
        }
        with atomic_output(path) as tmp:
            torch.save(payload, tmp)

    def _load_path_checkpoint(
        self, path: Path, model: nn.Module, fingerprint: dict[str, Any]
    ) -> tuple[list[LassoNetPathPoint], float, float]:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise InputFileError(
                path,
                f"cannot read the LassoNet path checkpoint ({error})",
                "delete it to start over",
            ) from None
        check_fingerprint(
            path, payload.get("fingerprint") if isinstance(payload, dict) else None, fingerprint
        )
        model.load_state_dict(payload["model"])
        points = [
            LassoNetPathPoint(
                **{**p, "selected": p["selected"].numpy(), "group_norms": p["group_norms"].numpy()}
            )
            for p in payload["points"]
        ]
        return points, float(payload["lambda_start"]), float(payload["path_learning_rate"])

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
            state_dict={k: v.detach().cpu() for k, v in self.model_.state_dict().items()},
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
                _PathStep(model, l2_penalty=self.l2_penalty, optimizer="adam"), train, validation
            )
            model.restrict_inputs(
                panel
            )  # Adam moved nothing outside the mask, but keep the zeros exact
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
        if self.model_ is None:
            raise ConfigError("lassonet: call select() before reconstruction_mse()")
        model = self.model_.eval()
        device = model.input_mask.device
        return reconstruction_mse(
            model, store, split, units=units, batch_size=batch_size, device=device
        )
