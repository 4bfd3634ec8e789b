"""Sequential row-block reads of a store split, with the next block read in the background."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

from genesel.store import Store

#: Rows per block when the caller does not say.
DEFAULT_BLOCK_ROWS = 2048


def iter_row_blocks(
    store: Store,
    rows: np.ndarray,
    *,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    prefetch: bool = True,
    pin_memory: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(offset, block)`` for consecutive blocks of ``rows`` in store units (float32).

    ``offset`` is the position of the block's first row within ``rows``. A background
    thread reads the next block while the caller works on the current one. Blocks live
    in a ring of three reusable buffers: a yielded block is valid until the next one is
    requested, so copy it if you keep it. With ``pin_memory`` the buffers are page-locked
    (fast copies to a GPU).
    """
    if block_rows < 1:
        raise ValueError(f"block_rows must be positive, got {block_rows}")
    starts = range(0, int(rows.size), block_rows)
    if not prefetch:
        buffer = np.empty((min(block_rows, rows.size), store.n_vars), dtype=np.float32)
        for start in starts:
            yield (
                start,
                store.read_rows(rows[start : start + block_rows], standardize=False, out=buffer),
            )
        return
    shape = (min(block_rows, rows.size), store.n_vars)
    if pin_memory:
        ring = [torch.empty(shape, dtype=torch.float32, pin_memory=True).numpy() for _ in range(3)]
    else:
        ring = [np.empty(shape, dtype=np.float32) for _ in range(3)]
    ready: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for i, start in enumerate(starts):
                if stop.is_set():
                    return
                block = store.read_rows(
                    rows[start : start + block_rows], standardize=False, out=ring[i % 3]
                )
                ready.put((start, block))
        except BaseException as error:  # re-raised in the consumer
            ready.put(error)
            return
        ready.put(done)

    thread = threading.Thread(target=produce, name="genesel-block-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                ready.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
