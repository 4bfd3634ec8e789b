"""No silent wrong result: fingerprinted resume, one-line errors, nothing left behind, one writer per output."""

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
import torch

import genesel.cli.main as cli
from genesel.errors import InputFileError
from genesel.impute import fit_imputer
from genesel.io.atomic import removing_new_folders
from genesel.io.lock import OutputLockedError, lock_path, output_lock
from genesel.loader import LoaderConfig
from genesel.run import RunConfig
from genesel.selectors.select import select_panel
from genesel.store import SPLITS, Store, StoreWriter
from genesel.training import TrainerConfig
from tests.conftest import planted_matrix

ROOT = Path(__file__).resolve().parents[1]


def run(*argv) -> int:
    return cli.main(["-q", *map(str, argv)])


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
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout.readline().strip() == "held"
    return process


# -- 1: resume only what this run started ------------------------------------------------------


def quick(epochs: int = 1, **options) -> dict:
    """Trainer and loader of a quick CPU selection (the fixed epoch budget, no convergence rule)."""
    options = {
        "learning_rate": 0.02,
        "min_steps": 0,
        "stop_when_converged": False,
        **options,
    }
    trainer = TrainerConfig(max_epochs=epochs, **options)
    run = RunConfig(device="cpu", progress=False)
    return {"trainer": trainer, "loader": LoaderConfig(batch_size=32), "run": run}


def write_permuted_store(path: Path, X: np.ndarray, order: np.ndarray) -> Path:
    """The planted store's samples and splits with its genes (ids and values together) in ``order``."""
    splits = np.random.default_rng(0).choice(
        np.array(SPLITS), size=X.shape[0], p=[0.7, 0.15, 0.15]
    )
    ids = np.array([f"ENSG{j:011d}" for j in range(X.shape[1])])[order]
    var = pd.DataFrame(
        {"symbol": [f"GENE{j}" for j in order], "landmark": False},
        index=pd.Index(ids, name="gene_id"),
    )
    with StoreWriter(
        path, var=var, split_sizes={name: int((splits == name).sum()) for name in SPLITS}
    ) as writer:
        writer.write_block(X[:, order], splits, [f"sample{i}" for i in range(X.shape[0])])
        writer.close(uns={})
    return path


@pytest.mark.parametrize("method", ["cae", "logitnormal"])
def test_a_selector_resumed_on_a_store_with_permuted_genes_refuses(
    planted_store, tmp_path, method
):
    store, _ = planted_store
    select_panel(store, method=method, n_genes=5, out_dir=tmp_path / "sel", **quick())
    checkpoint = tmp_path / "sel" / "checkpoint.pt"
    before = checkpoint.read_bytes()
    X, _ = planted_matrix(600, 40, 5, seed=3)  # the planted store's values
    order = np.random.default_rng(1).permutation(40)
    with Store.open(write_permuted_store(tmp_path / "permuted.h5ad", X, order)) as permuted:
        assert (
            sorted(permuted.gene_ids) == sorted(store.gene_ids) and permuted.n_obs == store.n_obs
        )
        with pytest.raises(
            InputFileError,
            match=r"other inputs \(checkpoint -> this run: store content \(gene ids, gene statistics or splits\) differs\)",
        ):
            select_panel(
                permuted,
                method=method,
                n_genes=5,
                out_dir=tmp_path / "sel",
                resume=True,
                **quick(),
            )
    assert checkpoint.read_bytes() == before, "a refused resume leaves the checkpoint as it was"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"loader": LoaderConfig(batch_size=64)}, "batch_size 32 -> 64"),
        ({"params": {"start_temperature": 5.0}}, "start_temperature 10.0 -> 5.0"),
        ({"trainer": quick(2)["trainer"]}, "max_epochs 1 -> 2"),
        ({"trainer": quick(1, learning_rate=0.01)["trainer"]}, "learning_rate 0.02 -> 0.01"),
        ({"seed": 3}, "seed 0 -> 3"),
    ],
)
def test_a_selection_resumed_with_other_options_refuses_naming_them(
    planted_store, tmp_path, change, named
):
    store, _ = planted_store
    select_panel(store, method="cae", n_genes=5, out_dir=tmp_path, **quick())
    options = {**quick(), "seed": 0, **change}
    with pytest.raises(
        InputFileError,
        match=rf"checkpoint was made with other inputs \(checkpoint -> this run: {named}\) \(start afresh: drop --resume",
    ):
        select_panel(store, method="cae", n_genes=5, out_dir=tmp_path, resume=True, **options)


