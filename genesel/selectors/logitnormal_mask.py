r"""Torch modules of the correlated logitNormal gates (Dona & Gallinari, ECML-PKDD 2021).

Pure math: nothing here reads a store or writes a file. :class:`LogitNormalMask` is the
gate distribution (free ``W, b`` or a hypernetwork); :class:`LogitNormalAutoencoder` is the
:class:`genesel.training.TrainingTask` that masks the genes and reconstructs them. The
selectors in :mod:`genesel.selectors.logitnormal` build it from a store.

Every training sample draws its own gene mask

.. math::

    u = W z + b,\quad z \sim N(0, I_d),\quad y = \sigma(u / \tau),\quad
    m = \min(1, \max(0, \gamma + (\eta - \gamma) y)),

with ``d << D``: the low-rank ``W W^T`` is the covariance that lets gates open and close
together, so redundant genes can be dropped jointly. The stretch ``(gamma, eta) =
(-0.1, 1.1)`` followed by the clip gives exact zeros and ones (as the hard-concrete
gates of Louizos et al.). The decoder reconstructs all genes from ``x * m``.

Sign conventions (checked against the mask definition): gate ``i`` is non-zero iff
``y_i > -gamma / (eta - gamma)``, i.e. iff ``u_i > tau * log(-gamma / eta)`` (a negative
number, since ``-gamma < eta``), and ``u_i ~ N(b_i, ||W_i||^2)``, so

.. math::

    P(m_i \neq 0) = 1 - \Phi\big((\tau \log(-\gamma/\eta) - b_i) / \|W_i\|\big).

The paper writes the threshold without ``tau`` (temperature 1 or absorbed into ``W, b``);
we keep it so the penalty is exact at any temperature. The expected L0 norm is the sum of
these. At zero temperature a gate is open iff ``u_i > 0``, with probability
``Phi(b_i / ||W_i||)``; the panel is the ``K`` genes with the highest such probability
(ranked by ``b_i / ||W_i||``).

Reaching ``K`` genes: the gates start with ``K`` expected open, and a controller moves the
log of the L0 weight in proportion to ``log(expected open gates / K)`` (clipped), so the
weight rises while too many gates are open and falls when too few are. Two failure modes
shaped these choices: (i) the penalty can be lowered by inflating ``||W_i||`` until a gate
is a fair coin, so row norms of ``W`` are capped (``noise_scale``); (ii) a gate whose mask is
clipped at 0 or 1 for every ``z`` gets no gradient at all, so a weight that rises too fast
freezes the wrong gates; the controller's speed is therefore tied to the run length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from genesel.decoders import make_activation
from genesel.errors import ConfigError
from genesel.training import adam

_SQRT2 = math.sqrt(2.0)


def normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Standard normal CDF."""
    return 0.5 * (1.0 + torch.erf(x / _SQRT2))


def normal_quantile(p: float) -> float:
    """Standard normal quantile (inverse CDF)."""
    return float(_SQRT2 * torch.erfinv(torch.tensor(2.0 * p - 1.0, dtype=torch.float64)))


