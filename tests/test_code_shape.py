"""The shape of the package: module sizes, and which modules stay free of heavy imports.

ruff enforces the 60-statement cap per function (PLR0915 in pyproject.toml); these checks
cover what ruff cannot: the length of a module and what importing one drags in.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "genesel"
#: A module longer than this does more than one job (issue 16).
MAX_MODULE_LINES = 450


def test_no_module_over_the_line_cap() -> None:
    sizes = {
        str(path.relative_to(PACKAGE.parent)): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert len(sizes) > 50  # the walk found the package
    over = {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines: {over}"


@pytest.mark.parametrize(
    "statement",
    [
        # reading a panel, listing methods and building the command line never import torch
        "import genesel.panel",
        "import genesel.selectors.methods",
        "from genesel.cli.main import build_parser; build_parser()",
        "import genesel.run",
    ],
)
def test_light_modules_do_not_import_torch(statement: str) -> None:
    code = f"import sys; {statement}; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False", f"{statement!r} imports torch"