def test_a_checkpoint_without_a_fingerprint_is_refused(planted_store, tmp_path):
    import torch

    store, _ = planted_store
    select_panel(store, method="cae", n_genes=5, out_dir=tmp_path, **quick())
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["fingerprint"]  # as written before genesel recorded one
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(
        InputFileError, match="checkpoint has no run fingerprint .written by an older genesel."
    ):
        select_panel(store, method="cae", n_genes=5, out_dir=tmp_path, resume=True, **quick())


def test_an_mlp_resumed_with_another_panel_or_architecture_refuses(
    planted_store, panel_file, tmp_path, caplog
):
    store, drivers = planted_store
    args = [
        "impute",
        "fit",
        "--data",
        store.path,
        "--decoder",
        "mlp",
        "--param",
        "hidden=[16]",
        "--device",
        "cpu",
        "--batch-size",
        64,
    ]
    out = tmp_path / "mlp"
    assert run(*args, "--panel", panel_file, "--out", out, "--epochs", 1, "--keep-checkpoint") == 0
    (out / "model.json").unlink()
    other = tmp_path / "other.tsv"
    others = [j for j in range(store.n_vars) if j not in drivers][:5]
    pd.DataFrame({"rank": np.arange(1, 6), "gene_id": store.gene_ids[others]}).to_csv(
        other, sep="\t", index=False
    )
    with caplog.at_level(logging.ERROR, logger="genesel"):
        assert run(*args, "--panel", other, "--out", out, "--epochs", 2, "--resume") == 1
        assert (
            run(
                *args[:-4],
                "--param",
                "hidden=[8]",
                *args[-4:],
                "--panel",
                panel_file,
                "--out",
                out,
                "--epochs",
                2,
                "--resume",
            )
            == 1
        )
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 2 and all(
        "\n" not in line
        and line.startswith(f"{out / 'checkpoint.pt'}: checkpoint was made with other inputs")
        for line in lines
    )
    assert "panel (5 of 5 entries differ)" in lines[0]
    assert "hidden [16] -> [8]" in lines[1]
    assert not (out / "model.json").exists() and (out / "checkpoint.pt").exists()
    # the same panel and architecture continue (the MLP may take a larger budget: it follows no schedule over it)
    assert run(*args, "--panel", panel_file, "--out", out, "--epochs", 2, "--resume") == 0
    assert json_of(out / "model.json")["training"]["resumed_from_epoch"] == 1


def test_an_mlp_checkpoint_past_the_budget_is_refused(planted_store, tmp_path):
    store, drivers = planted_store
    options = {
        "decoder": "mlp",
        "hidden": (16,),
        "loader": LoaderConfig(batch_size=64),
        "work_dir": tmp_path,
        "progress": False,
    }
    trainer = TrainerConfig(max_epochs=3, lr_decay=0.95)
    fit_imputer(store, drivers.tolist(), trainer=trainer, run=RunConfig(device="cpu"), **options)
    with pytest.raises(
        InputFileError,
        match=r"checkpoint has trained 3 epochs .* more than this run's budget .*resume with at least 3 epochs",
    ):
        fit_imputer(
            store,
            drivers.tolist(),
            trainer=TrainerConfig(max_epochs=2, lr_decay=0.95),
            run=RunConfig(device="cpu"),
            resume=True,
            **options,
        )


def test_resume_if_same_continues_a_matching_checkpoint_and_restarts_on_another(
    planted_store, tmp_path, caplog
):
    store, _ = planted_store
    args = [
        "select",
        "--data",
        store.path,
        "--method",
        "cae",
        "-k",
        5,
        "--device",
        "cpu",
        "--batch-size",
        32,
        "--min-steps",
        0,
        "--no-stop-when-converged",
        "--keep-checkpoint",
    ]
    assert run(*args, "--out", tmp_path / "fresh", "--epochs", 2) == 0
    assert run(*args, "--out", tmp_path / "a", "--epochs", 2) == 0
    assert (
        run(*args, "--out", tmp_path / "a", "--epochs", 2, "--resume-if-same") == 0
    )  # what the workflow passes
    assert json_of(tmp_path / "a" / "config.json")["extra"]["resumed_from_epoch"] == 2
    # a checkpoint of another budget (the schedule would differ) is deleted, and the run starts afresh
    assert run(*args, "--out", tmp_path / "b", "--epochs", 1) == 0
    with caplog.at_level(logging.WARNING, logger="genesel"):
        assert run(*args, "--out", tmp_path / "b", "--epochs", 2, "--resume-if-same") == 0
    assert (
        "other inputs (checkpoint -> this run: max_epochs 1 -> 2); deleting it and starting afresh"
        in caplog.text
    )
    assert json_of(tmp_path / "b" / "config.json")["extra"]["resumed_from_epoch"] is None
    assert (tmp_path / "b" / "panel.tsv").read_text() == (
        tmp_path / "fresh" / "panel.tsv"
    ).read_text()
    assert (tmp_path / "b" / "model.pt").read_bytes() == (
        tmp_path / "fresh" / "model.pt"
    ).read_bytes()
    with pytest.raises(SystemExit, match="2"):  # one or the other
        run(*args, "--out", tmp_path / "c", "--epochs", 2, "--resume", "--resume-if-same")


