"""Impute whole transcriptomes from a gene panel: linear, D-GEX MLP and KNN decoders.

The names below are imported on first use, so that ``genesel.impute.decoders`` (the list of
decoders, used by the command line to build its parser) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Where each public name lives (imported on first use).
_HOMES = {
    "Decoder": "genesel.impute.base",
    "DecoderFit": "genesel.impute.base",
    "get_decoder_class": "genesel.impute.base",
    "make_decoder": "genesel.impute.base",
    "register_decoder": "genesel.impute.base",
    "available_decoders": "genesel.impute.decoders",
    "fit_imputer": "genesel.impute.fit",
    "match_columns": "genesel.impute.genes",
    "resolve_panel": "genesel.impute.genes",
    "KNNDecoder": "genesel.impute.knn",
    "NearestNeighborImputer": "genesel.impute.knn",
    "fit_knn": "genesel.impute.knn",
    "LinearDecoder": "genesel.impute.linear",
    "LinearSolution": "genesel.impute.lstsq",
    "NormalEquations": "genesel.impute.linear",
    "fit_linear": "genesel.impute.linear",
    "solve_normal_equations": "genesel.impute.lstsq",
    "MLPDecoder": "genesel.impute.mlp",
    "PanelDecoderTask": "genesel.impute.mlp",
    "ImputationModel": "genesel.impute.model",
    "load_model": "genesel.impute.saved",
    "save_model": "genesel.impute.saved",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'genesel.impute' has no attribute {name!r}")
