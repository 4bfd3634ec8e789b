"""The LassoNet path as data: typed path points, gene ranking and panels, and which weights to keep.

Memory policy: a point keeps its weights compactly (only the columns of the genes in use,
see :func:`compact_state`), and :func:`forget_states` drops the weights of dense points
that no panel will start from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from genesel.errors import ConfigError
from genesel.selectors.lassonet_network import COLUMN_KEYS, LassoNetAutoencoder


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

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights at this point, loadable into :class:`LassoNetAutoencoder`."""
        if self.state_dict is None:
            raise ConfigError(
                f"the path point at lambda={self.lambda_:.4g} kept no weights",
                parameter="param:keep_states_below",
            )
        columns = torch.from_numpy(np.flatnonzero(self.selected))
        full = dict(self.state_dict)
        for key in COLUMN_KEYS:
            compact = self.state_dict[key]
            if compact.shape[1] == self.selected.size:  # stored in full (an older checkpoint)
                continue
            weight = compact.new_zeros(compact.shape[0], self.selected.size)
            weight[:, columns] = compact
            full[key] = weight
        return full


def compact_state(model: LassoNetAutoencoder, selected: np.ndarray) -> dict[str, torch.Tensor]:
    """A compact CPU copy of ``model``'s weights (see :attr:`LassoNetPathPoint.state_dict`).

    Of :data:`~genesel.selectors.lassonet_network.COLUMN_KEYS` only the ``selected`` input
    columns are kept.
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


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s weights on its device (to fall back to)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def sparsest_covering(
    points: list[LassoNetPathPoint], n_genes: int, *, with_state: bool = False
) -> LassoNetPathPoint | None:
    """The sparsest point using at least ``n_genes`` genes (``None``: there is none).

    With ``with_state`` only points that kept their weights count; among equals the one of
    largest ``lambda`` wins.
    """
    candidates = [
        p
        for p in points
        if p.n_selected >= n_genes and (p.state_dict is not None or not with_state)
    ]
    return min(candidates, key=lambda p: (p.n_selected, -p.lambda_)) if candidates else None


def forget_states(
    points: list[LassoNetPathPoint], *, n_genes: int, keep_states_below: int | None
) -> None:
    """Drop the weights of points above ``keep_states_below`` genes, in place.

    ``keep_states_below`` ``None`` means ``2 * n_genes``, a negative value keeps all. The
    sparsest point that still uses at least ``n_genes`` genes keeps its weights (the panel
    model starts from it).
    """
    limit = 2 * n_genes if keep_states_below is None else keep_states_below
    if limit < 0:
        return
    keep = sparsest_covering(points, n_genes)
    for point in points:
        if point.n_selected > limit and point is not keep:
            point.state_dict = None


@dataclass
class LassoNetPath:
    """A dense-to-sparse LassoNet path; any point with a kept state can be restored."""

    points: list[LassoNetPathPoint]
    path_multiplier: float

    @property
    def n_vars(self) -> int:
        """Genes of the data."""
        return int(self.points[0].selected.size)

    def _last_exits(self) -> tuple[np.ndarray, np.ndarray]:
        """Per gene: the point after which it never returns, and its skip norm before that.

        The index is -1 for a gene still in use.
        """
        selected = np.stack([p.selected for p in self.points])  # points x genes
        alive_at_end = selected[-1]
        # last point at which each gene was in use
        last_alive = selected.shape[0] - 1 - np.argmax(selected[::-1], axis=0)
        last_alive = np.where(selected.any(axis=0), last_alive, -1)
        exit_index = np.where(alive_at_end, -1, last_alive + 1)
        norms = np.stack([p.group_norms for p in self.points])
        before = np.where(alive_at_end, selected.shape[0] - 1, np.maximum(last_alive, 0))
        return exit_index, norms[before, np.arange(self.n_vars)]

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
        return np.lexsort((np.arange(self.n_vars), -tie_break, -self.importance()))

    def panel(self, n_genes: int) -> np.ndarray:
        """The ``n_genes`` most important genes (nested across ``n_genes``)."""
        if not 1 <= n_genes <= self.n_vars:
            raise ConfigError(
                f"n_genes must be between 1 and {self.n_vars}, got {n_genes}", parameter="n_genes"
            )
        return self.ranking()[:n_genes]

    def point_for(self, n_genes: int, *, with_state: bool = True) -> LassoNetPathPoint:
        """The sparsest point still using at least ``n_genes`` genes (with a kept state)."""
        point = sparsest_covering(self.points, n_genes, with_state=with_state)
        if point is None:
            raise ConfigError(
                f"no path point with >= {n_genes} genes and a kept state; lower keep_states_below or rerun",
                parameter="param:keep_states_below",
            )
        return point

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
