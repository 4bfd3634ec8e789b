"""The Concrete Autoencoder: a concrete selector layer in front of a decoder of all genes.

:class:`ConcreteAutoencoder` is a :class:`genesel.training.TrainingTask` (it implements the
trainer hooks: annealing, duplicate blocking, convergence); the selectors in
:mod:`genesel.selectors.concrete` build it from a store. Pure math: nothing here reads a
store or writes a file.

Shapes: ``K`` selector nodes (panel size), ``D`` genes, ``B`` samples per minibatch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genesel.decoders import build_decoder
from genesel.errors import ConfigError
from genesel.selectors.concrete_layer import (
    ANNEAL_MODES,
    CONVERGED_MEAN_MAX_PROBABILITY,
    DirectLogits,
    IndirectLogits,
    annealed_temperature,
    generalized_jensen_shannon,
)
from genesel.training import adam

#: How Gumbel noise is drawn: one ``K x D`` sample per step, or one per sample (``B x K x D``).
GUMBEL_NOISE_MODES = ("step", "sample")
#: Largest per-sample selection tensor (``B x K x D`` elements) allowed in one step.
MAX_PER_SAMPLE_ELEMENTS = 1 << 28
#: Logit of a gene no node may choose (included in the panel already, or excluded). Finite, so
#: that the softmax gives it exactly zero probability without NaNs in the GJSD or the gradients.
MASKED_LOGIT = -1e30


class ConcreteAutoencoder(nn.Module):
    """A concrete selector layer followed by a decoder that reconstructs all genes.

    Training draws Gumbel noise from torch's global generator (which the trainer seeds per
    epoch) and selects ``x @ softmax((logits + g) / T)^T``: by default one ``K x D`` sample
    per step, shared by the minibatch (the CAE's reference code; the only affordable choice
    at the gene scale), or one per sample (``gumbel_noise="sample"``, the IP-CAE code;
    ``B x K x D`` values per step, lower-variance gradients on small data). In eval mode every node takes its argmax gene
    (one-hot); the argmax is computed once per evaluation and cached.

    Parameters
    ----------
    n_vars
        ``D``, all genes of the data (the decoder's outputs).
    n_genes
        ``K``, the concrete nodes: the panel size less its fixed genes.
    indirect
        Use IP-CAE's :class:`IndirectLogits` instead of free logits.
    embedding_dim, w_form
        IP-CAE options, see :class:`IndirectLogits`.
    decoder_hidden, activation, dropout
        Decoder architecture (see :func:`genesel.decoders.build_decoder`).
    start_temperature, end_temperature
        Temperature schedule ``T0 -> TB``.
    anneal
        ``"step"`` (default: over the trainer's planned step budget) or ``"epoch"`` (the papers).
    selector_lr
        Adam learning rate of the selector's parameters (the logits, or IP-CAE's ``Psi``,
        ``W``, ``b``); ``None``: the trainer's learning rate, as for the decoder.
    block_duplicates
        When an epoch ends with every node peaked (mean max probability >= 0.99) but some
        nodes on a gene another node holds, take that gene out of each such node's choice
        (all but the most confident holder), so it moves to its next-best gene and the
        decoder adapts; see :meth:`on_epoch_end`.
    gjsd_weight
        Weight of the diversity reward: the loss is ``MSE - gjsd_weight * GJSD``.
    gumbel_noise
        ``"step"`` (one noise sample per step) or ``"sample"`` (one per sample).
    fixed_genes
        Genes the panel includes whatever the training does: the decoder reads them first,
        before the ``n_genes`` concrete nodes, and no node may choose them.
    excluded_genes
        Genes no node may choose (their logits are masked).
    """

    #: Buffers (see ``__init__``): the fixed genes, the genes no node may choose, and the
    #: (node, gene) pairs blocked by :meth:`on_epoch_end`.
    fixed_genes: torch.Tensor
    masked_genes: torch.Tensor
    blocked: torch.Tensor

    def __init__(
        self,
        n_vars: int,
        n_genes: int,
        *,
        indirect: bool = False,
        embedding_dim: int | None = None,
        w_form: str = "full",
        decoder_hidden: Sequence[int] = (),
        activation: str = "leaky_relu",
        dropout: float = 0.0,
        start_temperature: float = 10.0,
        end_temperature: float = 0.01,
        anneal: str = "step",
        gjsd_weight: float = 0.0,
        gumbel_noise: str = "step",
        selector_lr: float | None = None,
        block_duplicates: bool = False,
        fixed_genes: Sequence[int] | np.ndarray = (),
        excluded_genes: Sequence[int] | np.ndarray = (),
    ) -> None:
        super().__init__()
        if gumbel_noise not in GUMBEL_NOISE_MODES:
            raise ConfigError(
                f"gumbel_noise must be one of {GUMBEL_NOISE_MODES}, got {gumbel_noise!r}",
                parameter="param:gumbel_noise",
            )
        if not 1 <= n_genes < n_vars:
            raise ConfigError(
                f"the panel size must be between 1 and {n_vars - 1} (the number of genes - 1), got {n_genes}",
                parameter="n_genes",
            )
        if anneal not in ANNEAL_MODES:
            raise ConfigError(
                f"anneal must be one of {ANNEAL_MODES}, got {anneal!r}", parameter="param:anneal"
            )
        if not (start_temperature > 0 and end_temperature > 0):
            raise ConfigError(
                f"temperatures must be positive, got {start_temperature} -> {end_temperature}",
                parameter="param:start_temperature",
            )
        if gjsd_weight < 0:
            raise ConfigError(
                f"gjsd_weight must be >= 0, got {gjsd_weight}", parameter="param:gjsd_weight"
            )
        if selector_lr is not None and not selector_lr > 0:
            raise ConfigError(
                f"selector_lr must be positive, got {selector_lr}", parameter="param:selector_lr"
            )
        self.selector_lr = None if selector_lr is None else float(selector_lr)
        self.n_vars, self.n_genes = int(n_vars), int(n_genes)
        self.selector: DirectLogits | IndirectLogits
        if indirect:
            self.selector = IndirectLogits(
                n_genes, n_vars, embedding_dim=embedding_dim, w_form=w_form
            )
        else:
            self.selector = DirectLogits(n_genes, n_vars)
        fixed = torch.as_tensor(np.asarray(fixed_genes, dtype=np.int64))
        masked = torch.zeros(n_vars, dtype=torch.bool)
        masked[fixed] = True
        masked[torch.as_tensor(np.asarray(excluded_genes, dtype=np.int64))] = True
        if int((~masked).sum()) < n_genes:
            raise ConfigError(
                f"{n_genes} concrete nodes but only {int((~masked).sum())} genes neither included nor excluded"
            )
        # not persistent: they are the selector's constraints, not learned state (checkpoints keep their layout)
        self.register_buffer("fixed_genes", fixed, persistent=False)
        self.register_buffer("masked_genes", masked, persistent=False)
        self._any_masked = bool(masked.any())
        self.decoder = build_decoder(
            n_genes + fixed.numel(),
            n_vars,
            hidden=tuple(decoder_hidden),
            activation=activation,
            dropout=dropout,
        )
        self.start_temperature = float(start_temperature)
        self.end_temperature = float(end_temperature)
        self.anneal = anneal
        self.gjsd_weight = float(gjsd_weight)
        self.gumbel_noise = gumbel_noise
        self.temperature = self.start_temperature
        self._eval_genes: torch.Tensor | None = None
        self.block_duplicates = bool(block_duplicates)
        # (node, gene) pairs taken out of a node's choice after it converged onto a gene another
        # node holds; only allocated when used (K x D booleans: 10 MB at the gene scale)
        self.register_buffer(
            "blocked",
            torch.zeros((n_genes, n_vars) if block_duplicates else (0, 0), dtype=torch.bool),
        )

    # -- selection ------------------------------------------------------------
    def logits(self) -> torch.Tensor:
        """The ``K x D`` node logits, in float32 even under autocast."""
        with torch.autocast(self._device_type(), enabled=False):
            logits = self.selector().float()
        if self._any_masked:
            logits = logits.masked_fill(self.masked_genes, MASKED_LOGIT)
        if self.block_duplicates:
            logits = logits.masked_fill(self.blocked, -math.inf)
        return logits

    @torch.no_grad()
    def selected_genes(self) -> torch.Tensor:
        """Argmax gene of every node (may contain duplicates)."""
        return self.logits().argmax(dim=1)

    @torch.no_grad()
    def input_genes(self) -> torch.Tensor:
        """The genes the decoder reads in eval mode: the fixed genes, then every node's argmax."""
        return torch.cat([self.fixed_genes, self.selected_genes()])

    def _with_fixed(self, batch: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        """``selected`` (``B x K``) preceded by the fixed genes' values."""
        if self.fixed_genes.numel() == 0:
            return selected
        return torch.cat(
            [batch.index_select(1, self.fixed_genes).to(selected.dtype), selected], dim=1
        )

    def select(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return the ``B x (fixed + K)`` decoder inputs (and the logits when training)."""
        if not self.training:
            if self._eval_genes is None:
                self._eval_genes = self.input_genes()
            return batch.index_select(1, self._eval_genes), None
        logits = self.logits()
        if self.gumbel_noise == "sample":
            return self._with_fixed(batch, self._select_per_sample(batch, logits)), logits
        gumbel = -torch.empty_like(logits).exponential_().log()
        weights = torch.softmax((logits + gumbel) / self.temperature, dim=1)
        with torch.autocast(self._device_type(), enabled=False):
            return self._with_fixed(batch, batch.float() @ weights.t()), logits

    def _select_per_sample(self, batch: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Selected values with an independent Gumbel draw for every sample (``B x K x D``)."""
        n_elements = batch.shape[0] * logits.numel()
        if n_elements > MAX_PER_SAMPLE_ELEMENTS:
            raise ConfigError(
                f"gumbel_noise='sample' needs {batch.shape[0]} x {self.n_genes} x {self.n_vars} values per step "
                f"({4 * n_elements / 2**30:.1f} GiB, limit {4 * MAX_PER_SAMPLE_ELEMENTS / 2**30:.0f} GiB); "
                "use gumbel_noise='step' or a smaller batch",
                parameter="param:gumbel_noise",
            )
        gumbel = (
            -torch.empty((batch.shape[0], *logits.shape), device=logits.device)
            .exponential_()
            .log()
        )
        weights = torch.softmax((logits.unsqueeze(0) + gumbel) / self.temperature, dim=2)
        with torch.autocast(self._device_type(), enabled=False):
            return torch.bmm(weights, batch.float().unsqueeze(2)).squeeze(2)

    def reconstruct(self, panel_values: torch.Tensor) -> torch.Tensor:
        """Decode ``B x (fixed + K)`` panel values (fixed genes, then node order) to ``B x D`` genes."""
        return self.decoder(panel_values)

    # -- TrainingTask ------------------------------------------------------------
    def training_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """MSE of reconstructing all genes, minus the weighted GJSD diversity term."""
        selected, logits = self.select(batch)
        loss = F.mse_loss(self.reconstruct(selected).float(), batch.float())
        if self.gjsd_weight > 0 and logits is not None:
            loss = loss - self.gjsd_weight * generalized_jensen_shannon(logits)
        return loss

    def validation_loss(self, batch: torch.Tensor) -> torch.Tensor:
        """MSE of reconstructing all genes from the argmax (one-hot) selection."""
        selected, _ = self.select(batch)
        return F.mse_loss(self.reconstruct(selected).float(), batch.float())

    def train(self, mode: bool = True) -> ConcreteAutoencoder:
        """Switch mode; leaving eval mode forgets the cached argmax genes."""
        self._eval_genes = None
        return super().train(mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # noqa: D102 - torch's
        self._eval_genes = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def configure_optimizer(self, lr: float) -> torch.optim.Optimizer | None:
        """Adam with the decoder at ``lr`` and the selector at ``selector_lr`` (``None``: the trainer's default)."""
        if self.selector_lr is None:
            return None
        groups = [
            {"params": list(self.decoder.parameters()), "lr": lr},
            {"params": list(self.selector.parameters()), "lr": self.selector_lr},
        ]
        return adam(groups, lr)

    def on_epoch_start(self, epoch: int, n_epochs: int) -> None:
        """Per-epoch annealing: ``T(e) = T0 (TB/T0)^(e/(E-1))``, reaching TB in the last epoch."""
        if self.anneal == "epoch":
            self.temperature = annealed_temperature(
                epoch / max(n_epochs - 1, 1),
                start=self.start_temperature,
                end=self.end_temperature,
            )

    def on_step_start(self, step: int, total_steps: int) -> None:
        """Per-step annealing: ``T(s) = T0 (TB/T0)^(s/(S-1))`` over the ``S`` planned steps.

        Steps beyond the plan (a convergence extension) stay at ``TB``.
        """
        if self.anneal == "step":
            self.temperature = annealed_temperature(
                step / max(total_steps - 1, 1),
                start=self.start_temperature,
                end=self.end_temperature,
            )

    @torch.no_grad()
    def epoch_metrics(self) -> dict[str, float]:
        """Temperature, unique argmax genes (percent of K) and mean max probability."""
        logits = self.logits()
        probabilities = torch.softmax(logits, dim=1)
        genes = logits.argmax(dim=1)
        metrics = {
            "temperature": self.temperature,
            "unique_percent": 100.0 * int(torch.unique(genes).numel()) / self.n_genes,
            "mean_max_probability": float(probabilities.max(dim=1).values.mean()),
        }
        if self.gjsd_weight > 0:
            metrics["gjsd"] = float(generalized_jensen_shannon(logits))
        return metrics

    @torch.no_grad()
    def on_epoch_end(self, metrics: dict[str, float]) -> None:
        """With ``block_duplicates``: block duplicate nodes' shared gene once all nodes have peaked.

        Peaked duplicate nodes no longer move (the softmax is saturated), so without this a
        run can end with nodes that add nothing. Nodes are visited as in
        :func:`resolve_duplicate_selections` (most confident first); every later node on a
        taken gene gets that gene blocked (logit ``-inf``) and so reads its next-best gene.
        """
        if (
            not self.block_duplicates
            or metrics.get("mean_max_probability", 0.0) < CONVERGED_MEAN_MAX_PROBABILITY
        ):
            return
        if metrics.get("unique_percent", 100.0) >= 100.0:
            return
        logits = self.logits()
        genes = logits.argmax(dim=1).cpu().numpy()
        confidence = torch.softmax(logits, dim=1).max(dim=1).values.cpu().numpy()
        taken: set[int] = set()
        for node in np.lexsort((np.arange(self.n_genes), -confidence)):
            gene = int(genes[node])
            if gene in taken:
                self.blocked[node, gene] = True
            taken.add(gene)
        self._eval_genes = None

    def converged(self, metrics: dict[str, float]) -> bool:
        """The CAE stopping rule (mean max probability >= 0.99), and every node on a distinct gene.

        Requiring distinct argmax genes keeps IP-CAE, whose nodes can agree early on one
        gene, from stopping while duplicates remain (measured on the demo data: stopping on
        the probability alone left 5-12% duplicate nodes and worse panels).
        """
        return (
            metrics.get("mean_max_probability", 0.0) >= CONVERGED_MEAN_MAX_PROBABILITY
            and metrics.get("unique_percent", 0.0) >= 100.0
        )

    def _device_type(self) -> str:
        return next(self.parameters()).device.type
