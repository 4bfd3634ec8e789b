"""The one prefetch helper: order, read-ahead bound, errors and early close."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from genesel.blocks import iter_row_blocks, prefetched
from genesel.store import Store


def test_prefetched_keeps_order_and_bounds_read_ahead() -> None:
    produced: list[int] = []

    def items():
        for i in range(6):
            produced.append(i)
            yield i

    seen = []
    for item in prefetched(items(), ahead=2):
        time.sleep(0.02)  # let the thread run ahead as far as it may
        assert len(produced) <= item + 1 + 2
        seen.append(item)
    assert seen == list(range(6))


def test_prefetched_raises_in_the_consumer_and_stops_on_close() -> None:
    def failing():
        yield 1
        raise KeyError("broken")

    with pytest.raises(KeyError, match="broken"):
        list(prefetched(failing()))
    before = threading.active_count()
    stream = prefetched(iter(range(100)), ahead=1)
    assert next(stream) == 0
    stream.close()
    assert threading.active_count() <= before


@pytest.mark.parametrize("prefetch", [True, False])
def test_iter_row_blocks_reads_every_row_in_order(prefetch: bool) -> None:
    values = np.arange(70 * 3, dtype=np.float32).reshape(70, 3)
    var = pd.DataFrame(
        {"mean": 0.0, "std": 1.0, "symbol": "g", "landmark": False}, index=list("abc")
    )
    obs = pd.DataFrame({"split": ["train"] * 70})
    store = Store(values, var=var, obs=obs)
    rows = np.arange(5, 70)
    blocks = [
        (offset, block.copy())
        for offset, block in iter_row_blocks(store, rows, block_rows=16, prefetch=prefetch)
    ]
    assert [offset for offset, _ in blocks] == list(range(0, 65, 16))
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), values[rows])
