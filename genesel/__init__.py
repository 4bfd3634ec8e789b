"""genesel: design reduced gene panels and impute whole transcriptomes from them."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = ("tl", "pl", "io")


def __getattr__(name: str) -> Any:
    """Import the scanpy-style namespaces lazily, keeping ``import genesel`` light."""
    if name in _SUBMODULES:
        return importlib.import_module(f"genesel.{name}")
    raise AttributeError(f"module 'genesel' has no attribute {name!r}")


__all__ = ["__version__", *_SUBMODULES]
