"""Panel selectors, registered by method name (see :func:`select_panel`)."""

from genesel.selectors.base import (
    PanelResult,
    PanelSelector,
    available_methods,
    get_selector_class,
    make_selector,
    read_panel,
    register_selector,
    select_panel,
)

__all__ = [
    "PanelResult",
    "PanelSelector",
    "available_methods",
    "get_selector_class",
    "make_selector",
    "read_panel",
    "register_selector",
    "select_panel",
]
