"""Simulate and preprocess a GEO-sized compendium; time both against the I/O floor.

Usage::

    python benchmarks/geo_scale_data.py --n-obs 112171 --workdir /tmp/geo [--record]

For each N it runs ``genesel simulate`` and ``genesel preprocess`` under ``/usr/bin/time -v``
(peak RSS, wall time) and measures the floor of preprocessing: reading the simulated input
once and writing a same-sized output once, block by block with h5py, in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recording import markdown_table, record  # noqa: E402
from timing import measure  # noqa: E402

GENESEL = [sys.executable, "-m", "genesel.cli.main", "-q"]


def io_floor_seconds(source: Path, target: Path, block_rows: int = 2048) -> float:
    """Seconds to read ``source``'s X once and write it to ``target`` once, by row blocks."""
    start = time.perf_counter()
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        X = src["X"]
        out = dst.create_dataset(
            "X", shape=X.shape, dtype=np.float32, chunks=(min(256, X.shape[0]), X.shape[1])
        )
        buffer = np.empty((block_rows, X.shape[1]), dtype=np.float32)
        for a in range(0, X.shape[0], block_rows):
            b = min(a + block_rows, X.shape[0])
            X.read_direct(buffer, source_sel=np.s_[a:b], dest_sel=np.s_[: b - a])
            out[a:b] = buffer[: b - a]
    seconds = time.perf_counter() - start
    target.unlink()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-obs", type=int, nargs="+", default=[20_000, 112_171])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/genesel-geo"))
    parser.add_argument("--keep", action="store_true", help="keep the files of the largest N")
    parser.add_argument(
        "--record", action="store_true", help="append the result to docs/benchmarks.md"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n_obs in args.n_obs:
        raw = args.workdir / f"sim_{n_obs}.h5ad"
        store = args.workdir / f"store_{n_obs}.h5ad"
        sim = measure(
            [*GENESEL, "simulate", "--out", str(raw), "--n-obs", str(n_obs), "--seed", "0"]
        )
        pre = measure([*GENESEL, "preprocess", str(raw), "--out", str(store), "--seed", "0"])
        floor = io_floor_seconds(raw, args.workdir / "floor.h5")
        rows.append(
            {
                "N": n_obs,
                "genes": 10_463,
                "simulate (s)": round(sim.seconds, 1),
                "simulate peak RSS (GiB)": round(sim.peak_rss_gib, 2),
                "preprocess (s)": round(pre.seconds, 1),
                "preprocess peak RSS (GiB)": round(pre.peak_rss_gib, 2),
                "read+write floor (s)": round(floor, 1),
                "preprocess / floor": round(pre.seconds / floor, 2),
            }
        )
        print(markdown_table(rows[-1:]))
        if not (args.keep and n_obs == max(args.n_obs)):
            raw.unlink(missing_ok=True)
            store.unlink(missing_ok=True)
    table = markdown_table(rows)
    print(table)
    if args.record:
        record("Simulate and preprocess at GEO scale", table)


if __name__ == "__main__":
    main()
