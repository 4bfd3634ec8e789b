"""The ``genesel`` command line stays light until a command runs."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_building_the_parser_does_not_import_torch():
    code = "import sys; from genesel.cli.main import build_parser; build_parser(); print(sorted(m for m in ('torch', 'genesel.selectors.base') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]", f"parser build imported {out}"


def test_method_table_matches_the_registered_selectors():
    from genesel.selectors import available_methods, get_selector_class

    for method in available_methods():
        assert get_selector_class(method).method == method


def test_select_help_teaches_the_methods_and_their_params(capsys):
    from genesel.cli.main import main
    from genesel.selectors.methods import METHOD_MODULES, METHOD_SUMMARIES

    assert set(METHOD_SUMMARIES) == set(METHOD_MODULES)
    with pytest.raises(SystemExit):
        main(["select", "--help"])
    text = capsys.readouterr().out
    for method, line in METHOD_SUMMARIES.items():
        assert f"  {method:<17} {line}" in text
    assert main(["select", "--method", "greedy", "--help-params"]) == 0
    params = capsys.readouterr().out
    assert "--param ridge=" in params and "--param criterion=" in params
    assert (
        main(["-q", "select", "--method", "cae"]) == 1
    )  # --data, --n-genes, --out missing: one clear error


def test_a_bad_training_option_names_its_flag(planted_store, tmp_path, caplog):
    from genesel.cli.main import main

    store, _ = planted_store
    common = ["select", "--data", str(store.path), "--method", "cae", "--n-genes", "3"]
    for flag, value in (("--epochs", "0"), ("--lr", "-1"), ("--min-steps", "-1")):
        caplog.clear()
        assert main([*common, flag, value, "--out", str(tmp_path / "out")]) == 1
        assert f"(command line: {flag})" in caplog.text
