"""Panel selectors, registered by method name (see :func:`select_panel`).

The names below are imported on first use, so that ``genesel.selectors.methods`` (the list of
methods, used by the command line to build its parser) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "PanelResult",
    "PanelSelector",
    "available_methods",
    "get_selector_class",
    "make_selector",
    "read_panel",
    "read_panel_metadata",
    "register_selector",
    "select_panel",
]


#: Where each public name lives (imported on first use).
_HOMES = {
    "PanelResult": "genesel.panel",
    "read_panel": "genesel.panel",
    "read_panel_metadata": "genesel.panel",
    "select_panel": "genesel.selectors.select",
}


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(_HOMES.get(name, "genesel.selectors.base")), name)
    raise AttributeError(f"module 'genesel.selectors' has no attribute {name!r}")
