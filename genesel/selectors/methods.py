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
    "qr": "baselines",
    "greedy": "greedy",
}


def available_methods() -> tuple[str, ...]:
    """Names accepted by ``--method``."""
    return tuple(METHOD_MODULES)
