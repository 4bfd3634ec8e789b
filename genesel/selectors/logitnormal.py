"""Correlated logitNormal masks (Dona & Gallinari, "Differentiable Feature Selection, a
Reparameterization Approach", ECML-PKDD 2021), registered as ``"logitnormal"`` (free
``W, b``) and ``"logitnormal-hnet"`` (``W, b`` produced by a hypernetwork).

Every training sample draws its own gene mask

.. math::

    u = W z + b,\\quad z \\sim N(0, I_d),\\quad y = \\sigma(u / \\tau),\\quad
    m = \\min(1, \\max(0, \\gamma + (\\eta - \\gamma) y)),

with ``d << D``: the low-rank ``W W^T`` is the covariance that lets gates open and close
together, so redundant genes can be dropped jointly. The stretch ``(gamma, eta) =
(-0.1, 1.1)`` followed by the clip gives exact zeros and ones (as the hard-concrete
gates of Louizos et al.). The decoder reconstructs all genes from ``x * m``.

Sign conventions (checked against the mask definition): gate ``i`` is non-zero iff
``y_i > -gamma / (eta - gamma)``, i.e. iff ``u_i > tau * log(-gamma / eta)`` (a negative
number, since ``-gamma < eta``), and ``u_i ~ N(b_i, ||W_i||^2)``, so

.. math::

    P(m_i \\neq 0) = 1 - \\Phi\\big((\\tau \\log(-\\gamma/\\eta) - b_i) / \\|W_i\\|\\big).

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

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from genesel.decoders import build_decoder, make_activation
from genesel.errors import ConfigError
from genesel.loader import LoaderConfig
from genesel.panel import PanelResult
from genesel.selectors.base import (
    PanelSelector,
    register_selector,
    training_loaders,
    warn_unconverged,
)
from genesel.selectors.reconstruction import reconstruction_mse
from genesel.store import Store
from genesel.training import Trainer, TrainerConfig, adam, seed_everything

logger = logging.getLogger(__name__)

#: File name of the per-epoch checkpoint inside ``work_dir``.
CHECKPOINT_NAME = "checkpoint.pt"
#: The panel counts as converged when the genes the mask opens at zero temperature number
#: ``K`` within this fraction (then at least 95 % of the panel is the mask's own decision).
OPEN_TOLERANCE = 0.05
_SQRT2 = math.sqrt(2.0)


def mask_converged(n_open: int, n_panel: int, tolerance: float = OPEN_TOLERANCE) -> bool:
    """Whether ``n_open`` genes open at zero temperature is ``n_panel`` within ``tolerance`` (at least one gene)."""
    return abs(n_open - n_panel) <= max(1.0, tolerance * n_panel)


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
    n_genes
        ``D``.
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

    def __init__(
        self,
        n_genes: int,
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
        forced_open: Sequence[int] = (),
        forced_closed: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.max_logit = None if max_logit is None else float(max_logit)
        if not gamma < 0 < 1 < eta:
            raise ConfigError(
                f"the stretch needs gamma < 0 and eta > 1, got gamma={gamma}, eta={eta}"
            )
        if not 0 < init_open < 1:
            raise ConfigError(f"init_open must be in (0, 1), got {init_open}")
        self.n_genes = int(n_genes)
        self.latent_dim = int(latent_dim)
        self.gamma = float(gamma)
        self.eta = float(eta)
        self.noise_scale = None if noise_scale is None else float(noise_scale)
        self.hypernetwork = bool(hypernetwork)
        offset = normal_quantile(init_open)
        if self.hypernetwork:
            self.embedding = nn.Parameter(torch.randn(n_genes, embedding_dim))
            self.hyper = nn.Sequential(
                nn.Linear(embedding_dim, hyper_hidden),
                make_activation("leaky_relu"),
                nn.Linear(hyper_hidden, latent_dim + 1),
            )
            with torch.no_grad():
                self.hyper[-1].weight[latent_dim].mul_(
                    0.1
                )  # gates start alike, embeddings differentiate them
                weight, bias = self.weight_and_bias()
                self.hyper[-1].bias[latent_dim] += offset * float(
                    torch.linalg.vector_norm(weight, dim=1).mean()
                ) - float(bias.mean())
        else:
            self.weight = nn.Parameter(torch.randn(n_genes, latent_dim) / math.sqrt(latent_dim))
            self.bias = nn.Parameter(torch.zeros(n_genes))
            with torch.no_grad():
                weight, _ = self.weight_and_bias()
                self.bias.copy_(offset * torch.linalg.vector_norm(weight, dim=1))
        self.register_buffer("temperature", torch.tensor(1.0))
        # not persistent: the selector's constraints, not learned state (checkpoints keep their layout)
        opened = torch.zeros(n_genes, dtype=torch.bool)
        opened[torch.as_tensor(np.asarray(forced_open, dtype=np.int64))] = True
        closed = torch.zeros(n_genes, dtype=torch.bool)
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
        """``W`` (genes x d, rows of norm ``noise_scale``) and ``b`` (genes, ``|b_i| <=
        max_logit ||W_i||``).
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

    def top_genes(self, k: int) -> torch.Tensor:
        """The ``k`` genes most likely open at zero temperature, most likely first."""
        logit = self.ranking_logit().detach()
        order = np.lexsort((np.arange(self.n_genes), -logit.cpu().double().numpy()))
        return torch.as_tensor(order[:k], device=logit.device)


