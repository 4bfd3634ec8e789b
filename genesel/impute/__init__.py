"""Impute whole transcriptomes from a gene panel: linear, D-GEX MLP and KNN decoders."""

from genesel.impute.base import (
    Decoder,
    DecoderFit,
    get_decoder_class,
    make_decoder,
    register_decoder,
)
from genesel.impute.decoders import available_decoders
from genesel.impute.fit import fit_imputer
from genesel.impute.genes import match_columns, resolve_panel
from genesel.impute.knn import KNNDecoder, NearestNeighborImputer, fit_knn
from genesel.impute.linear import (
    LinearDecoder,
    LinearSolution,
    NormalEquations,
    fit_linear,
    solve_normal_equations,
)
from genesel.impute.mlp import MLPDecoder, PanelDecoderTask
from genesel.impute.model import ImputationModel
from genesel.impute.saved import load_model, save_model

__all__ = [
    "Decoder",
    "DecoderFit",
    "ImputationModel",
    "KNNDecoder",
    "LinearDecoder",
    "LinearSolution",
    "MLPDecoder",
    "NearestNeighborImputer",
    "NormalEquations",
    "PanelDecoderTask",
    "available_decoders",
    "fit_imputer",
    "fit_knn",
    "fit_linear",
    "get_decoder_class",
    "load_model",
    "make_decoder",
    "register_decoder",
    "resolve_panel",
    "match_columns",
    "save_model",
    "solve_normal_equations",
]
