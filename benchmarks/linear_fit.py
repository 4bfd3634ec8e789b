"""Time the out-of-core linear imputer against one sequential read of the train split.

Usage::

    python benchmarks/linear_fit.py --data STORE.h5ad [--panel-size 943] [--block-rows 2048]
                                    [--device cpu|cuda] [--precision float64|float32]
                                    [--threads N] [--cold] [--record]

The floor reads the train split's rows once, block by block with h5py into a reused
buffer (no arithmetic). The fit (``genesel.impute.fit_linear``) makes the same single
pass and, per block, one float64 ``dgemm`` of the panel columns with all columns. "arithmetic
only" repeats the per-block update on one in-memory block (the compute floor), so a fit
near ``max(read, arithmetic) + solve`` overlaps reading and computing. The
file is read once before timing so that both runs see the same warm page cache; with
``--cold`` (root only) the page cache is dropped before the read and before the fit
instead, so both read from disk. The
panel is the first K landmark genes (seeded random genes if the store has fewer).
Target at D = 10,463, K = 943: fit time at most 2x the read. Peak RSS is the process
maximum (``getrusage``), which includes the first read's buffers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recording import markdown_table, peak_rss_gib, record  # noqa: E402
from timing import drop_caches  # noqa: E402

from genesel.impute.linear import NormalEquations, fit_linear  # noqa: E402
from genesel.store import Store  # noqa: E402


def read_seconds(store: Store, rows: np.ndarray, block_rows: int) -> float:
    """Seconds to read ``rows`` (sorted) sequentially, block by block, without computing."""
    buffer = np.empty((block_rows, store.n_vars), dtype=np.float32)
    start = time.perf_counter()
    for a in range(0, rows.size, block_rows):
        store.read_rows(rows[a : a + block_rows], standardize=False, out=buffer)
    return time.perf_counter() - start


def compute_seconds(
    store: Store, rows: np.ndarray, panel: np.ndarray, block_rows: int, device: str, precision: str
) -> float:
    """Seconds of the fit's arithmetic alone: the per-block update on one in-memory block, once per block."""
    block = store.read_rows(rows[:block_rows], standardize=False)
    equations = NormalEquations(
        panel,
        store.n_vars,
        center=store.var["mean"].to_numpy(np.float64),
        device=device,
        precision=precision,
    )
    start = time.perf_counter()
    for a in range(0, rows.size, block_rows):
        equations.update(block[: min(block_rows, rows.size - a)])
    if equations.device.type == "cuda":
        torch.cuda.synchronize(equations.device)
    return time.perf_counter() - start


def choose_panel(store: Store, size: int, seed: int = 0) -> np.ndarray:
    """The first ``size`` landmark genes, or seeded random genes when there are too few."""
    landmarks = np.flatnonzero(store.landmark_mask)
    if landmarks.size >= size:
        return landmarks[:size]
    return np.sort(np.random.default_rng(seed).choice(store.n_vars, size=size, replace=False))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, type=Path, help="preprocessed store")
    parser.add_argument("--panel-size", type=int, default=943)
    parser.add_argument("--block-rows", type=int, default=2048)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precision",
        choices=("float64", "float32"),
        default="float64",
        help="arithmetic of the block products",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: all cores)"
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="drop the page cache before the read and before the fit (root)",
    )
    parser.add_argument(
        "--record", action="store_true", help="append the result to docs/benchmarks.md"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with Store.open(args.data) as store:
        rows = store.require_split("train")
        panel = choose_panel(store, args.panel_size)
        cold = args.cold and drop_caches()
        if not cold:
            read_seconds(store, rows, args.block_rows)  # warm the page cache
        floor = read_seconds(store, rows, args.block_rows)
        if cold:
            drop_caches()
        start = time.perf_counter()
        solution = fit_linear(
            store,
            panel,
            block_rows=args.block_rows,
            device=args.device,
            precision=args.precision,
            progress=False,
        )
        fit = time.perf_counter() - start
        arithmetic = compute_seconds(
            store, rows, panel, args.block_rows, args.device, args.precision
        )
        gib = rows.size * store.n_vars * 4 / 2**30
        row = {
            "train rows": int(rows.size),
            "genes D": store.n_vars,
            "panel K": panel.size,
            "train GiB": round(gib, 2),
            "read s": floor,
            "fit s": fit,
            "accumulate s": solution.seconds["accumulate"],
            "arithmetic only s": arithmetic,
            "solve s": solution.seconds["solve"],
            "fit / read": fit / floor,
            "GFLOP/s": 2.0
            * rows.size
            * panel.size
            * store.n_vars
            / solution.seconds["accumulate"]
            / 1e9,
            "peak RSS GiB": round(peak_rss_gib(), 2),
            "device": args.device,
            "precision": args.precision,
            "threads": torch.get_num_threads(),
            "cache": "cold" if cold else "warm",
        }
    table = markdown_table([row])
    print(table)
    if args.record:
        record("Imputation: out-of-core linear fit vs one read of the train split", table)


if __name__ == "__main__":
    main()