class LogitNormalAutoencoder(nn.Module):
    """Trainer task: mask ``x`` with a sampled gate vector, reconstruct all genes.

    Parameters
    ----------
    mask
        The gate distribution.
    decoder
        All genes (masked) -> all genes.
    n_panel
        ``K``: validation and the final model read the deterministic top-``K`` mask, and
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

    def __init__(
        self,
        mask: LogitNormalMask,
        decoder: nn.Module,
        *,
        n_panel: int,
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
        self.n_panel = int(n_panel)
        self.controller_range = float(controller_range)
        self.anneal_fraction = float(anneal_fraction)
        self.start_temperature = float(start_temperature)
        self.end_temperature = float(end_temperature)
        self.mask_learning_rate = None if mask_learning_rate is None else float(mask_learning_rate)
        self.register_buffer("log_l0_weight", torch.tensor(math.log(l0_weight)))
        self.register_buffer("panel_mask", torch.zeros(mask.n_genes))
        with torch.no_grad():
            self.register_buffer(
                "initial_open", mask.open_probability().sum().clamp_min(float(n_panel))
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
        groups = [{"params": [p for p in self.decoder.parameters() if p.requires_grad]}]
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
            float(self.initial_open) * (self.n_panel / float(self.initial_open)) ** progress
        )

    def training_loss(self, batch: torch.Tensor) -> torch.Tensor:
        if self.fixed_panel:
            return ((self.decoder(batch * self.panel_mask) - batch) ** 2).mean()
        gates = self.mask.sample(batch.shape[0])
        reconstruction = ((self.decoder(batch * gates) - batch) ** 2).mean()
        return reconstruction + self.log_l0_weight.exp() * self.penalised_l0() / self.mask.n_genes

    def penalised_l0(self) -> torch.Tensor:
        """The expected L0 norm, each gate weighted by its relative cost when costs are given."""
        if self.gate_costs is None:
            return self.mask.expected_l0()
        return (self.mask.nonzero_probability() * self.gate_costs).sum()

    def expected_cost(self, probability: torch.Tensor) -> torch.Tensor:
        """Expected cost of the genes open at zero temperature (relative cost units)."""
        return (probability * self.gate_costs).sum()

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
        if self.budget is not None and self.gate_costs is not None:
            # the tighter of the two: K genes open, and their expected cost within the budget
            # (annealed as the count target is); the weight is the budget's Lagrange multiplier
            target_cost = self.budget * self.target_open / max(float(self.n_panel), 1.0)
            over = torch.log(
                self.expected_cost(probability).double().clamp_min(1e-3) / max(target_cost, 1e-3)
            )
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
        top = self.mask.top_genes(self.n_panel)
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


@register_selector
class LogitNormalSelector(PanelSelector):
    """Correlated logitNormal mask selector with free ``W, b`` (method ``"logitnormal"``).

    Parameters
    ----------
    n_genes
        Panel size ``K``.
    seed
        Seed of initialisation, shuffling and mask noise.
    decoder_hidden
        Hidden widths of the decoder (all genes -> all genes).
    activation, dropout
        Decoder nonlinearity and dropout.
    latent_dim
        ``d``, the rank of the gates' covariance.
    init_open
        Initial zero-temperature open probability of every gate (``None``: ``K / D``).
        Starting with few gates open matters: with many open the reconstruction gradient
        does not single out informative genes, whose signal the others also carry.
    gamma, eta
        Stretch interval of the gates.
    noise_scale, max_logit
        Bounds on the row norms of ``W`` and on ``|b_i| / ||W_i||`` (see :class:`LogitNormalMask`).
    l0_weight
        Initial weight of ``E[L0] / D``.
    controller_range
        How far the controller may move the log weight over the run (0: keep ``l0_weight``).
    anneal_fraction
        Fraction of training over which the controller's target falls to ``K``.
    start_temperature, end_temperature
        Per-epoch exponential schedule of the temperature ``tau``.
    mask_learning_rate
        Adam learning rate of the gate parameters (``None``: the trainer's).
    finetune_epochs
        Then train the decoder alone on the fixed top-``K`` mask for at most this many epochs.
    finetune_patience
        Early-stopping patience of the fine-tuning.
    """

    method: ClassVar[str] = "logitnormal"
    trainable: ClassVar[bool] = True
    checkpoint_files: ClassVar[tuple[str, ...]] = (CHECKPOINT_NAME,)
    hypernetwork: ClassVar[bool] = False

    def __init__(
        self,
        *,
        n_genes: int,
        seed: int = 0,
        decoder_hidden: Sequence[int] = (200,),
        activation: str = "leaky_relu",
        dropout: float = 0.0,
        latent_dim: int = 32,
        init_open: float | None = 0.2,
        gamma: float = -0.1,
        eta: float = 1.1,
        noise_scale: float | None = 1.0,
        max_logit: float | None = 3.0,
        l0_weight: float = 0.1,
        controller_range: float = 20.0,
        anneal_fraction: float = 0.0,
        start_temperature: float = 0.3,
        end_temperature: float = 0.1,
        mask_learning_rate: float | None = 3e-3,
        finetune_epochs: int = 0,
        finetune_patience: int = 10,
    ) -> None:
        super().__init__(n_genes=n_genes, seed=seed)
        self.decoder_hidden = (
            [int(decoder_hidden)]
            if isinstance(decoder_hidden, int | np.integer)
            else [int(h) for h in decoder_hidden]
        )
        self.activation = str(activation)
        self.dropout = float(dropout)
        self.latent_dim = int(latent_dim)
        self.init_open = None if init_open is None else float(init_open)
        self.gamma = float(gamma)
        self.eta = float(eta)
        self.noise_scale = None if noise_scale is None else float(noise_scale)
        self.max_logit = None if max_logit is None else float(max_logit)
        self.l0_weight = float(l0_weight)
        self.controller_range = float(controller_range)
        self.anneal_fraction = float(anneal_fraction)
        self.start_temperature = float(start_temperature)
        self.end_temperature = float(end_temperature)
        self.mask_learning_rate = None if mask_learning_rate is None else float(mask_learning_rate)
        self.finetune_epochs = int(finetune_epochs)
        self.finetune_patience = int(finetune_patience)
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be at least 1, got {latent_dim}")
        if not self.l0_weight > 0:
            raise ConfigError(f"l0_weight must be positive, got {l0_weight}")
        if not 0.0 <= self.anneal_fraction <= 1.0:
            raise ConfigError(f"anneal_fraction must be in [0, 1], got {anneal_fraction}")
        if not (self.start_temperature > 0 and self.end_temperature > 0):
            raise ConfigError(
                f"temperatures must be positive, got {start_temperature}, {end_temperature}"
            )
        if self.noise_scale is not None and not self.noise_scale > 0:
            raise ConfigError(f"noise_scale must be positive or null, got {noise_scale}")
        self.model_: LogitNormalAutoencoder | None = None

    def _mask_options(self) -> dict[str, Any]:
        return {}

    def build_model(self, n_genes_total: int, *, seed: int) -> LogitNormalAutoencoder:
        """The untrained mask + decoder for ``n_genes_total`` genes, initialised from ``seed``."""
        init_open = self.init_open if self.init_open is not None else self.n_genes / n_genes_total
        # included gates stay open and excluded ones closed for the whole run
        forced = {
            "forced_open": self.constraints.include,
            "forced_closed": self.constraints.exclude,
        }
        with torch.random.fork_rng(devices=[]):
            seed_everything(seed, -2)
            mask = LogitNormalMask(
                n_genes_total,
                latent_dim=self.latent_dim,
                hypernetwork=self.hypernetwork,
                init_open=init_open,
                gamma=self.gamma,
                eta=self.eta,
                noise_scale=self.noise_scale,
                max_logit=self.max_logit,
                **forced,
                **self._mask_options(),
            )
            decoder = build_decoder(
                n_genes_total,
                n_genes_total,
                hidden=self.decoder_hidden,
                activation=self.activation,
                dropout=self.dropout,
            )
        return LogitNormalAutoencoder(
            mask,
            decoder,
            n_panel=self.n_genes,
            l0_weight=self.l0_weight,
            controller_range=self.controller_range,
            anneal_fraction=self.anneal_fraction,
            start_temperature=self.start_temperature,
            end_temperature=self.end_temperature,
            mask_learning_rate=self.mask_learning_rate,
            **self._cost_options(n_genes_total),
        )

    def _cost_options(self, n_genes_total: int) -> dict[str, Any]:
        """Gate costs relative to the candidates' mean cost, and the budget in those units."""
        fixed = self.constraints
        if fixed.costs is None:
            return {}
        scale = float(fixed.cost[fixed.candidate_mask(n_genes_total)].mean())
        return {
            "gate_costs": fixed.cost / scale,
            "budget": None if fixed.budget is None else fixed.budget / scale,
        }

    def select(
        self,
        store: Store,
        *,
        trainer: TrainerConfig | None = None,
        loader: LoaderConfig | None = None,
        work_dir: Path | None = None,
        resume: bool = False,
    ) -> PanelResult:
        """Train mask and decoder; return the ``K`` genes most likely open at zero temperature."""
        trainer, loader = self.training_configs(trainer, loader)
        self.check_panel_size(store)
        train, validation = training_loaders(
            store, trainer=trainer, loader=loader, method=self.method
        )
        model = self.build_model(store.n_vars, seed=trainer.seed)
        checkpoint = None if work_dir is None else Path(work_dir) / CHECKPOINT_NAME
        fit = Trainer(trainer, checkpoint_path=checkpoint, fingerprint=self.fingerprint()).fit(
            model, train, validation, resume=resume
        )
        history = fit.history
        probability = model.mask.open_probability().detach().cpu().numpy()
        logit = model.mask.ranking_logit().detach().cpu().numpy()
        fixed = self.constraints
        if fixed.budgeted:  # genes by open probability (ranking logit), taken while they fit
            panel = fixed.complete_within_budget(
                np.lexsort((np.arange(logit.size), -logit)), self.n_genes
            )
            model.freeze_panel(panel)
        else:
            model.freeze_panel()
        extra: dict[str, Any] = {
            "ranking": "zero-temperature open probability Phi(b_i / ||W_i||), descending",
            "best_epoch": int(fit.best_epoch),
            "best_validation_loss": float(fit.best_validation_loss),
            "epochs_trained": len(history),
            "stopped": fit.stopped,
            "seconds": float(fit.seconds),
            "n_open": int((probability > 0.5).sum()),
            "expected_open": float(probability.sum()),
            # converged: the mask has decided the panel (K genes open at zero temperature, within OPEN_TOLERANCE)
            "converged": mask_converged(int((probability > 0.5).sum()), self.n_genes),
        }
        if (
            fixed.budgeted and not extra["converged"]
        ):  # or: the open genes' cost is the budget, within OPEN_TOLERANCE
            open_cost = float(fixed.cost[probability > 0.5].sum())
            extra["converged"] = abs(open_cost - fixed.budget) <= OPEN_TOLERANCE * fixed.budget
        if not extra["converged"]:
            wanted = (
                f"{self.n_genes}"
                if not fixed.budgeted
                else f"{self.n_genes} or genes costing the budget {fixed.budget:g}"
            )
            warn_unconverged(
                self.method,
                {"steps": fit.steps},
                fix=f"the mask ended with {extra['n_open']} genes open instead of {wanted} (+-{OPEN_TOLERANCE:.0%}); train longer (--epochs / --min-steps)",
            )
        if self.finetune_epochs > 0:
            config = replace(
                trainer,
                max_epochs=self.finetune_epochs,
                patience=self.finetune_patience,
                progress=False,
            )
            tuned = Trainer(config).fit(model, train, validation)
            extra.update(
                finetune_epochs=len(tuned.history),
                finetune_validation_loss=float(tuned.best_validation_loss),
            )
        self.model_ = model.eval()
        include = self.constraints.include
        genes = torch.nonzero(model.panel_mask).flatten().cpu().numpy()
        genes = genes[~np.isin(genes, include)]
        genes = np.concatenate([include, genes[np.lexsort((genes, -logit[genes]))]])
        return PanelResult(
            method=self.method,
            n_genes=int(genes.size),
            seed=int(trainer.seed),
            gene_indices=genes,
            var=store.var,
            scores=np.where(np.isin(genes, include), np.nan, probability[genes]),
            history=history,
            state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
            extra=extra,
        )

    @torch.no_grad()
    def reconstruction_mse(
        self, store: Store, split: str, *, units: str = "standardized", batch_size: int = 1024
    ) -> float:
        """MSE of the decoder reading the deterministic top-``K`` mask, per gene and sample."""
        if self.model_ is None:
            raise ConfigError(f"{self.method}: call select() before reconstruction_mse()")
        model = self.model_.eval()
        device = model.panel_mask.device
        return reconstruction_mse(
            model.reconstruct, store, split, units=units, batch_size=batch_size, device=device
        )


@register_selector
class HyperLogitNormalSelector(LogitNormalSelector):
    """Correlated logitNormal masks whose ``W, b`` come from a hypernetwork (``"logitnormal-hnet"``).

    Each gene has a learned embedding; a small MLP maps it to the gene's row ``W_i`` and
    bias ``b_i``, so genes with similar embeddings share gate behaviour and the gates'
    parameters are coupled through the shared network.

    Parameters
    ----------
    n_genes, seed, decoder_hidden, activation, dropout, latent_dim, init_open, gamma, eta, noise_scale,
    max_logit, l0_weight, controller_range, anneal_fraction, start_temperature, end_temperature,
    mask_learning_rate, finetune_epochs, finetune_patience
        As for :class:`LogitNormalSelector`.
    embedding_dim
        Width of the per-gene embedding.
    hyper_hidden
        Hidden width of the hypernetwork.
    """

    method: ClassVar[str] = "logitnormal-hnet"
    hypernetwork: ClassVar[bool] = True

    def __init__(
        self,
        *,
        n_genes: int,
        seed: int = 0,
        decoder_hidden: Sequence[int] = (200,),
        activation: str = "leaky_relu",
        dropout: float = 0.0,
        latent_dim: int = 32,
        init_open: float | None = 0.2,
        gamma: float = -0.1,
        eta: float = 1.1,
        noise_scale: float | None = 1.0,
        max_logit: float | None = 3.0,
        l0_weight: float = 0.1,
        controller_range: float = 20.0,
        anneal_fraction: float = 0.0,
        start_temperature: float = 0.3,
        end_temperature: float = 0.1,
        mask_learning_rate: float | None = 3e-3,
        finetune_epochs: int = 0,
        finetune_patience: int = 10,
        embedding_dim: int = 32,
        hyper_hidden: int = 64,
    ) -> None:
        super().__init__(
            n_genes=n_genes,
            seed=seed,
            decoder_hidden=decoder_hidden,
            activation=activation,
            dropout=dropout,
            latent_dim=latent_dim,
            init_open=init_open,
            gamma=gamma,
            eta=eta,
            noise_scale=noise_scale,
            max_logit=max_logit,
            l0_weight=l0_weight,
            controller_range=controller_range,
            anneal_fraction=anneal_fraction,
            start_temperature=start_temperature,
            end_temperature=end_temperature,
            mask_learning_rate=mask_learning_rate,
            finetune_epochs=finetune_epochs,
            finetune_patience=finetune_patience,
        )
        self.embedding_dim = int(embedding_dim)
        self.hyper_hidden = int(hyper_hidden)

    def _mask_options(self) -> dict[str, Any]:
        return {"embedding_dim": self.embedding_dim, "hyper_hidden": self.hyper_hidden}