def json_of(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


# -- 5: one-line errors --------------------------------------------------------------------


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(
    planted_store, tmp_path, caplog
):
    store, _ = planted_store
    argv = [
        "select",
        "--data",
        store.path,
        "--method",
        "cae",
        "--n-genes",
        3,
        "--epochs",
        1,
        "--param",
        "decoder_hidden=abc",
        "--out",
        tmp_path / "sel",
    ]
    with caplog.at_level(logging.ERROR, logger="genesel"):
        assert run(*argv) == 1
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert (
        lines[0].startswith("genesel select failed: ValueError: invalid literal for int()")
        and "--debug" in lines[0]
    )
    with pytest.raises(ValueError, match="invalid literal"):
        cli.main(["-q", "--debug", *map(str, argv)])


def test_a_full_disk_names_the_path_and_leaves_nothing(
    planted_store, panel_file, tmp_path, caplog, monkeypatch
):
    import torch

    def no_space(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(f))

    monkeypatch.setattr(torch, "save", no_space)
    out = tmp_path / "new" / "model"
    with caplog.at_level(logging.ERROR, logger="genesel"):
        assert (
            run(
                "impute",
                "fit",
                "--data",
                planted_store[0].path,
                "--panel",
                panel_file,
                "--out",
                out,
            )
            == 1
        )
    assert "disk full at " in caplog.text and "model.pt" in caplog.text
    assert not (tmp_path / "new").exists()
    assert (
        cli.describe_error(RuntimeError("x").with_traceback(None))
        == "genesel failed: RuntimeError: x (rerun with --debug for the traceback)"
    )


# -- a really full disk: a small tmpfs -----------------------------------------------------------

#: Size of the tmpfs the disk-full test writes to.
SMALL_DISK = 1 << 20


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs mounted at ``tmp_path/disk`` (root only; skipped where mounting is not permitted)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK}", "tmpfs", str(disk)],
            check=False,
            capture_output=True,
            text=True,
        )
    except OSError as error:  # no mount command
        pytest.skip(f"cannot mount a tmpfs here ({error})")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'mount failed'})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` until about ``leave`` bytes are free."""
    stat = os.statvfs(disk)
    (disk / "filler").write_bytes(b"\0" * max(stat.f_bavail * stat.f_frsize - leave, 0))


def leftovers(disk: Path) -> list[str]:
    """Everything on ``disk`` but the filler, as paths relative to it (folders end in /)."""
    return sorted(
        str(p.relative_to(disk)) + ("/" if p.is_dir() else "")
        for p in disk.rglob("*")
        if p.name != "filler"
    )


@pytest.mark.parametrize("leave", [0, 24 << 10, 96 << 10, 320 << 10])
def test_a_full_disk_stops_preprocess_select_and_fit_with_one_line_and_nothing_half_written(
    planted_store, panel_file, small_disk, caplog, leave
):
    store, _ = planted_store
    X, _ = planted_matrix(600, 40, 5, seed=3)
    matrix = small_disk.parent / "matrix.csv"  # 600 x 40: a store of it needs more than 320 KiB
    pd.DataFrame(X, index=[f"s{i}" for i in range(600)], columns=store.gene_ids).to_csv(matrix)
    commands = {
        "preprocess": [
            "preprocess",
            matrix,
            "--log2",
            "no",
            "--out",
            small_disk / "store" / "store.h5ad",
        ],
        "select": [
            "select",
            "--data",
            store.path,
            "--method",
            "cae",
            "-k",
            5,
            "--epochs",
            3,
            "--min-steps",
            0,
            "--device",
            "cpu",
            "--param",
            "decoder_hidden=[64]",
            "--out",
            small_disk / "panel",
        ],
        "impute fit": [
            "impute",
            "fit",
            "--data",
            store.path,
            "--panel",
            panel_file,
            "--decoder",
            "mlp",
            "--param",
            "hidden=[256]",
            "--epochs",
            2,
            "--device",
            "cpu",
            "--out",
            small_disk / "model",
            "--metrics",
            small_disk / "model" / "metrics.json",
        ],
    }
    for name, argv in commands.items():
        for path in small_disk.iterdir():
            subprocess.run(["rm", "-rf", str(path)], check=True)
        fill(small_disk, leave)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="genesel"):
            code = run(*argv)
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        left = leftovers(small_disk)
        if code == 0:  # it fitted: complete outputs only
            assert not lines, (name, lines)
            continue
        assert code == 1 and len(lines) == 1 and "\n" not in lines[0], (name, lines)
        assert (
            lines[0].startswith(f"disk full at {small_disk}/")
            and "No space left on device" in lines[0]
        ), (name, lines[0])
        assert not [p for p in left if ".tmp-" in p], (name, left)  # no temporary files
        # nothing half-written, no empty folder: at most a checkpoint to resume from, with the best weights it refers to
        for folder in {p.split("/")[0] for p in left}:
            files = [p for p in left if p.startswith(f"{folder}/") and not p.endswith("/")]
            assert folder in ("panel", "model") and files, (name, left)
            state = torch.load(small_disk / folder / "checkpoint.pt", weights_only=True)
            assert sorted(files) == sorted(
                [f"{folder}/checkpoint.pt", f"{folder}/{state['best_file']}"]
            ), (name, left)


@pytest.mark.parametrize("stage", ["panel", "model", "metrics"])
def test_a_disk_that_fills_up_before_the_results_leaves_none_of_them(
    planted_store, panel_file, small_disk, caplog, monkeypatch, stage
):
    from genesel.evaluate import Evaluation
    from genesel.impute.model import ImputationModel
    from genesel.panel import PanelResult

    store, _ = planted_store
    cls, method = {
        "panel": (PanelResult, "write"),
        "model": (ImputationModel, "save"),
        "metrics": (Evaluation, "write"),
    }[stage]
    original = getattr(cls, method)

    def fill_then_write(self, *args, **kwargs):
        fill(small_disk, 4 << 10)  # room for a small table, not for the weights or all the tables
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, fill_then_write)
    if stage == "panel":
        argv = [
            "select",
            "--data",
            store.path,
            "--method",
            "cae",
            "-k",
            5,
            "--epochs",
            1,
            "--min-steps",
            0,
            "--device",
            "cpu",
            "--out",
            small_disk / "panel",
        ]
    else:
        argv = [
            "impute",
            "fit",
            "--data",
            store.path,
            "--panel",
            panel_file,
            "--decoder",
            "mlp",
            "--param",
            "hidden=[64]",
            "--epochs",
            1,
            "--device",
            "cpu",
            "--out",
            small_disk / "model",
            "--metrics",
            small_disk / "metrics" / "metrics.json",
        ]
    with caplog.at_level(logging.ERROR, logger="genesel"):
        assert run(*argv) == 1
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1 and lines[0].startswith(f"disk full at {small_disk}/"), lines
    left = [p for p in leftovers(small_disk) if not p.endswith("/")]
    folder = "panel" if stage == "panel" else "model"
    complete_model = (
        ["model/history.tsv", "model/model.json", "model/model.pt"] if stage == "metrics" else []
    )
    state = torch.load(
        small_disk / folder / "checkpoint.pt", weights_only=True
    )  # kept for --resume
    assert sorted(left) == sorted(
        [f"{folder}/checkpoint.pt", f"{folder}/{state['best_file']}", *complete_model]
    ), left
    if (
        complete_model
    ):  # written whole before the metrics failed: it loads (its weights match their digest)
        from genesel.impute import load_model

        assert load_model(small_disk / "model").n_genes == 5


def test_the_space_reserved_for_a_store_is_given_back(planted_store):
    store, _ = planted_store
    x_bytes = store.n_obs * store.n_vars * 4
    # the writer reserved X + 1 KiB per sample and gene + 1 MiB (about 1.7 MB here) while writing
    assert x_bytes < os.path.getsize(store.path) < x_bytes + (128 << 10)


# -- 6: no empty output folders --------------------------------------------------------------


def test_failed_commands_remove_the_folders_they_created(
    planted_store, panel_file, tmp_path, caplog
):
    store, _ = planted_store
    bad_panel = tmp_path / "bad.tsv"
    bad_panel.write_text("rank\tgene_id\n1\tNOT_A_GENE\n")
    assert (
        run(
            "impute",
            "fit",
            "--data",
            store.path,
            "--panel",
            bad_panel,
            "--out",
            tmp_path / "a" / "model",
        )
        == 1
    )
    assert (
        run(
            "evaluate",
            "--data",
            store.path,
            "--model",
            tmp_path / "absent",
            "--out",
            tmp_path / "b" / "metrics.json",
        )
        == 1
    )
    assert run("preprocess", tmp_path / "absent.h5ad", "--out", tmp_path / "c" / "store.h5ad") == 1
    assert (
        run("moments", "--data", tmp_path / "absent.h5ad", "--out", tmp_path / "d" / "moments.h5")
        == 1
    )
    assert (
        run(
            "curve",
            "--data",
            store.path,
            "--moments",
            tmp_path / "absent.h5",
            "--random-panels",
            1,
            "--random-sizes",
            3,
            "--out",
            tmp_path / "e" / "metrics",
        )
        == 1
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tsv", "panel.tsv", "planted.h5ad"]
    # a folder that existed before is kept, and so is anything with content
    (tmp_path / "kept").mkdir()
    with (
        pytest.raises(RuntimeError),
        removing_new_folders(tmp_path / "kept" / "x" / "y", tmp_path / "full" / "z"),
    ):
        (tmp_path / "kept" / "x" / "y").mkdir(parents=True)
        (tmp_path / "full" / "z").mkdir(parents=True)
        (tmp_path / "full" / "file").write_text("data")
        raise RuntimeError("boom")
    assert (
        sorted(p.name for p in (tmp_path / "kept").iterdir()) == []
        and (tmp_path / "full" / "file").exists()
    )
    assert not (tmp_path / "full" / "z").exists()


# -- 7: one writer per output ------------------------------------------------------------------


def test_a_second_run_on_a_locked_output_refuses_at_once(
    planted_store, panel_file, tmp_path, caplog
):
    store, _ = planted_store
    out = tmp_path / "model"
    holder = hold_lock(out, "dir", 30)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="genesel"):
            assert (
                run(
                    "impute",
                    "fit",
                    "--data",
                    store.path,
                    "--panel",
                    panel_file,
                    "--decoder",
                    "knn",
                    "--out",
                    out,
                )
                == 1
            )
        assert time.monotonic() - started < 10
        assert (
            f"{out}: another genesel run (PID {holder.pid} on " in caplog.text
            and "--wait" in caplog.text
        )
        assert not (out / "model.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # the lock dies with its process: the next run goes ahead and leaves no lock file behind
    assert (
        run(
            "impute",
            "fit",
            "--data",
            store.path,
            "--panel",
            panel_file,
            "--decoder",
            "knn",
            "--out",
            out,
        )
        == 0
    )
    assert (out / "model.json").exists() and not lock_path(out, "dir").exists()


@pytest.mark.parametrize("command", ["evaluate", "impute apply", "simulate", "report"])
def test_every_writing_command_refuses_a_locked_output(
    planted_store, panel_file, tmp_path, caplog, command
):
    store, drivers = planted_store
    model, measured = tmp_path / "model", tmp_path / "measured.csv"
    if command in ("evaluate", "impute apply"):
        assert (
            run(
                "impute",
                "fit",
                "--data",
                store.path,
                "--panel",
                panel_file,
                "--decoder",
                "knn",
                "--out",
                model,
            )
            == 0
        )
        rows = store.split_indices("test")[:20]
        pd.DataFrame(store.read_rows(rows)[:, drivers], columns=store.gene_ids[drivers]).to_csv(
            measured
        )
    argv, out, kind = {
        "evaluate": (
            ["evaluate", "--data", store.path, "--model", model, "--out", tmp_path / "m.json"],
            tmp_path / "m.json",
            "file",
        ),
        "impute apply": (
            [
                "impute",
                "apply",
                "--model",
                model,
                "--input",
                measured,
                "--out",
                tmp_path / "x.h5ad",
            ],
            tmp_path / "x.h5ad",
            "file",
        ),
        "simulate": (
            ["simulate", "--out", tmp_path / "sim.h5ad", "--n-obs", 40, "--n-vars", 30],
            tmp_path / "sim.h5ad",
            "file",
        ),
        "report": (
            ["report", "--results", tmp_path / "results", "--out", tmp_path / "report"],
            tmp_path / "report",
            "dir",
        ),
    }[command]
    holder = hold_lock(out, kind, 30)
    try:
        with caplog.at_level(logging.ERROR, logger="genesel"):
            assert run(*argv) == 1
        assert (
            f"{out}: another genesel run (PID {holder.pid} on " in caplog.text
            and "--wait" in caplog.text
        )
        assert (
            not out.exists()
            if kind == "file"
            else [p.name for p in out.iterdir()] == [".genesel.lock"]
        )
    finally:
        holder.kill()
        holder.wait()
    if command != "report":  # (a report needs a results folder)
        assert run(*argv) == 0
        assert out.exists() and not lock_path(out, kind).exists()


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
