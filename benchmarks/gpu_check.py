"""One GPU check at GEO scale: selector steps, loader, moments pass, MLP decoder.

Usage::

    bash benchmarks/gpu_check.sh                 # on a GPU machine, under 8 minutes
    bash benchmarks/gpu_check.sh --cpu --tiny    # CPU dry run of every part, seconds

Simulates a compendium (``genesel simulate`` + ``genesel preprocess``, D = 10,463 genes)
on local disk, then measures

* CAE and IP-CAE training at K = 943, batch 256 through the real :class:`Trainer`:
  steps/s, peak GPU memory (``torch.cuda.max_memory_allocated``) and, on CUDA, the host
  syncs torch's sync debug mode reports in the timed steps;
* loader throughput (rows/s of one epoch) against a raw sequential h5py read;
* the linear decoder's moments pass (``genesel moments``) when that command exists;
* N steps of the 3 x 9,000 MLP decoder (D-GEX's largest).

Prints a summary table; exits non-zero when any part failed.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loader_throughput import loader_seconds, raw_read_seconds  # noqa: E402

from genesel.decoders import build_decoder  # noqa: E402
from genesel.impute.mlp import PanelDecoderTask  # noqa: E402
from genesel.loader import LoaderConfig, MinibatchLoader  # noqa: E402
from genesel.run import RunConfig, configure_precision  # noqa: E402
from genesel.selectors.base import make_selector  # noqa: E402
from genesel.store import Store  # noqa: E402
from genesel.trainer import Trainer  # noqa: E402
from genesel.training import TrainerConfig  # noqa: E402

GENESEL = [sys.executable, "-m", "genesel.cli.main", "-q"]
FULL = {
    "n_obs": 20_000,
    "n_genes": 10_463,
    "k": 943,
    "batch": 256,
    "steps": 60,
    "mlp_hidden": 9000,
    "mlp_steps": 30,
}
TINY = {
    "n_obs": 400,
    "n_genes": 200,
    "k": 20,
    "batch": 32,
    "steps": 6,
    "mlp_hidden": 64,
    "mlp_steps": 4,
}


def prepare_data(workdir: Path, size: dict[str, int]) -> Path:
    """Simulate and preprocess a compendium under ``workdir`` (reused when present)."""
    store = workdir / f"store-{size['n_obs']}x{size['n_genes']}.h5ad"
    if store.exists():
        return store
    raw = workdir / f"compendium-{size['n_obs']}x{size['n_genes']}.h5ad"
    subprocess.run(
        [
            *GENESEL,
            "simulate",
            "--out",
            str(raw),
            "--n-obs",
            str(size["n_obs"]),
            "--n-vars",
            str(size["n_genes"]),
            "--seed",
            "0",
        ],
        check=True,
    )
    subprocess.run(
        [*GENESEL, "preprocess", str(raw), "--out", str(store), "--seed", "0"], check=True
    )
    raw.unlink()
    return store


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan


def timed_fit(
    task: torch.nn.Module, loader: MinibatchLoader, *, steps: int, device: torch.device
) -> dict[str, Any]:
    """Train ``task`` for ``steps`` steps (after 2 warm-up steps); steps/s, peak memory, sync warnings."""

    def config(n: int) -> TrainerConfig:
        return TrainerConfig(max_epochs=1, max_steps=n, min_steps=0, stop_when_converged=False)

    run = RunConfig(seed=0, device=str(device), progress=False)
    # warm-up: kernels, cuBLAS handles, the resident split
    Trainer(config(2), run=run).fit(task, loader)
    _peak_reset(device)
    syncs = math.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        try:
            start = time.perf_counter()
            result = Trainer(config(steps), run=run).fit(task, loader)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
        finally:
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
    if device.type == "cuda":
        syncs = sum("synchroniz" in str(w.message) for w in caught)
    return {
        "steps": result.steps,
        "steps_per_s": result.steps / seconds,
        "loop_steps_per_s": float(result.history["steps_per_second"].iloc[-1]),
        "peak_gib": _peak_gib(device),
        "sync_warnings": syncs,
        "seconds": seconds,
    }


def check_selectors(
    store: Store, size: dict[str, int], device: torch.device
) -> list[dict[str, Any]]:
    rows = []
    for method in ("cae", "ipcae"):
        selector = make_selector(method, n_genes=size["k"], seed=0)
        model = selector.build_model(store.n_vars, seed=0)
        loader = MinibatchLoader(
            store,
            "train",
            config=LoaderConfig(batch_size=size["batch"]),
            shuffle=True,
            seed=0,
            device=device,
        )
        rows.append(
            {
                "part": f"{method} K={size['k']} D={store.n_vars} B={size['batch']}",
                **timed_fit(model, loader, steps=size["steps"], device=device),
            }
        )
        del model, loader
    return rows


def check_loader(store: Store, size: dict[str, int], device: torch.device) -> dict[str, Any]:
    rows = store.split_indices("train")
    raw = raw_read_seconds(store, rows, 1024)
    loader = MinibatchLoader(
        store,
        "train",
        config=LoaderConfig(batch_size=size["batch"], resident_bytes=0),
        shuffle=True,
        seed=0,
        device=device,
    )
    seconds, n = loader_seconds(loader)
    return {
        "part": f"loader (streamed, B={size['batch']}) vs raw read",
        "rows_per_s": n / seconds,
        "raw_rows_per_s": rows.size / raw,
        "ratio_to_raw": raw / seconds,
        "seconds": seconds + raw,
    }


def check_moments(store_path: Path, workdir: Path, device: torch.device) -> dict[str, Any]:
    probe = subprocess.run([*GENESEL, "moments", "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        return {
            "part": "moments pass",
            "note": "skipped: no `genesel moments` command in this build",
        }
    options = probe.stdout
    command = [
        *GENESEL,
        "moments",
        "--data",
        str(store_path),
        "--out",
        str(workdir / "moments.h5"),
    ]
    if "--device" in options:
        command += ["--device", device.type]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return {
        "part": "moments pass (genesel moments)",
        "seconds": time.perf_counter() - start,
        "command": " ".join(command[3:]),
    }


def check_mlp(store: Store, size: dict[str, int], device: torch.device) -> dict[str, Any]:
    hidden = (size["mlp_hidden"],) * 3
    panel = np.arange(size["k"])
    torch.manual_seed(0)
    task = PanelDecoderTask(
        build_decoder(size["k"], store.n_vars, hidden=hidden, activation="tanh", dropout=0.1),
        panel,
    )
    loader = MinibatchLoader(
        store,
        "train",
        config=LoaderConfig(batch_size=size["batch"]),
        shuffle=True,
        seed=0,
        device=device,
    )
    return {
        "part": f"MLP decoder 3 x {size['mlp_hidden']}, K={size['k']}",
        **timed_fit(task, loader, steps=size["mlp_steps"], device=device),
    }


def summary(rows: list[dict[str, Any]]) -> str:
    columns = [
        "part",
        "steps_per_s",
        "peak_gib",
        "sync_warnings",
        "rows_per_s",
        "raw_rows_per_s",
        "seconds",
        "status",
    ]

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{value:,.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cpu", action="store_true", help="run on the CPU (dry run; no GPU figures)"
    )
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (seconds)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "genesel-gpu-check",
    )
    parser.add_argument(
        "--n-obs", type=int, default=None, help="samples to simulate (default 20,000; tiny 400)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="timed selector steps (default 60)"
    )
    args = parser.parse_args(argv)
    size = dict(TINY if args.tiny else FULL)
    if args.n_obs:
        size["n_obs"] = args.n_obs
    if args.steps:
        size["steps"] = args.steps
    if args.cpu:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("no CUDA device; use --cpu for a dry run", file=sys.stderr)
        return 2
    else:
        device = torch.device("cuda")
    configure_precision(device)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    failed = False

    def part(name: str, function, *arguments) -> None:
        nonlocal failed
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            result = function(*arguments)
        except Exception as error:  # noqa: BLE001 -- report every part, then fail
            failed = True
            traceback.print_exc()
            rows.append(
                {
                    "part": name,
                    "status": f"FAILED: {type(error).__name__}: {error}"[:120],
                    "seconds": time.perf_counter() - start,
                }
            )
            return
        for row in result if isinstance(result, list) else [result]:
            row.setdefault("status", row.pop("note", "ok"))
            print(
                "   "
                + ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                ),
                flush=True,
            )
            rows.append(row)

    started = time.perf_counter()
    store_path: list[Path] = []
    part(
        "data (genesel simulate + preprocess)",
        lambda: (
            store_path.append(prepare_data(args.workdir, size))
            or {"part": "data", "seconds": time.perf_counter() - started}
        ),
    )
    if store_path:
        with Store.open(store_path[0]) as store:
            part("selectors", check_selectors, store, size, device)
            part("loader", check_loader, store, size, device)
            part("moments", check_moments, store_path[0], args.workdir, device)
            part("mlp decoder", check_mlp, store, size, device)
    print(
        f"\ndevice: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}, "
        f"{size['n_obs']} samples x {size['n_genes']} genes, total {time.perf_counter() - started:.0f} s"
    )
    print(summary(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
