"""Impute whole transcriptomes from a gene panel: linear, D-GEX MLP and KNN decoders."""

from genesel.impute.fit import fit_imputer
from genesel.impute.genes import match_columns, resolve_panel
from genesel.impute.knn import NearestNeighborImputer, fit_knn
from genesel.impute.linear import (
    LinearSolution,
    NormalEquations,
    fit_linear,
    solve_normal_equations,
)
from genesel.impute.mlp import PanelDecoderTask, fit_mlp
from genesel.impute.model import DECODERS, ImputationModel, load_model

__all__ = [
    "DECODERS",
    "ImputationModel",
    "LinearSolution",
    "NearestNeighborImputer",
    "NormalEquations",
    "PanelDecoderTask",
    "fit_imputer",
    "fit_knn",
    "fit_linear",
    "fit_mlp",
    "load_model",
    "match_columns",
    "resolve_panel",
    "solve_normal_equations",
]
