"""The names of the selection methods and the modules that register them (no torch import)."""

from __future__ import annotations

#: Method name -> module of ``genesel.selectors`` that registers it.
METHOD_MODULES: dict[str, str] = {
    "cae": "concrete",
    "ipcae": "concrete",
    "lassonet": "lassonet",
    "logitnormal": "logitnormal",
    "logitnormal-hnet": "logitnormal",
    "landmarks": "baselines",
    "random": "baselines",
    "hvg": "baselines",
    "qr": "qr",
    "greedy": "greedy",
}


#: One line per method for ``genesel select --help`` (kept here, without torch, for the parser).
METHOD_SUMMARIES: dict[str, str] = {
    "cae": "concrete autoencoder (Balin et al. 2019): K concrete nodes annealed to one gene each",
    "ipcae": "indirectly parameterised CAE (Nilsson et al. 2024), optional GJSD diversity reward",
    "lassonet": "unsupervised LassoNet: a hierarchical-lasso path, one panel per lambda",
    "logitnormal": "correlated logitNormal gates with an L0 penalty",
    "logitnormal-hnet": "logitNormal gates from a hypernetwork",
    "landmarks": "the L1000 landmark genes of the store (K must equal their number)",
    "random": "a seeded uniform draw: the baseline every method must beat",
    "hvg": "scanpy's highly variable genes on the train split",
    "qr": "regularised pivoted QR (Q-DEIM) on the denoised principal directions, completed greedily",
    "greedy": "exact greedy forward selection by the imputation error, from the moments (nested panels)",
}


def available_methods() -> tuple[str, ...]:
    """Method names: ``method`` of :func:`~genesel.selectors.select.select_panel` (``--method``)."""
    return tuple(METHOD_MODULES)
