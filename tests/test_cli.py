"""The ``genesel`` command line stays light until a command runs."""

from __future__ import annotations

import subprocess
import sys


def test_building_the_parser_does_not_import_torch():
    code = "import sys; from genesel.cli.main import build_parser; build_parser(); print(sorted(m for m in ('torch', 'genesel.selectors.base') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"parser build imported {out}"


def test_method_table_matches_the_registered_selectors():
    from genesel.selectors import available_methods, get_selector_class

    for method in available_methods():
        assert get_selector_class(method).method == method
