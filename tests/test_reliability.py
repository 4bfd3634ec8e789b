"""No silent wrong result: one-line errors, nothing left behind, one writer per output."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import genesel.cli.main as cli
from genesel.io.atomic import removing_new_folders
from genesel.io.lock import OutputLockedError, lock_path, output_lock

ROOT = Path(__file__).resolve().parents[1]


def run(*argv) -> int:
    return cli.main(["-q", *map(str, argv)])


@pytest.fixture
def panel_file(planted_store, tmp_path):
    store, drivers = planted_store
    table = pd.DataFrame({"rank": np.arange(1, 6), "gene_id": store.var.index[drivers], "symbol": store.var["symbol"].iloc[drivers]})
    table.to_csv(tmp_path / "panel.tsv", sep="\t", index=False)
    return tmp_path / "panel.tsv"


def hold_lock(out: Path, kind: str, seconds: float) -> subprocess.Popen:
    """Start another process that holds the lock of ``out`` for ``seconds``; return once it holds it."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from genesel.io.lock import output_lock
        with output_lock({str(out)!r}, kind={kind!r}):
            print("held", flush=True)
            time.sleep({seconds})
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout.readline().strip() == "held"
    return process


# -- 5: one-line errors --------------------------------------------------------------------


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(planted_store, tmp_path, caplog):
    store, _ = planted_store
    argv = ["select", "--data", store.path, "--method", "cae", "--n-genes", 3, "--epochs", 1, "--param", "decoder_hidden=abc", "--out", tmp_path / "sel"]
    with caplog.at_level(logging.ERROR, logger="genesel"):
        assert run(*argv) == 1
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("genesel select failed: ValueError: invalid literal for int()") and "--debug" in lines[0]
    with pytest.raises(ValueError, match="invalid literal"):
        cli.main(["-q", "--debug", *map(str, argv)])


def test_a_full_disk_names_the_path_and_leaves_nothing(planted_store, panel_file, tmp_path, caplog, monkeypatch):
    import torch

    def no_space(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(torch, "save", no_space)
    out = tmp_path / "new" / "model"
    with caplog.at_level(logging.ERROR, logger="genesel"):
        assert run("impute", "fit", "--data", planted_store[0].path, "--panel", panel_file, "--out", out) == 1
    assert "disk full at " in caplog.text and "model.pt" in caplog.text
    assert not (tmp_path / "new").exists()
    assert cli.describe_error(RuntimeError("x").with_traceback(None)) == "genesel failed: RuntimeError: x (rerun with --debug for the traceback)"


# -- 6: no empty output folders --------------------------------------------------------------


def test_failed_commands_remove_the_folders_they_created(planted_store, panel_file, tmp_path, caplog):
    store, _ = planted_store
    bad_panel = tmp_path / "bad.tsv"
    bad_panel.write_text("rank\tgene_id\n1\tNOT_A_GENE\n")
    assert run("impute", "fit", "--data", store.path, "--panel", bad_panel, "--out", tmp_path / "a" / "model") == 1
    assert run("evaluate", "--data", store.path, "--model", tmp_path / "absent", "--out", tmp_path / "b" / "metrics.json") == 1
    assert run("preprocess", tmp_path / "absent.h5ad", "--out", tmp_path / "c" / "store.h5ad") == 1
    assert run("moments", "--data", tmp_path / "absent.h5ad", "--out", tmp_path / "d" / "moments.h5") == 1
    assert run("curve", "--data", store.path, "--moments", tmp_path / "absent.h5", "--random-panels", 1, "--random-sizes", 3, "--out", tmp_path / "e" / "metrics") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tsv", "panel.tsv", "planted.h5ad"]
    # a folder that existed before is kept, and so is anything with content
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError), removing_new_folders(tmp_path / "kept" / "x" / "y", tmp_path / "full" / "z"):
        (tmp_path / "kept" / "x" / "y").mkdir(parents=True)
        (tmp_path / "full" / "z").mkdir(parents=True)
        (tmp_path / "full" / "file").write_text("data")
        raise RuntimeError("boom")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [] and (tmp_path / "full" / "file").exists()
    assert not (tmp_path / "full" / "z").exists()


# -- 7: one writer per output ------------------------------------------------------------------


def test_a_second_run_on_a_locked_output_refuses_at_once(planted_store, panel_file, tmp_path, caplog):
    store, _ = planted_store
    out = tmp_path / "model"
    holder = hold_lock(out, "dir", 30)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="genesel"):
            assert run("impute", "fit", "--data", store.path, "--panel", panel_file, "--decoder", "knn", "--out", out) == 1
        assert time.monotonic() - started < 10
        assert f"{out}: another genesel run (PID {holder.pid} on " in caplog.text and "--wait" in caplog.text
        assert not (out / "model.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its process: the next run goes ahead and leaves no lock file behind
    assert run("impute", "fit", "--data", store.path, "--panel", panel_file, "--decoder", "knn", "--out", out) == 0
    assert (out / "model.json").exists() and not lock_path(out, "dir").exists()


def test_wait_queues_behind_the_other_run(tmp_path):
    out = tmp_path / "moments.h5"
    holder = hold_lock(out, "file", 1.0)
    try:
        with pytest.raises(OutputLockedError, match=f"PID {holder.pid}"):
            with output_lock(out, kind="file"):
                pass
        started = time.monotonic()
        with output_lock(out, kind="file", wait=True) as path:
            assert time.monotonic() - started > 0.3 and path == tmp_path / "moments.h5.lock"
            assert path.read_text().split()[0] == str(os.getpid())
    finally:
        holder.wait()
    assert list(tmp_path.iterdir()) == []
