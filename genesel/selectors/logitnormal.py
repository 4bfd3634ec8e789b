"""Correlated logitNormal mask selectors, registered as ``"logitnormal"`` and ``"logitnormal-hnet"``.

Dona & Gallinari, "Differentiable Feature Selection, a Reparameterization Approach",
ECML-PKDD 2021: ``"logitnormal"`` learns free ``W, b``, ``"logitnormal-hnet"`` produces
them with a hypernetwork.

Both train a :class:`~genesel.selectors.logitnormal_mask.LogitNormalAutoencoder` (a gate
distribution over all genes followed by a decoder reconstructing every gene, in standardised
units) with the shared :class:`~genesel.trainer.Trainer`; the panel is the ``K`` genes most
likely open at zero temperature. The gates' mathematics and sign conventions are described
in :mod:`genesel.selectors.logitnormal_mask`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import torch

from genesel.decoders import build_decoder
from genesel.errors import ConfigError, option_name
from genesel.panel import PanelResult
from genesel.selectors.base import register_selector, warn_unconverged
from genesel.selectors.logitnormal_mask import LogitNormalAutoencoder, LogitNormalMask
from genesel.selectors.reconstruction import reconstruction_mse
from genesel.selectors.trained import TrainedModel, TrainedSelector, cpu_state, seeded_init
from genesel.store import Store
from genesel.trainer import Trainer

logger = logging.getLogger(__name__)

#: The panel counts as converged when the genes the mask opens at zero temperature number
#: ``K`` within this fraction (then at least 95 % of the panel is the mask's own decision).
OPEN_TOLERANCE = 0.05


def mask_converged(n_open: int, n_genes: int, tolerance: float = OPEN_TOLERANCE) -> bool:
    """Whether ``n_open`` genes open at zero temperature is ``n_genes`` within ``tolerance`` (at least one gene)."""
    return abs(n_open - n_genes) <= max(1.0, tolerance * n_genes)


@register_selector
class LogitNormalSelector(TrainedSelector[LogitNormalAutoencoder]):
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
        checks = [
            ("latent_dim", self.latent_dim >= 1, "at least 1"),
            ("l0_weight", self.l0_weight > 0, "positive"),
            ("anneal_fraction", 0.0 <= self.anneal_fraction <= 1.0, "in [0, 1]"),
            ("start_temperature", self.start_temperature > 0, "positive"),
            ("end_temperature", self.end_temperature > 0, "positive"),
            ("noise_scale", self.noise_scale is None or self.noise_scale > 0, "positive or null"),
        ]
        for name, valid, expected in checks:
            if not valid:
                raise ConfigError(
                    f"{name} must be {expected}, got {getattr(self, name)!r}",
                    parameter=f"param:{name}",
                )
        self.model_: LogitNormalAutoencoder | None = None

    def _mask_options(self) -> dict[str, Any]:
        return {}

    def build_model(self, n_vars: int, *, seed: int) -> LogitNormalAutoencoder:
        """The untrained mask + decoder for ``n_vars`` genes, initialised from ``seed``."""
        init_open = self.init_open if self.init_open is not None else self.n_genes / n_vars
        with seeded_init(seed):
            mask = LogitNormalMask(
                n_vars,
                latent_dim=self.latent_dim,
                hypernetwork=self.hypernetwork,
                init_open=init_open,
                gamma=self.gamma,
                eta=self.eta,
                noise_scale=self.noise_scale,
                max_logit=self.max_logit,
                # included gates stay open and excluded ones closed for the whole run
                forced_open=self.constraints.include,
                forced_closed=self.constraints.exclude,
                **self._mask_options(),
            )
            decoder = build_decoder(
                n_vars,
                n_vars,
                hidden=self.decoder_hidden,
                activation=self.activation,
                dropout=self.dropout,
            )
        return LogitNormalAutoencoder(
            mask,
            decoder,
            n_genes=self.n_genes,
            l0_weight=self.l0_weight,
            controller_range=self.controller_range,
            anneal_fraction=self.anneal_fraction,
            start_temperature=self.start_temperature,
            end_temperature=self.end_temperature,
            mask_learning_rate=self.mask_learning_rate,
            **self._cost_options(n_vars),
        )

    def _cost_options(self, n_vars: int) -> dict[str, Any]:
        """Gate costs relative to the candidates' mean cost, and the budget in those units."""
        fixed = self.constraints
        cost = fixed.cost
        if cost is None:
            return {}
        scale = float(cost[fixed.candidate_mask(n_vars)].mean())
        return {
            "gate_costs": cost / scale,
            "budget": None if fixed.budget is None else fixed.budget / scale,
        }

    def panel_from_model(
        self, store: Store, trained: TrainedModel[LogitNormalAutoencoder]
    ) -> PanelResult:
        """Freeze the ``K`` genes most likely open at zero temperature and return them.

        With ``finetune_epochs`` the decoder is then trained alone on them. The panel lists
        the included genes first, then the others by open probability.
        """
        model, fit = trained.model, trained.fit
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
            "epochs_trained": len(fit.history),
            "stopped": fit.stopped,
            "seconds": float(fit.seconds),
            "n_open": int((probability > 0.5).sum()),
            "expected_open": float(probability.sum()),
            "converged": self._mask_decided(probability, steps=fit.steps),
        }
        if self.finetune_epochs > 0:
            extra.update(self._finetune(trained))
        self.model_ = model.eval()
        include = self.constraints.include
        genes = torch.nonzero(model.panel_mask).flatten().cpu().numpy()
        genes = genes[~np.isin(genes, include)]
        genes = np.concatenate([include, genes[np.lexsort((genes, -logit[genes]))]])
        return PanelResult(
            method=self.method,
            n_genes=int(genes.size),
            seed=int(trained.run.seed),
            gene_indices=genes,
            var=store.var,
            scores=np.where(np.isin(genes, include), np.nan, probability[genes]),
            history=fit.history,
            state_dict=cpu_state(model),
            extra=extra,
        )

    def _mask_decided(self, probability: np.ndarray, *, steps: int) -> bool:
        """Whether the mask has decided the panel; warns when it has not.

        Decided: ``K`` genes open at zero temperature (within :data:`OPEN_TOLERANCE`) or,
        with a budget, the open genes' cost is the budget (within the same tolerance).
        """
        is_open = probability > 0.5
        n_open = int(is_open.sum())
        decided = mask_converged(n_open, self.n_genes)
        cost, budget = self.constraints.cost, self.constraints.budget
        if budget is not None and cost is not None and not decided:
            decided = abs(float(cost[is_open].sum()) - budget) <= OPEN_TOLERANCE * budget
        if not decided:
            wanted = f"{self.n_genes}"
            if budget is not None:
                wanted += f" or genes costing the budget {budget:g}"
            warn_unconverged(
                self.method,
                {"steps": steps},
                fix=f"the mask ended with {n_open} genes open instead of {wanted} (+-{OPEN_TOLERANCE:.0%}); train longer ({option_name('max_epochs')} / {option_name('min_steps')})",
            )
        return decided

    def _finetune(self, trained: TrainedModel[LogitNormalAutoencoder]) -> dict[str, Any]:
        """Train the decoder alone on the frozen panel; its epochs and best validation loss."""
        config = replace(
            trained.trainer, max_epochs=self.finetune_epochs, patience=self.finetune_patience
        )
        tuned = Trainer(config, run=replace(trained.run, progress=False)).fit(
            trained.model, trained.train, trained.validation
        )
        return {
            "finetune_epochs": len(tuned.history),
            "finetune_validation_loss": float(tuned.best_validation_loss),
        }

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
