"""Scanpy-style tools: ``genesel.tl.select_panel(adata, ...)`` and friends (re-exports only)."""

from genesel.tl._curve import panel_curve
from genesel.tl._evaluate import evaluate
from genesel.tl._impute import fit_imputer, impute
from genesel.tl._prepare import prepare
from genesel.tl._select import select_panel

__all__ = ["evaluate", "fit_imputer", "impute", "panel_curve", "prepare", "select_panel"]