class LogitNormalMask(nn.Module):
    """The stretched, clipped, correlated logitNormal gate distribution over ``D`` genes.

    Parameters
    ----------
    n_vars
        ``D``, all genes of the data.
    latent_dim
        ``d``, the rank of the gates' covariance.
    hypernetwork
        Produce ``W_i, b_i`` from a learned per-gene embedding through a small MLP
        (``"logitnormal-hnet"``) instead of free parameters.
    embedding_dim, hyper_hidden
        Width of the gene embedding and of the hypernetwork's hidden layer.
    init_open
        Zero-temperature probability that a gate is open at initialisation.
    gamma, eta
        Stretch interval (``gamma < 0 < 1 < eta``).
    noise_scale
        Every row of ``W`` is rescaled to this norm (``None``: free rows, as in the paper).
        With free rows the expected L0 penalty has two escapes that stop selection: inflating
        ``||W_i||`` makes a gate a fair coin, shrinking it makes the gate deterministic and
        half open with a zero penalty gradient. Fixed norms leave ``W`` to set only the
        correlations between gates (a Gaussian copula) and ``b_i`` the marginals.
    max_logit
        Bound on ``|b_i| / ||W_i||`` in the forward pass (gradients pass straight through;
        ``None``: unbounded). A gate far past the clip points gets no gradient from the
        reconstruction and a vanishing one from the penalty, so it could never close again.
    forced_open, forced_closed
        Genes whose gate is always 1 (included in the panel) or always 0 (excluded): their
        masks, open probabilities and L0 terms are constants, and their parameters get no
        gradient.
    """

    temperature: torch.Tensor
    forced_open: torch.Tensor
    forced_closed: torch.Tensor

    def __init__(
        self,
        n_vars: int,
        *,
        latent_dim: int = 32,
        hypernetwork: bool = False,
        embedding_dim: int = 32,
        hyper_hidden: int = 64,
        init_open: float = 0.5,
        gamma: float = -0.1,
        eta: float = 1.1,
        noise_scale: float | None = 1.0,
        max_logit: float | None = 3.0,
        forced_open: Sequence[int] | np.ndarray = (),
        forced_closed: Sequence[int] | np.ndarray = (),
    ) -> None:
        super().__init__()
        self.max_logit = None if max_logit is None else float(max_logit)
        if not gamma < 0 < 1 < eta:
            raise ConfigError(
                f"the stretch needs gamma < 0 and eta > 1, got gamma={gamma}, eta={eta}"
            )
        if not 0 < init_open < 1:
            raise ConfigError(f"init_open must be in (0, 1), got {init_open}")
        self.n_vars = int(n_vars)
        self.latent_dim = int(latent_dim)
        self.gamma = float(gamma)
        self.eta = float(eta)
        self.noise_scale = None if noise_scale is None else float(noise_scale)
        self.hypernetwork = bool(hypernetwork)
        offset = normal_quantile(init_open)
        if self.hypernetwork:
            self.embedding = nn.Parameter(torch.randn(n_vars, embedding_dim))
            self.hyper = nn.Sequential(
                nn.Linear(embedding_dim, hyper_hidden),
                make_activation("leaky_relu"),
                nn.Linear(hyper_hidden, latent_dim + 1),
            )
            head = cast(nn.Linear, self.hyper[-1])
            with torch.no_grad():
                # gates start alike, embeddings differentiate them
                head.weight[latent_dim].mul_(0.1)
                weight, bias = self.weight_and_bias()
                head.bias[latent_dim] += offset * float(
                    torch.linalg.vector_norm(weight, dim=1).mean()
                ) - float(bias.mean())
        else:
            self.weight = nn.Parameter(torch.randn(n_vars, latent_dim) / math.sqrt(latent_dim))
            self.bias = nn.Parameter(torch.zeros(n_vars))
            with torch.no_grad():
                weight, _ = self.weight_and_bias()
                self.bias.copy_(offset * torch.linalg.vector_norm(weight, dim=1))
        self.register_buffer("temperature", torch.tensor(1.0))
        # not persistent: the selector's constraints, not learned state (checkpoints keep their layout)
        opened = torch.zeros(n_vars, dtype=torch.bool)
        opened[torch.as_tensor(np.asarray(forced_open, dtype=np.int64))] = True
        closed = torch.zeros(n_vars, dtype=torch.bool)
        closed[torch.as_tensor(np.asarray(forced_closed, dtype=np.int64))] = True
        if bool((opened & closed).any()):
            raise ConfigError("a gate cannot be forced both open and closed")
        self.register_buffer("forced_open", opened, persistent=False)
        self.register_buffer("forced_closed", closed, persistent=False)
        self._forced = bool(opened.any() or closed.any())

    def _force(
        self, values: torch.Tensor, *, open_value: float, closed_value: float
    ) -> torch.Tensor:
        """``values`` (last axis: genes) with the forced gates' entries replaced by constants."""
        if not self._forced:
            return values
        values = torch.where(self.forced_open, torch.full_like(values, open_value), values)
        return torch.where(self.forced_closed, torch.full_like(values, closed_value), values)

    def weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``W`` (genes x d, rows of norm ``noise_scale``) and ``b`` (genes).

        ``|b_i| <= max_logit ||W_i||`` in the forward pass (gradients pass straight through).
        """
        weight, bias = self.raw_weight_and_bias()
        if self.max_logit is not None:
            bound = self.max_logit * torch.linalg.vector_norm(weight, dim=1).detach()
            bias = bias + (torch.maximum(torch.minimum(bias, bound), -bound) - bias).detach()
        return weight, bias

    def raw_weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``W`` (rows of norm ``noise_scale``) and the unbounded ``b``."""
        if self.hypernetwork:
            out = self.hyper(self.embedding)
            weight, bias = out[:, : self.latent_dim], out[:, self.latent_dim]
        else:
            weight, bias = self.weight, self.bias
        if self.noise_scale is not None:
            weight = (
                self.noise_scale
                * weight
                / torch.linalg.vector_norm(weight, dim=1, keepdim=True).clamp_min(1e-12)
            )
        return weight, bias

    def sample(self, n: int) -> torch.Tensor:
        """Draw ``n`` masks (samples x genes) with the reparameterisation trick."""
        weight, bias = self.weight_and_bias()
        z = torch.randn(n, self.latent_dim, device=weight.device, dtype=weight.dtype)
        y = torch.sigmoid((z @ weight.T + bias) / self.temperature)
        return self._force(
            torch.clamp(self.gamma + (self.eta - self.gamma) * y, 0.0, 1.0),
            open_value=1.0,
            closed_value=0.0,
        )

    def open_logit(self) -> torch.Tensor:
        """``b_i / ||W_i||``: the zero-temperature gate is open with probability ``Phi`` of it."""
        weight, bias = self.weight_and_bias()
        return self._force(
            bias / torch.linalg.vector_norm(weight, dim=1).clamp_min(1e-8),
            open_value=math.inf,
            closed_value=-math.inf,
        )

    def open_probability(self) -> torch.Tensor:
        """``P(Y_i = 1)`` at zero temperature, ``Phi(b_i / ||W_i||) = 1 - Phi(-b_i / ||W_i||)``."""
        return normal_cdf(self.open_logit())

    def nonzero_probability(self) -> torch.Tensor:
        """``P(m_i != 0)`` at the current temperature (differentiable)."""
        weight, bias = self.weight_and_bias()
        threshold = self.temperature * math.log(-self.gamma / self.eta)
        probability = 1.0 - normal_cdf(
            (threshold - bias) / torch.linalg.vector_norm(weight, dim=1).clamp_min(1e-8)
        )
        return self._force(probability, open_value=1.0, closed_value=0.0)

    def expected_l0(self) -> torch.Tensor:
        """Expected number of non-zero gates."""
        return self.nonzero_probability().sum()

    def ranking_logit(self) -> torch.Tensor:
        """``b_i / ||W_i||`` before the ``max_logit`` bound (orders gates tied at the bound)."""
        weight, bias = self.raw_weight_and_bias()
        return self._force(
            bias / torch.linalg.vector_norm(weight, dim=1).clamp_min(1e-8),
            open_value=math.inf,
            closed_value=-math.inf,
        )

    def top_genes(self, n_genes: int) -> torch.Tensor:
        """The ``n_genes`` genes most likely open at zero temperature, most likely first."""
        logit = self.ranking_logit().detach()
        order = np.lexsort((np.arange(self.n_vars), -logit.cpu().double().numpy()))
        return torch.as_tensor(order[:n_genes], device=logit.device)


