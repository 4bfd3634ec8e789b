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


def test_hints_name_parameters_in_python_and_flags_on_the_command_line(tmp_path) -> None:
    import subprocess
    import sys

    import numpy as np
    import pandas as pd

    from genesel.errors import option_name, use_command_line_names

    before = use_command_line_names(False)
    try:
        assert option_name("max_epochs") == "max_epochs"
        assert option_name("log2", "no") == "log2='no'"
        assert option_name("param:ridge", 0.001) == "ridge=0.001"
        use_command_line_names(True)
        assert option_name("max_epochs") == "--epochs"
        assert option_name("log2", "no") == "--log2 no"
        assert option_name("force_log", True) == "--force-log"
        assert option_name("param:ridge", 0.001) == "--param ridge=0.001"
        # trainer options have flags of their own, even where a method sets their default
        assert option_name("min_steps") == "--min-steps"
        assert option_name("converge_extension") == "--converge-extension"
    finally:
        use_command_line_names(before)
    # a real command: already-logged data refused, the hint names the flags
    import anndata

    values = np.random.default_rng(0).uniform(2, 10, size=(30, 8)).astype(np.float32)
    anndata.AnnData(
        values,
        obs=pd.DataFrame(index=[f"s{i}" for i in range(30)]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(8)]),
    ).write_h5ad(tmp_path / "logged.h5ad")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "genesel.cli.main",
            "preprocess",
            str(tmp_path / "logged.h5ad"),
            "--out",
            str(tmp_path / "store.h5ad"),
            "--log2",
            "yes",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "--log2 no" in result.stderr and "--force-log" in result.stderr, result.stderr


def test_the_command_line_restores_python_names_after_a_command(tmp_path) -> None:
    from genesel.cli.main import main
    from genesel.errors import option_name

    assert main(["report", "--results", str(tmp_path / "missing")]) == 1  # a failing command
    assert option_name("max_epochs") == "max_epochs"
