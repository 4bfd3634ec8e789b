"""Loader throughput against the raw sequential read of the same split (the floor).

Usage::

    python benchmarks/loader_throughput.py --data STORE.h5ad [--split train] [--batch-size 256] [--record]

The floor reads the split's contiguous row range with h5py into a reused buffer, as fast
as the file can be read. The loader run then iterates one full shuffled epoch of
standardised minibatches as torch tensors on the device (streaming, not resident).
Both runs read the file once more before timing so that both see the same (warm) page cache;
pass ``--cold`` to drop the cache before each run instead (root only).
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

from genesel.loader import LoaderConfig, MinibatchLoader  # noqa: E402
from genesel.store import Store  # noqa: E402


def raw_read_seconds(store: Store, rows: np.ndarray, block_rows: int) -> float:
    """Seconds to read ``rows`` (one contiguous range) sequentially with h5py."""
    buffer = np.empty((block_rows, store.n_vars), dtype=np.float32)
    start = time.perf_counter()
    first, stop = int(rows[0]), int(rows[-1]) + 1
    for a in range(first, stop, block_rows):
        b = min(a + block_rows, stop)
        store.X.read_direct(buffer, source_sel=np.s_[a:b], dest_sel=np.s_[: b - a])
    return time.perf_counter() - start


def loader_seconds(loader: MinibatchLoader) -> tuple[float, int]:
    """Seconds for one epoch of the loader, and the rows it delivered."""
    start = time.perf_counter()
    rows = 0
    for batch in loader:
        rows += batch.shape[0]
    if loader.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--block-rows",
        type=int,
        default=LoaderConfig.block_rows,
        help="rows per shuffled block (default: the loader's)",
    )
    parser.add_argument("--blocks-per-pool", type=int, default=LoaderConfig.blocks_per_pool)
    parser.add_argument(
        "--raw-block-rows",
        type=int,
        default=1024,
        help="rows per read of the raw floor (default 1024)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--max-rows", type=int, default=None, help="limit the split to its first rows"
    )
    parser.add_argument(
        "--cold", action="store_true", help="drop the page cache before each timed run"
    )
    parser.add_argument(
        "--record", action="store_true", help="append the result to docs/benchmarks.md"
    )
    args = parser.parse_args()

    with Store.open(args.data) as store:
        rows = store.require_split(args.split)
        if args.max_rows:
            rows = rows[: args.max_rows]
        gib = rows.size * store.n_vars * 4 / 2**30
        config = LoaderConfig(
            batch_size=args.batch_size,
            block_rows=args.block_rows,
            blocks_per_pool=args.blocks_per_pool,
            resident_bytes=0,
        )
        loader = MinibatchLoader(store, args.split, config=config, device=args.device, seed=0)
        loader.rows = rows
        if args.cold:
            drop_caches()
        else:
            raw_read_seconds(store, rows, args.raw_block_rows)
        raw = raw_read_seconds(store, rows, args.raw_block_rows)
        if args.cold:
            drop_caches()
        else:
            loader_seconds(loader)  # warm-up epoch: thread start, first allocations
        seconds, delivered = loader_seconds(loader)
    assert delivered == rows.size, (delivered, rows.size)
    result = {
        "split": args.split,
        "rows": int(rows.size),
        "genes": store.n_vars,
        "GiB": round(gib, 2),
        "raw read (samples/s)": round(rows.size / raw),
        "loader (samples/s)": round(rows.size / seconds),
        "loader / raw": round(raw / seconds, 2),
        "device": args.device,
        "cache": "cold" if args.cold else "warm",
        "peak RSS (GiB)": round(peak_rss_gib(), 2),
    }
    table = markdown_table([result])
    print(table)
    if args.record:
        record("Loader throughput", table)


if __name__ == "__main__":
    main()
