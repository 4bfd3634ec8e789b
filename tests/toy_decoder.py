"""A toy decoder, added as docs/extending.md says: this module plus one registry line.

``mean`` predicts every gene's train mean whatever the panel values (a baseline, and the
check that a decoder outside genesel runs through the command line and ``genesel.tl``).
The registry line is ``DECODER_MODULES["mean"] = "tests.toy_decoder"``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from genesel.impute.base import Decoder, DecoderFit, register_decoder
from genesel.loader import LoaderConfig
from genesel.run import RunConfig
from genesel.store import Store
from genesel.training import TrainerConfig


@register_decoder
class MeanDecoder(Decoder):
    """Predict the train mean of every gene.

    Parameters
    ----------
    shrink
        Multiply the prediction (in standardised units) by this.
    """

    name = "mean"

    def __init__(self, *, shrink: float = 1.0) -> None:
        self.shrink = float(shrink)

    def fit_module(
        self,
        store: Store,
        panel: np.ndarray,
        *,
        trainer: TrainerConfig | None,
        run: RunConfig,
        loader: LoaderConfig | None,
        work_dir: str | os.PathLike[str] | None,
        resume: bool,
    ) -> DecoderFit:
        """The train means of the standardised genes (about zero: the store standardises by them)."""
        rows = store.read_rows(store.require_split("train"))
        standardized = (rows.mean(axis=0, dtype=np.float64) * self.shrink).astype(np.float32)
        params = {"shrink": self.shrink}
        module = self.build_module(params, n_genes=len(panel), n_vars=store.n_vars, panel=panel)
        with torch.no_grad():
            module.bias.copy_(torch.from_numpy(standardized))
        return DecoderFit(module, params, {"toy": True})

    @classmethod
    def build_module(
        cls, params: dict[str, Any], *, n_genes: int, n_vars: int, panel: np.ndarray
    ) -> nn.Module:
        """A linear layer with zero weights (only its bias, the mean, matters)."""
        module = nn.Linear(n_genes, n_vars)
        nn.init.zeros_(module.weight)
        nn.init.zeros_(module.bias)
        return module
