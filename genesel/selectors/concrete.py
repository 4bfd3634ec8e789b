"""The CAE and IP-CAE panel selectors, registered as methods ``"cae"`` and ``"ipcae"``.

Concrete Autoencoder (CAE, Balin et al. 2019) and indirectly parameterised CAE (IP-CAE,
Nilsson et al. 2024). Both train a :class:`~genesel.selectors.concrete_autoencoder.ConcreteAutoencoder` (a concrete
selector layer of ``K`` nodes followed by a decoder reconstructing every gene, in
standardised units) with the shared :class:`~genesel.trainer.Trainer`, then give every
node a distinct gene (duplicates resolved deterministically, see
:func:`~genesel.selectors.concrete_layer.resolve_duplicate_selections`). Panel genes are
ranked by their node's maximum selection probability, highest first; ``score`` is that
probability.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from genesel.errors import ConfigError, option_name
from genesel.loader import LoaderConfig, MinibatchLoader
from genesel.panel import PanelResult
from genesel.selectors.base import register_selector, warn_unconverged
from genesel.selectors.concrete_autoencoder import GUMBEL_NOISE_MODES, ConcreteAutoencoder
from genesel.selectors.concrete_layer import (
    ANNEAL_MODES,
    CONVERGED_MEAN_MAX_PROBABILITY,
    W_FORMS,
    resolve_duplicate_selections,
    softmax_max_probability,
)
from genesel.selectors.trained import (
    TrainedModel,
    TrainedSelector,
    cpu_state,
    seeded_init,
)
from genesel.store import Store
from genesel.training import trainer_record

logger = logging.getLogger(__name__)

#: Default ``selector_lr`` (chosen by measurement, see docs/methods.md "Step budget and convergence").
DEFAULT_SELECTOR_LR = 0.1
#: Default trainer options of CAE and IP-CAE where the caller left them ``None``.
TRAINER_DEFAULTS = {"stop_when_converged": True, "min_steps": 1000, "converge_extension": 1.0}


@register_selector
class ConcreteSelector(TrainedSelector[ConcreteAutoencoder]):
    """Concrete Autoencoder selector (method ``"cae"``).

    Parameters
    ----------
    n_genes
        Panel size ``K``.
    seed
        Seed of initialisation, shuffling and Gumbel noise (the run's seed wins when given).
    decoder_hidden
        Hidden layer widths of the decoder; ``()`` is a linear decoder. The papers'
        benchmark protocol uses ``(200,)``.
    activation
        Hidden-layer nonlinearity (``leaky_relu`` has slope 0.2, as in the papers).
    dropout
        Dropout after each hidden layer.
    start_temperature, end_temperature
        Exponential temperature schedule ``T0 -> TB`` (papers: 10 -> 0.01).
    anneal
        Update the temperature per optimizer ``"step"`` over the trainer's planned step
        budget (default) or per ``"epoch"`` (the papers; the schedule then depends on the
        number of steps an epoch holds).
    selector_lr
        Adam learning rate of the selector layer's parameters (the decoder keeps the
        trainer's). A peaked softmax over ``D`` genes needs logit gaps of about
        ``log(D) + 5``, which Adam at 1e-3 reaches only after thousands of steps; see
        ``docs/methods.md``. ``None``: the trainer's learning rate.
    block_duplicates
        Once every node has peaked, move nodes that share a gene to their next-best gene during
        training (so the decoder adapts and the run can converge on distinct genes), rather
        than only when the panel is written. The papers do not (the presets set ``False``).
    gumbel_noise
        One Gumbel sample per ``"step"`` shared by the minibatch (default; affordable at the
        gene scale) or one per ``"sample"`` (the IP-CAE code; ``B x K x D`` values per step,
        better panels on small data such as ISOLET).
    """

    method: ClassVar[str] = "cae"
    #: No native cost form: the K selector nodes each pick one gene whatever it costs.
    supports_costs: ClassVar[bool] = False
    trainer_defaults: ClassVar[dict[str, Any]] = TRAINER_DEFAULTS
    #: Whether the logits are indirectly parameterised (IP-CAE).
    indirect: ClassVar[bool] = False

    def __init__(
        self,
        *,
        n_genes: int,
        seed: int = 0,
        decoder_hidden: Sequence[int] = (),
        activation: str = "leaky_relu",
        dropout: float = 0.0,
        start_temperature: float = 10.0,
        end_temperature: float = 0.01,
        anneal: str = "step",
        gumbel_noise: str = "step",
        selector_lr: float | None = DEFAULT_SELECTOR_LR,
        block_duplicates: bool = True,
    ) -> None:
        super().__init__(n_genes=n_genes, seed=seed)
        if self.n_genes < 1:
            raise ConfigError(f"n_genes must be at least 1, got {n_genes}", parameter="n_genes")
        if isinstance(decoder_hidden, int | np.integer):
            decoder_hidden = [int(decoder_hidden)]
        self.decoder_hidden = [int(size) for size in decoder_hidden]
        self.activation = str(activation)
        self.dropout = float(dropout)
        self.start_temperature = float(start_temperature)
        self.end_temperature = float(end_temperature)
        self.anneal = str(anneal)
        if self.anneal not in ANNEAL_MODES:
            raise ConfigError(
                f"anneal must be one of {ANNEAL_MODES}, got {anneal!r}", parameter="param:anneal"
            )
        self.gumbel_noise = str(gumbel_noise)
        if self.gumbel_noise not in GUMBEL_NOISE_MODES:
            raise ConfigError(
                f"gumbel_noise must be one of {GUMBEL_NOISE_MODES}, got {gumbel_noise!r}",
                parameter="param:gumbel_noise",
            )
        if not (self.start_temperature > 0 and self.end_temperature > 0):
            raise ConfigError(
                f"start_temperature and end_temperature must be positive, got {start_temperature}, {end_temperature}",
                parameter="param:start_temperature",
            )
        if selector_lr is not None and not float(selector_lr) > 0:
            raise ConfigError(
                f"selector_lr must be positive (or null for the trainer's learning rate), got {selector_lr}",
                parameter="param:selector_lr",
            )
        self.selector_lr = None if selector_lr is None else float(selector_lr)
        self.block_duplicates = bool(block_duplicates)
        self.model_: ConcreteAutoencoder | None = None
        self.node_genes_: np.ndarray | None = None

    # -- model --------------------------------------------------------------------
    def _model_options(self) -> dict[str, Any]:
        return {}

    def build_model(self, n_vars: int, *, seed: int) -> ConcreteAutoencoder:
        """Build the untrained network for ``n_vars`` genes, initialised from ``seed``.

        Included genes (:meth:`constrain`) are fixed decoder inputs ahead of ``n_genes`` minus
        their number concrete nodes; neither they nor excluded genes can be a node's choice.
        """
        with seeded_init(seed):
            return ConcreteAutoencoder(
                n_vars,
                self.n_free,
                indirect=self.indirect,
                decoder_hidden=self.decoder_hidden,
                activation=self.activation,
                dropout=self.dropout,
                start_temperature=self.start_temperature,
                end_temperature=self.end_temperature,
                anneal=self.anneal,
                gumbel_noise=self.gumbel_noise,
                selector_lr=self.selector_lr,
                block_duplicates=self.block_duplicates,
                fixed_genes=self.constraints.include,
                excluded_genes=self.constraints.exclude,
                **self._model_options(),
            )

    # -- selection ------------------------------------------------------------------
    def panel_from_model(
        self, store: Store, trained: TrainedModel[ConcreteAutoencoder]
    ) -> PanelResult:
        """Give every node a distinct gene and rank the panel by node maximum probability."""
        model, fit = trained.model, trained.fit
        self.model_ = model.eval()
        logits = model.logits().detach().cpu().numpy()
        argmax_genes = logits.argmax(axis=1)
        node_genes, order, n_resolved = resolve_duplicate_selections(logits)
        include = self.constraints.include
        self.node_genes_ = np.concatenate([include, node_genes])  # the decoder's inputs, in order
        max_probability = softmax_max_probability(logits)
        resolved_nodes = np.flatnonzero(node_genes != argmax_genes)
        if n_resolved:
            logger.warning(
                "%s: %d of %d nodes chose an already selected gene; gave them their next-best unused gene (nodes %s)",
                self.method,
                n_resolved,
                self.n_free,
                resolved_nodes.tolist()[:20],
            )
        history = fit.history
        unique_percent = 100.0 * len(np.unique(argmax_genes)) / self.n_free
        converged = bool(
            float(max_probability.mean()) >= CONVERGED_MEAN_MAX_PROBABILITY
            and unique_percent == 100.0
        )
        final_temperature = (
            float(history["temperature"].iloc[-1])
            if "temperature" in history and len(history)
            else model.temperature
        )
        extra = {
            "duplicates_resolved": int(n_resolved),
            "resolved_nodes": resolved_nodes.tolist(),
            "converged": converged,
            "unique_percent": unique_percent,
            "unique_percent_argmax": unique_percent,
            "node_genes": node_genes.tolist(),
            "ranking": "node maximum selection probability, descending",
            "mean_max_probability": float(max_probability.mean()),
            "final_temperature": final_temperature,
            "best_epoch": int(fit.best_epoch),
            "best_validation_loss": float(fit.best_validation_loss),
            "epochs_trained": len(history),
            "steps": int(fit.steps),
            "planned_steps": int(fit.planned_steps),
            "stopped": fit.stopped,
            "seconds": float(fit.seconds),
            "resumed_from_epoch": fit.resumed_from_epoch,
        }
        if not converged:
            warn_unconverged(
                self.method,
                extra,
                fix=(
                    f"train longer ({option_name('max_epochs')}, or {option_name('min_steps')} / "
                    f"{option_name('param:selector_lr')} for more or faster steps; "
                    f"{option_name('converge_extension')} to go on at the final temperature)"
                ),
            )
        return PanelResult(
            method=self.method,
            n_genes=self.n_genes,
            seed=int(trained.run.seed),
            config={"trainer": trainer_record(trained.trainer, trained.run)},
            gene_indices=np.concatenate([include, node_genes[order]]),
            var=store.var,
            scores=np.concatenate([np.full(include.size, np.nan), max_probability[order]]),
            history=history,
            state_dict=cpu_state(model),
            extra=extra,
        )

    @torch.no_grad()
    def reconstruction_mse(
        self, store: Store, split: str, *, resolve_duplicates: bool = True, batch_size: int = 1024
    ) -> float:
        """MSE of the trained decoder reconstructing all genes of ``split`` from the panel.

        Selection is hard (one-hot): node ``k`` reads its panel gene. With
        ``resolve_duplicates=False`` each node reads its argmax gene, duplicates included
        (how the IP-CAE paper evaluates). Standardised units, mean over samples and genes.
        """
        if self.model_ is None or self.node_genes_ is None:
            raise ConfigError(f"{self.method}: call select() before reconstruction_mse()")
        model = self.model_.eval()
        device = next(model.parameters()).device
        genes = self.node_genes_ if resolve_duplicates else model.input_genes().cpu().numpy()
        genes_t = torch.as_tensor(genes, device=device)
        loader = MinibatchLoader(
            store, split, config=LoaderConfig(batch_size=batch_size), shuffle=False, device=device
        )
        total, count = 0.0, 0
        for batch in loader:
            batch = batch.to(device).float()
            prediction = model.reconstruct(batch.index_select(1, genes_t)).float()
            total += float(((prediction - batch) ** 2).sum())
            count += batch.numel()
        return total / max(count, 1)


@register_selector
class IndirectConcreteSelector(ConcreteSelector):
    """Indirectly parameterised CAE selector (method ``"ipcae"``): ``logits = Psi W^T + b``.

    Parameters
    ----------
    n_genes, seed, decoder_hidden, activation, dropout, start_temperature, end_temperature, anneal, gumbel_noise, selector_lr, block_duplicates
        As for :class:`ConcreteSelector`.
    embedding_dim
        Width ``P`` of the node embedding ``Psi``; ``None`` means ``P = D`` (the paper).
    w_form
        ``"full"`` (``W`` is ``D x P``), ``"diagonal"`` or ``"scalar"`` (both need ``P = D``).
    gjsd_weight
        Weight of the generalised Jensen-Shannon diversity reward (0 = off, the paper's default).

    Notes
    -----
    ``selector_lr`` defaults to ``None`` (the trainer's rate) here: the indirect
    parameterisation already moves the logits fast, and a larger rate made the nodes agree
    within a few epochs, before the temperature had dropped (worse panels; see
    docs/methods.md).
    """

    method: ClassVar[str] = "ipcae"
    indirect: ClassVar[bool] = True

    def __init__(
        self,
        *,
        n_genes: int,
        seed: int = 0,
        decoder_hidden: Sequence[int] = (),
        activation: str = "leaky_relu",
        dropout: float = 0.0,
        start_temperature: float = 10.0,
        end_temperature: float = 0.01,
        anneal: str = "step",
        gumbel_noise: str = "step",
        selector_lr: float | None = None,
        block_duplicates: bool = True,
        embedding_dim: int | None = None,
        w_form: str = "full",
        gjsd_weight: float = 0.0,
    ) -> None:
        super().__init__(
            n_genes=n_genes,
            seed=seed,
            decoder_hidden=decoder_hidden,
            activation=activation,
            dropout=dropout,
            start_temperature=start_temperature,
            end_temperature=end_temperature,
            anneal=anneal,
            gumbel_noise=gumbel_noise,
            selector_lr=selector_lr,
            block_duplicates=block_duplicates,
        )
        if w_form not in W_FORMS:
            raise ConfigError(
                f"w_form must be one of {W_FORMS}, got {w_form!r}", parameter="param:w_form"
            )
        if embedding_dim is not None and int(embedding_dim) < 1:
            raise ConfigError(
                f"embedding_dim must be positive (or null for the number of genes), got {embedding_dim}",
                parameter="param:embedding_dim",
            )
        if float(gjsd_weight) < 0:
            raise ConfigError(
                f"gjsd_weight must be >= 0, got {gjsd_weight}", parameter="param:gjsd_weight"
            )
        self.embedding_dim = None if embedding_dim is None else int(embedding_dim)
        self.w_form = str(w_form)
        self.gjsd_weight = float(gjsd_weight)

    def _model_options(self) -> dict[str, Any]:
        return {
            "embedding_dim": self.embedding_dim,
            "w_form": self.w_form,
            "gjsd_weight": self.gjsd_weight,
        }
