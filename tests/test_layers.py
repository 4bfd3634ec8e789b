"""Which parts of genesel may import which: the layers of docs/architecture.md, enforced.

Every import of a genesel module is read from the source (module level and inside
functions; imports only for type checking are skipped), and each rule below names a
group of modules that must never import another group.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "genesel"

#: The foundations: data formats, the store, the panel file, the run settings. They serve
#: every layer above and know none of them.
FOUNDATION = (
    "genesel.errors",
    "genesel.usage",
    "genesel.run",
    "genesel.io",
    "genesel.panel",
    "genesel.split",
    "genesel.statistics",
    "genesel.transforms",
    "genesel.blocks",
    "genesel.store",
    "genesel.simulation",
    "genesel.simulate",
    "genesel.preprocess",
    "genesel.sweep_plan",
    "genesel.decoders",
)
#: The front doors: nothing below them imports them.
FRONT_DOORS = ("genesel.cli", "genesel.tl", "genesel.pl")
METHODS = ("genesel.selectors", "genesel.impute", "genesel.evaluate", "genesel.report")

#: (importer group, imported group, why not)
RULES = [
    (
        FOUNDATION,
        (*METHODS, *FRONT_DOORS, "genesel.trainer", "genesel.training"),
        "foundations know no method",
    ),
    (
        ("genesel.selectors",),
        ("genesel.impute", "genesel.evaluate", "genesel.report", *FRONT_DOORS),
        "a selector returns a panel; scoring it is someone else's job",
    ),
    (
        ("genesel.impute", "genesel.evaluate", "genesel.report"),
        FRONT_DOORS,
        "the front doors call the methods, not the reverse",
    ),
    (
        ("genesel.selectors", "genesel.impute", "genesel.report", "genesel.tl", "genesel.pl"),
        ("genesel.cli",),
        "only the command line knows its flags",
    ),
    (("genesel.tl",), ("genesel.pl",), "tl computes, pl draws"),
]


def _in(module: str, group: tuple[str, ...]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in group)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path) -> set[str]:
    """The genesel modules ``path`` imports, outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_lines(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("genesel"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("genesel"):
                found.add(node.module)
    return found


GRAPH = {_module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_the_graph_was_read() -> None:
    assert len(GRAPH) > 80
    assert "genesel.store" in GRAPH["genesel.selectors.base"]


@pytest.mark.parametrize(("importers", "imported", "why"), RULES, ids=[r[2] for r in RULES])
def test_no_import_breaks_a_layer(
    importers: tuple[str, ...], imported: tuple[str, ...], why: str
) -> None:
    broken = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if _in(module, importers)
        for target in targets
        if _in(target, imported) and not _in(target, importers)
    )
    assert not broken, f"{why}: {broken}"
