"""The concrete selector layer: node logits (CAE's free, IP-CAE's indirect) and the math on them.

The temperature schedule, the diversity term (GJSD), the convergence threshold and the
deterministic resolution of duplicate selections. Pure math: nothing here reads a store
or writes a file; :class:`~genesel.selectors.concrete_autoencoder.ConcreteAutoencoder`
puts the layer in front of a decoder.

Shapes: ``K`` selector nodes (panel size), ``D`` genes, ``P`` embedding width (IP-CAE).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genesel.errors import ConfigError

#: Forms of IP-CAE's gene matrix ``W`` (see :class:`IndirectLogits`).
W_FORMS = ("full", "diagonal", "scalar")
#: When the temperature is updated.
ANNEAL_MODES = ("epoch", "step")
#: The CAE stopping rule: stop once the mean (over nodes) max probability reaches this.
CONVERGED_MEAN_MAX_PROBABILITY = 0.99


def annealed_temperature(progress: float, *, start: float, end: float) -> float:
    """Exponential schedule ``T = start * (end / start) ** progress`` for ``progress`` in [0, 1]."""
    progress = min(max(float(progress), 0.0), 1.0)
    return float(start * (end / start) ** progress)


def generalized_jensen_shannon(logits: torch.Tensor) -> torch.Tensor:
    """Generalised Jensen-Shannon divergence among the rows' categorical distributions.

    With uniform weights over the ``K`` rows, ``GJSD = (1/K) sum_k KL(p_k || m)`` where
    ``m`` is the mean distribution; 0 when all rows agree, at most ``log K``.

    Parameters
    ----------
    logits
        ``K x D`` unnormalised log-probabilities.
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    p = log_p.exp()
    log_m = torch.log(p.mean(dim=0).clamp_min(torch.finfo(p.dtype).tiny))
    return (p * (log_p - log_m)).sum(dim=1).mean()


def resolve_duplicate_selections(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Give every node a distinct gene, deterministically.

    Nodes are visited in order of their maximum probability (descending; ties by node
    index). Each takes its argmax gene if no earlier node took it, else the next-best
    gene by its own logits that is still free.

    Parameters
    ----------
    logits
        ``K x D`` node logits (``K <= D``).

    Returns
    -------
    node_genes
        Gene assigned to each node (length ``K``, distinct), in node order.
    order
        Nodes in the order they were visited (= panel rank order).
    n_resolved
        Number of nodes that did not get their argmax gene.
    """
    logits = np.asarray(logits, dtype=np.float64)
    n_genes, n_vars = logits.shape
    if n_genes > n_vars:
        raise ConfigError(f"cannot pick {n_genes} distinct genes out of {n_vars}")
    max_probability = softmax_max_probability(logits)
    order = np.lexsort((np.arange(n_genes), -max_probability))
    taken = np.zeros(n_vars, dtype=bool)
    node_genes = np.empty(n_genes, dtype=np.int64)
    n_resolved = 0
    for node in order:
        row = logits[node]
        best = int(np.argmax(row))
        if not taken[best]:
            choice = best
        else:
            n_resolved += 1
            ranked = np.argsort(-row, kind="stable")
            choice = int(ranked[np.flatnonzero(~taken[ranked])[0]])
        taken[choice] = True
        node_genes[node] = choice
    return node_genes, order, n_resolved


def softmax_max_probability(logits: np.ndarray) -> np.ndarray:
    """Largest softmax probability of each row of ``logits``."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return 1.0 / np.exp(shifted).sum(axis=1)


class DirectLogits(nn.Module):
    """CAE: the ``K x D`` logits are free parameters.

    Initialised as in the CAE's reference implementation (Glorot/Xavier normal,
    standard deviation ``sqrt(2 / (K + D))``), i.e. close to uniform selection.
    """

    def __init__(self, n_genes: int, n_vars: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.empty(n_genes, n_vars))
        nn.init.xavier_normal_(self.logits)

    def forward(self) -> torch.Tensor:
        """Return the ``K x D`` logits."""
        return self.logits


class IndirectLogits(nn.Module):
    """IP-CAE: ``logits = Psi W^T + b`` with a learned embedding ``Psi`` (``K x P``).

    Parameters
    ----------
    n_genes, n_vars
        ``K`` (selector nodes) and ``D`` (all genes).
    embedding_dim
        ``P``; ``None`` means ``P = D`` (the paper's setting). ``diagonal`` and ``scalar``
        require ``P = D``.
    w_form
        ``"full"``: ``W`` is ``D x P`` (``K*P*D`` multiply-adds per step);
        ``"diagonal"``: ``W = diag(w)``, ``logits = Psi * w + b`` (``K*D``);
        ``"scalar"``: ``W = s I``, ``logits = s Psi + b`` (``K*D``).

    Notes
    -----
    Initialisation follows the IP-CAE reference implementation: ``Psi ~ N(0, 1)``; ``W``
    and ``b`` as a ``torch.nn.Linear(P, D)`` layer (uniform in ``+-1/sqrt(P)``), which gives
    logits of standard deviation about ``1/sqrt(3)``. The diagonal form uses the same rule
    with fan-in 1 (``w ~ U(-1, 1)``) and the scalar form ``s = 1/sqrt(3)``, so all forms
    start with logits of the same spread; ``b`` is always ``U(+-1/sqrt(P))``.
    """

    def __init__(
        self, n_genes: int, n_vars: int, *, embedding_dim: int | None = None, w_form: str = "full"
    ) -> None:
        super().__init__()
        if w_form not in W_FORMS:
            raise ConfigError(
                f"w_form must be one of {W_FORMS}, got {w_form!r}", parameter="param:w_form"
            )
        dim = n_vars if embedding_dim is None else int(embedding_dim)
        if dim < 1:
            raise ConfigError(
                f"embedding_dim must be positive, got {embedding_dim}",
                parameter="param:embedding_dim",
            )
        if w_form != "full" and dim != n_vars:
            raise ConfigError(
                f"w_form={w_form!r} needs embedding_dim equal to the number of genes ({n_vars}), got {dim}",
                parameter="param:embedding_dim",
            )
        self.w_form = w_form
        self.embedding_dim = dim
        self.embedding = nn.Parameter(torch.randn(n_genes, dim))
        bound = 1.0 / math.sqrt(dim)
        self.weight: nn.Parameter
        if w_form == "full":
            self.weight = nn.Parameter(torch.empty(n_vars, dim).uniform_(-bound, bound))
        elif w_form == "diagonal":
            self.weight = nn.Parameter(torch.empty(n_vars).uniform_(-1.0, 1.0))
        else:
            self.weight = nn.Parameter(torch.full((), 1.0 / math.sqrt(3.0)))
        self.bias = nn.Parameter(torch.empty(n_vars).uniform_(-bound, bound))

    def forward(self) -> torch.Tensor:
        """Return the ``K x D`` logits (computed once per call, not per sample)."""
        if self.w_form == "full":
            return torch.addmm(self.bias, self.embedding, self.weight.t())
        return torch.addcmul(self.bias, self.embedding, self.weight)
