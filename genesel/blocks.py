"""Block prefetching: evaluate an iterator ahead in a background thread; store row blocks."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar, cast

import numpy as np

if TYPE_CHECKING:
    from genesel.store import Store

#: Rows per block when the caller does not say.
DEFAULT_BLOCK_ROWS = 2048

T = TypeVar("T")


def prefetched(
    items: Iterable[T], *, ahead: int = 1, name: str = "genesel-prefetch"
) -> Iterator[T]:
    """Yield ``items``, evaluated in a background thread up to ``ahead`` items in advance.

    While the caller works on one item, the thread evaluates the next ones; at most
    ``ahead`` items are evaluated (or being evaluated) and not yet taken by the caller, so
    at most ``ahead + 1`` items are alive at once (size reusable buffers accordingly). An
    exception raised while producing an item is raised in the caller, at that item.
    Closing the generator early stops the thread once its current item is done.

    Parameters
    ----------
    items
        Items to evaluate (typically a generator that reads blocks).
    ahead
        Items evaluated in advance (at least 1).
    name
        Name of the thread.
    """
    ready: queue.SimpleQueue[object] = queue.SimpleQueue()
    slots = threading.Semaphore(max(ahead, 1))
    stop = threading.Event()
    done = object()

    def produce() -> None:
        iterator = iter(items)
        try:
            while True:
                slots.acquire()
                if stop.is_set():
                    return
                item = next(iterator, done)
                ready.put(item)
                if item is done:
                    return
        except BaseException as error:  # noqa: BLE001 - forwarded to the consumer, raised there
            ready.put(error)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            slots.release()
            yield cast(T, item)
    finally:
        stop.set()
        slots.release()  # wake a producer waiting for a slot, so that it sees ``stop``
        thread.join()


def iter_row_blocks(
    store: Store,
    rows: np.ndarray,
    *,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    prefetch: bool = True,
    pin_memory: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(offset, block)`` for consecutive blocks of ``rows`` in store units (float32).

    ``offset`` is the position of the block's first row within ``rows``. With
    ``prefetch`` a background thread reads the next block while the caller works on
    the current one (:func:`prefetched`). Blocks live in a ring of three reusable buffers: a
    yielded block is valid until the next one is requested, so copy it if you keep it. With
    ``pin_memory`` the buffers are page-locked (fast copies to a GPU).
    """
    if block_rows < 1:
        raise ValueError(f"block_rows must be positive, got {block_rows}")
    starts = range(0, int(rows.size), block_rows)
    shape = (min(block_rows, rows.size), store.n_vars)
    if not prefetch:
        buffer = np.empty(shape, dtype=np.float32)
        for start in starts:
            yield (
                start,
                store.read_rows(rows[start : start + block_rows], standardize=False, out=buffer),
            )
        return
    if pin_memory:
        import torch

        ring = [torch.empty(shape, dtype=torch.float32, pin_memory=True).numpy() for _ in range(3)]
    else:
        ring = [np.empty(shape, dtype=np.float32) for _ in range(3)]
    # The caller's block and the two read ahead: three buffers.
    blocks = (
        (
            start,
            store.read_rows(rows[start : start + block_rows], standardize=False, out=ring[i % 3]),
        )
        for i, start in enumerate(starts)
    )
    yield from prefetched(blocks, ahead=2, name="genesel-block-reader")