class LogitNormalAutoencoder(nn.Module):
    """Trainer task: mask ``x`` with a sampled gate vector, reconstruct all genes.

    Parameters
    ----------
    mask
        The gate distribution.
    decoder
        All genes (masked) -> all genes.
    n_genes
        ``K``, the panel size: validation and the final model read the deterministic top-``K`` mask, and
        the controller steers the expected number of open gates towards it.
    l0_weight
        Initial weight ``alpha`` of the penalty ``alpha * E[L0] / D``.
    controller_range
        How far (in log units) the controller may move ``log alpha`` over the whole run; the
        per-step move is ``controller_range / total_steps`` times the clipped log ratio of
        expected open gates to the target (0: keep ``l0_weight``).
    anneal_fraction
        Fraction of the steps over which the target falls geometrically from the initial
        expected number of open gates to ``K`` (0: ``K`` from the start).
    start_temperature, end_temperature
        Exponential per-epoch schedule of ``tau``.
    mask_learning_rate
        Adam learning rate of the gate parameters (``None``: the trainer's).
    """

    log_l0_weight: torch.Tensor
    panel_mask: torch.Tensor
    initial_open: torch.Tensor
    gate_costs: torch.Tensor | None

    def __init__(
        self,
        mask: LogitNormalMask,
        decoder: nn.Module,
        *,
        n_genes: int,
        l0_weight: float = 0.1,
        controller_range: float = 20.0,
        anneal_fraction: float = 0.0,
        start_temperature: float = 0.3,
        end_temperature: float = 0.1,
        mask_learning_rate: float | None = None,
        gate_costs: torch.Tensor | np.ndarray | None = None,
        budget: float | None = None,
    ) -> None:
        super().__init__()
        self.mask = mask
        self.decoder = decoder
        self.n_genes = int(n_genes)
        self.controller_range = float(controller_range)
        self.anneal_fraction = float(anneal_fraction)
        self.start_temperature = float(start_temperature)
        self.end_temperature = float(end_temperature)
        self.mask_learning_rate = None if mask_learning_rate is None else float(mask_learning_rate)
        self.register_buffer("log_l0_weight", torch.tensor(math.log(l0_weight)))
        self.register_buffer("panel_mask", torch.zeros(mask.n_vars))
        with torch.no_grad():
            self.register_buffer(
                "initial_open", mask.open_probability().sum().clamp_min(float(n_genes))
            )
        self.target_open = float(self.initial_open)
        self.total_steps = 1
        self.fixed_panel = False
        # per-gene costs of the cost-weighted L0 (relative to the candidates' mean; None: plain L0)
        # and the budget the controller keeps the open gates' expected cost within; not
        # persistent: the selector's constraints, not learned state (checkpoints keep their layout)
        costs = (
            None
            if gate_costs is None
            else torch.as_tensor(np.asarray(gate_costs, dtype=np.float32))
        )
        self.register_buffer("gate_costs", costs, persistent=False)
        self.budget = None if budget is None else float(budget)

    # -- trainer hooks ----------------------------------------------------------------
    def configure_optimizer(self, learning_rate: float) -> torch.optim.Optimizer:
        groups: list[dict[str, Any]] = [
            {"params": [p for p in self.decoder.parameters() if p.requires_grad]}
        ]
        mask_parameters = [p for p in self.mask.parameters() if p.requires_grad]
        if mask_parameters:
            groups.append(
                {"params": mask_parameters, "lr": self.mask_learning_rate or learning_rate}
            )
        return adam(groups, learning_rate)

    def on_epoch_start(self, epoch: int, n_epochs: int) -> None:
        fraction = epoch / max(n_epochs - 1, 1)
        self.mask.temperature.fill_(
            self.start_temperature * (self.end_temperature / self.start_temperature) ** fraction
        )

    def on_step_start(self, step: int, total_steps: int) -> None:
        self.total_steps = max(int(total_steps), 1)
        progress = (
            min(1.0, step / max(self.anneal_fraction * total_steps, 1.0))
            if self.anneal_fraction > 0
            else 1.0
        )
        self.target_open = (
            float(self.initial_open) * (self.n_genes / float(self.initial_open)) ** progress
        )

    def training_loss(self, batch: torch.Tensor) -> torch.Tensor:
        if self.fixed_panel:
            return ((self.decoder(batch * self.panel_mask) - batch) ** 2).mean()
        gates = self.mask.sample(batch.shape[0])
        reconstruction = ((self.decoder(batch * gates) - batch) ** 2).mean()
        return reconstruction + self.log_l0_weight.exp() * self.penalised_l0() / self.mask.n_vars

    def penalised_l0(self) -> torch.Tensor:
        """The expected L0 norm, each gate weighted by its relative cost when costs are given."""
        if self.gate_costs is None:
            return self.mask.expected_l0()
        return (self.mask.nonzero_probability() * self.gate_costs).sum()

    def validation_loss(self, batch: torch.Tensor) -> torch.Tensor:
        return ((self.decoder(batch * self.deterministic_mask()) - batch) ** 2).mean()

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        if self.fixed_panel or self.controller_range <= 0:
            return
        # on the device, in float64 as the host arithmetic was: no host read per step
        probability = self.mask.open_probability()
        expected_open = probability.sum().double().clamp_min(1e-3)
        error = torch.log(expected_open / max(self.target_open, 1e-3))
        costs = self.gate_costs
        if self.budget is not None and costs is not None:
            # the tighter of the two: K genes open, and their expected cost within the budget
            # (annealed as the count target is); the weight is the budget's Lagrange multiplier
            target_cost = self.budget * self.target_open / max(float(self.n_genes), 1.0)
            # expected cost of the genes open at zero temperature (relative cost units)
            expected_cost = (probability * costs).sum()
            over = torch.log(expected_cost.double().clamp_min(1e-3) / max(target_cost, 1e-3))
            error = torch.maximum(error, over)
        error = error.clamp(-1.0, 1.0)
        step = self.controller_range / self.total_steps * error
        self.log_l0_weight.add_(step.to(self.log_l0_weight.dtype)).clamp_(-20.0, 20.0)

    @torch.no_grad()
    def epoch_metrics(self) -> dict[str, float]:
        probability = self.mask.open_probability()
        return {
            "expected_l0": float(self.mask.expected_l0()),
            "expected_open": float(probability.sum()),
            "target_open": float(self.target_open),
            "n_open": int((probability > 0.5).sum()),
            "l0_weight": float(self.log_l0_weight.exp()),
            "temperature": float(self.mask.temperature),
        }

    # -- deterministic panel ----------------------------------------------------------------
    def deterministic_mask(self) -> torch.Tensor:
        """0/1 mask of the top-``K`` genes (the fixed panel once frozen).

        With a budget, the leading genes of that order while their running cost fits it
        (the final panel also skips genes that do not fit; see :meth:`freeze_panel`).
        """
        if self.fixed_panel:
            return self.panel_mask
        mask = torch.zeros_like(self.panel_mask)
        top = self.mask.top_genes(self.n_genes)
        if self.budget is not None and self.gate_costs is not None:
            spent = torch.cumsum(self.gate_costs[top], dim=0)
            top = top[spent <= self.budget * (1.0 + 1e-6)]
        mask[top] = 1.0
        return mask

    @torch.no_grad()
    def freeze_panel(self, genes: np.ndarray | None = None) -> None:
        """Fix the mask to ``genes`` (default: the current top-``K`` genes) and stop training the gates."""
        if genes is None:
            self.panel_mask.copy_(self.deterministic_mask())
        else:
            self.panel_mask.zero_()
            self.panel_mask[
                torch.as_tensor(np.asarray(genes, dtype=np.int64), device=self.panel_mask.device)
            ] = 1.0
        self.fixed_panel = True
        self.mask.requires_grad_(False)

    def reconstruct(self, batch: torch.Tensor) -> torch.Tensor:
        """Reconstruct all genes from the deterministic panel."""
        return self.decoder(batch * self.deterministic_mask())
