"""Scanpy-style plots: ``genesel.pl.panel_curve(adata, ...)`` (re-exports only)."""

from genesel.pl._curve import panel_curve

__all__ = ["panel_curve"]
