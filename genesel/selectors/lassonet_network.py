"""The LassoNet autoencoder (skip layer plus MLP) and its trainer task for one path step.

Pure math: nothing here reads a store or writes a file. :class:`LassoNetAutoencoder`
reconstructs every gene from every (unmasked) gene; :class:`PathStep` trains it at one
``lambda`` of the path (proximal SGD) or without penalty (the dense fit and the refit).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
from torch import nn

from genesel.decoders import build_decoder
from genesel.errors import ConfigError
from genesel.selectors.hier_prox import column_norms, hier_prox_factors
from genesel.training import adam

#: Weights with one column per input gene, zero for genes out of the model.
COLUMN_KEYS = ("skip.weight", "mlp.0.weight")


class LassoNetAutoencoder(nn.Module):
    """Skip layer plus MLP reconstructing all genes from the (masked) genes.

    Parameters
    ----------
    n_vars
        Genes in and out (all genes of the data).
    hidden
        Widths of the MLP's hidden layers (at least one).
    activation, dropout
        Hidden-layer nonlinearity and dropout (see :func:`~genesel.decoders.build_decoder`).
    """

    input_mask: torch.Tensor

    def __init__(
        self,
        n_vars: int,
        *,
        hidden: Sequence[int] = (200,),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not hidden:
            raise ConfigError(
                "lassonet needs at least one hidden layer (hidden=[...]); the skip layer is the linear part",
                parameter="param:hidden",
            )
        self.skip = nn.Linear(n_vars, n_vars, bias=False)
        self.mlp = build_decoder(
            n_vars, n_vars, hidden=hidden, activation=activation, dropout=dropout
        )
        self.register_buffer("input_mask", torch.ones(n_vars))
        #: Per-gene weight of the penalty (``None``: 1 for every gene); 0 leaves a gene
        #: unpenalised, so it never leaves the path (included genes). Not learned state.
        self.penalty_weights: torch.Tensor | None = None

    @property
    def first_layer(self) -> nn.Linear:
        """The MLP's first linear layer (its columns obey the hierarchy)."""
        return cast(nn.Linear, self.mlp[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct all genes from ``x`` (standardised, samples x genes)."""
        x = x * self.input_mask
        return cast(torch.Tensor, self.skip(x) + self.mlp(x))

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
        total = torch.zeros((), device=self.input_mask.device)
        for layer in layers:
            total = total + (layer.weight**2).sum()
        return total

    def active_genes(self) -> torch.Tensor:
        """Boolean mask of the genes the model still uses."""
        return (self.group_norms() > 0) & (self.input_mask > 0)

    @torch.no_grad()
    def prox(self, *, lambda_: float, lambda_bar: float = 0.0, hierarchy: float = 10.0) -> None:
        """Apply Group-Hier-Prox in place (thresholds already multiplied by the step size)."""
        threshold: float | torch.Tensor = lambda_
        threshold_bar: float | torch.Tensor = lambda_bar
        if self.penalty_weights is not None:
            threshold = lambda_ * self.penalty_weights
            threshold_bar = lambda_bar * self.penalty_weights
        scale, first = hier_prox_factors(
            column_norms(self.skip.weight.data),
            self.first_layer.weight.data,
            lambda_=threshold,
            lambda_bar=threshold_bar,
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


class PathStep(nn.Module):
    """Trainer task: one ``lambda`` of the path (SGD + prox), or the dense/refit fits (Adam).

    Parameters
    ----------
    model
        The autoencoder, trained in place.
    lambda_, lambda_bar, hierarchy
        Group-lasso weight, first-layer lasso weight and hierarchy bound ``M`` of the
        proximal step after every optimiser step (no step when both weights are 0).
    l2_penalty
        ``gamma``: ridge penalty on the MLP weights after the first layer.
    optimizer, momentum
        ``"sgd"`` (with ``momentum``) or ``"adam"``.
    """

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
        """SGD with momentum or Adam over the model's parameters."""
        optimizer: torch.optim.Optimizer
        if self.optimizer_name == "sgd":
            optimizer = torch.optim.SGD(
                self.parameters(), lr=learning_rate, momentum=self.momentum
            )
        else:
            optimizer = adam(self.parameters(), learning_rate)
        self._optimizer = weakref.ref(optimizer)
        return optimizer

    def training_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Summed squared error plus the ridge term (the prox handles the lasso terms)."""
        loss = sum_squared_error(self.model(batch), batch)
        return loss + self.l2_penalty * self.model.ridge() if self.l2_penalty else loss

    def validation_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """The path's objective, penalties included (picks each lambda's weights, as in the paper)."""
        return sum_squared_error(self.model(batch), batch) + self.penalties()

    @torch.no_grad()
    def penalties(self) -> torch.Tensor:
        """``lambda * sum_j ||theta_j|| + gamma * ridge``."""
        value = self.lambda_ * self.model.penalty()
        return value + self.l2_penalty * self.model.ridge() if self.l2_penalty else value

    def after_optimizer_step(self) -> None:
        """The proximal step, thresholds scaled by the optimiser's current step size."""
        if self.lambda_ > 0 or self.lambda_bar > 0:
            optimizer = None if self._optimizer is None else self._optimizer()
            if optimizer is None:
                raise RuntimeError("PathStep: the proximal step runs after configure_optimizer")
            step = optimizer.param_groups[0]["lr"]
            self.model.prox(
                lambda_=self.lambda_ * step,
                lambda_bar=self.lambda_bar * step,
                hierarchy=self.hierarchy,
            )
