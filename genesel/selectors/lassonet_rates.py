"""Step sizes and the starting ``lambda`` of the LassoNet path, estimated from the data and the dense fit."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch

from genesel.errors import ConfigError
from genesel.loader import MinibatchLoader
from genesel.selectors.lassonet_network import LassoNetAutoencoder, PathStep

logger = logging.getLogger(__name__)

#: Train rows of the Hessian estimate behind ``path_learning_rate="auto"``.
HESSIAN_ROWS = 256


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


def sample_rows(train: MinibatchLoader, max_rows: int) -> torch.Tensor:
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
    sample = sample_rows(train, max_rows)
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


def covariance_rule(train: MinibatchLoader) -> float:
    """The SGD path step ``0.05 / lambda_max(cov)`` (the skip layer's curvature is ``2 lambda_max``)."""
    return 0.05 / largest_covariance_eigenvalue(train)


def _total_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Euclidean norm of a list of tensors taken as one vector."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


def largest_hessian_eigenvalue(task: PathStep, batch: torch.Tensor, *, n_iter: int = 10) -> float:
    """Largest ``|eigenvalue|`` of the smooth path loss's Hessian at the current weights.

    Power iteration on Hessian-vector products (double backward) of
    :meth:`PathStep.training_loss` on ``batch``, with dropout off. It bounds the step size
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


def capped_path_learning_rate(
    model: LassoNetAutoencoder,
    train: MinibatchLoader,
    *,
    covariance_rate: float | None,
    l2_penalty: float,
) -> float:
    """The ``"auto"`` SGD path step at the dense fit: the covariance rule, capped.

    ``covariance_rate`` (:func:`covariance_rule`, computed before the dense fit; ``None``:
    compute it now) is capped at ``1 / lambda_max(Hessian)`` of the loss at the dense weights
    so that no layer's step diverges; the cap binds when many genes feed a small hidden
    layer (GEO scale), not on the paper benchmarks.
    """
    train.set_epoch(0)  # both estimates read the first rows of epoch 0, as before the dense fit
    if covariance_rate is None:
        covariance_rate = covariance_rule(train)
    curvature = largest_hessian_eigenvalue(
        PathStep(model, l2_penalty=l2_penalty), sample_rows(train, HESSIAN_ROWS)
    )
    if not curvature > 0 or 1.0 / curvature >= covariance_rate:
        return covariance_rate
    logger.info(
        "lassonet: path learning rate %.3g (1 / largest Hessian eigenvalue %.3g) instead of the covariance rule's %.3g",
        1.0 / curvature,
        curvature,
        covariance_rate,
    )
    return 1.0 / curvature
