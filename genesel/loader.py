"""Stream shuffled, standardised minibatches from a store to a torch device.

The store is read in row blocks: each epoch visits the blocks of a split in a seeded
random order, gathers a few blocks into a pool, shuffles the pool's rows and cuts it into
minibatches. A background thread reads the next pool while the current one is consumed:
it reads cache-sized slices, standardises each while it is in cache and scatters its rows
to their shuffled places, so minibatches are zero-copy views of the pool.
When a split fits in a memory budget (on the GPU, or in host memory on the CPU) it is read
once and kept resident, and batches are drawn by index.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from genesel.blocks import prefetched
from genesel.store import Store

logger = logging.getLogger(__name__)

#: Default memory budget for keeping a split resident in host memory (CPU training); larger
#: splits stream from disk, which on the CPU costs little next to the training step.
DEFAULT_HOST_RESIDENT_BYTES = 256 << 20
#: Bytes read, standardised and scattered at a time in the prefetch thread (fits in cache).
CACHE_SLICE_BYTES = 4 << 20


@dataclass(frozen=True)
class LoaderConfig:
    """How minibatches are cut from a split.

    Parameters
    ----------
    batch_size
        Rows per minibatch.
    block_rows
        Rows read from disk at a time.
    blocks_per_pool
        Blocks gathered and shuffled together (more = better mixing, more memory).
    prefetch
        Pools read ahead by the background thread.
    resident_bytes
        Keep the split resident on the device when it is at most this large; ``None`` picks
        256 MiB on the CPU and 80 % of free memory on a GPU; ``0`` never.
    drop_last
        Drop a final minibatch smaller than ``batch_size`` (training).
    """

    batch_size: int = 256
    block_rows: int = 256
    blocks_per_pool: int = 4
    prefetch: int = 1
    resident_bytes: int | None = None
    drop_last: bool = False


class MinibatchLoader:
    """Iterate over standardised minibatches of one split as torch tensors.

    Parameters
    ----------
    store
        The data.
    split
        ``"train"``, ``"validation"`` or ``"test"``.
    config
        Batch size, block size, prefetch and residency.
    shuffle
        Shuffle block order and rows (training); otherwise rows come in store order.
    seed
        Seed of the shuffling; epoch ``e`` uses the stream ``(seed, e)``.
    device
        Where batches are delivered.
    columns
        Optional gene indices: batches then hold only these columns (inputs of a decoder).
    """

    def __init__(
        self,
        store: Store,
        split: str,
        *,
        config: LoaderConfig | None = None,
        shuffle: bool = True,
        seed: int = 0,
        device: torch.device | str = "cpu",
        columns: np.ndarray | None = None,
    ) -> None:
        self.store = store
        self.split = split
        self.config = config or LoaderConfig()
        self.shuffle = shuffle
        self.seed = int(seed)
        self.device = torch.device(device)
        self.columns = None if columns is None else np.asarray(columns)
        self.rows = store.require_split(split)
        # On the CPU the reading thread standardises rows; on a GPU the device does, per batch.
        self._standardize_on_host = self.device.type != "cuda"
        self.epoch = 0
        self._resident: torch.Tensor | None = None
        self._ring: list[np.ndarray] = []
        self._ring_position = 0
        self._helper: ThreadPoolExecutor | None = None
        self._scratch: list[np.ndarray] = []
        mean, std = store.mean, store.std
        if self.columns is not None:
            mean, std = mean[self.columns], std[self.columns]
        self._mean = mean.astype(np.float32)
        self._inverse_std = (1.0 / std).astype(np.float32)
        # On a GPU: standardised = x * scale + shift, one fused pass on the device.
        self._scale = torch.from_numpy(self._inverse_std).to(self.device)
        self._shift = torch.from_numpy(-self._mean * self._inverse_std).to(self.device)
        if self._fits_resident():
            self._resident = self._load_resident()

    # -- sizes ------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        """Rows in the split."""
        return int(self.rows.size)

    @property
    def n_columns(self) -> int:
        """Columns of each batch."""
        return self.store.n_vars if self.columns is None else int(self.columns.size)

    @property
    def is_resident(self) -> bool:
        """Whether the split is held on the device."""
        return self._resident is not None

    def __len__(self) -> int:
        full, rest = divmod(self.n_rows, self.config.batch_size)
        return full if (self.config.drop_last and self.shuffle) or rest == 0 else full + 1

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffling stream of ``epoch`` (call before iterating)."""
        self.epoch = int(epoch)

    # -- iteration ----------------------------------------------------------
    def __iter__(self) -> Iterator[torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch])
        if self._resident is not None:
            yield from self._iter_resident(rng)
        else:
            yield from self._iter_streaming(rng)

    def _iter_resident(self, rng: np.random.Generator) -> Iterator[torch.Tensor]:
        resident = self._resident
        assert resident is not None  # only called when the split is resident
        order = rng.permutation(self.n_rows) if self.shuffle else np.arange(self.n_rows)
        order_t = torch.from_numpy(order).to(self.device)
        for start in self._batch_starts(self.n_rows):
            yield resident.index_select(0, order_t[start : start + self.config.batch_size])

    def _iter_streaming(self, rng: np.random.Generator) -> Iterator[torch.Tensor]:
        batch = self.config.batch_size
        plan = self._pool_plan(rng)
        orders = [
            rng.permutation(sum(b.size for b in blocks)) if self.shuffle else None
            for blocks in plan
        ]
        pools = (
            self._read_pool(blocks, order) for blocks, order in zip(plan, orders, strict=True)
        )
        carry: np.ndarray | None = None
        # ``prefetch`` pools wait while the thread reads one more (the ring counts them).
        for pool in prefetched(pools, ahead=self.config.prefetch + 1, name="genesel-pool-reader"):
            # The pool's rows are already shuffled: batches are contiguous, zero-copy views.
            n = pool.shape[0]
            start = 0
            if carry is not None:
                start = min(batch - carry.shape[0], n)
                carry = np.concatenate([carry, pool[:start]])
                if carry.shape[0] < batch:
                    continue
                yield self._to_device(carry)
                carry = None
            stop = start + ((n - start) // batch) * batch
            for first in range(start, stop, batch):
                yield self._to_device(pool[first : first + batch])
            if stop < n:
                carry = pool[stop:].copy()
        if carry is not None and carry.shape[0] and not (self.config.drop_last and self.shuffle):
            yield self._to_device(carry)

    def _batch_starts(self, n: int) -> range:
        batch = self.config.batch_size
        stop = (n // batch) * batch if (self.config.drop_last and self.shuffle) else n
        return range(0, stop, batch)

    def _pool_plan(self, rng: np.random.Generator) -> list[list[np.ndarray]]:
        block = self.config.block_rows
        blocks = [self.rows[i : i + block] for i in range(0, self.n_rows, block)]
        if self.shuffle:
            blocks = [blocks[i] for i in rng.permutation(len(blocks))]
        per_pool = self.config.blocks_per_pool if self.shuffle else 1
        return [blocks[i : i + per_pool] for i in range(0, len(blocks), per_pool)]

    def _read_pool(self, blocks: list[np.ndarray], order: np.ndarray | None) -> np.ndarray:
        """Read several blocks into one pool whose row ``j`` is row ``order[j]`` of the blocks.

        Contiguous blocks are read in cache-sized slices; each slice is standardised while
        it is in cache and scattered to its shuffled rows, so the pool is written once and
        nothing is copied again to cut batches. Two threads share the slices (HDF5 reads
        are serialised by h5py, the numpy passes run in parallel).
        """
        if self.columns is not None or not all(_is_range(b) for b in blocks if b.size):
            parts = [self._read(indices) for indices in blocks]
            pool = parts[0] if len(parts) == 1 else np.concatenate(parts)
            return pool if order is None else pool[order]
        n_rows = sum(b.size for b in blocks)
        pool = self._pool_buffer(n_rows)
        destination = None
        if order is not None:
            destination = np.empty_like(order)
            destination[order] = np.arange(n_rows)
        step = self._cache_rows()
        slices: list[tuple[np.ndarray, int]] = []
        offset = 0
        for indices in blocks:
            for first in range(0, indices.size, step):
                slices.append((indices[first : first + step], offset))
                offset += min(step, indices.size - first)
        if self._helper is None:
            self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genesel-loader")
            self._scratch = [
                np.empty((step, self.store.n_vars), dtype=np.float32) for _ in range(2)
            ]
        helped = self._helper.submit(self._fill, pool, destination, slices[1::2], self._scratch[1])
        self._fill(pool, destination, slices[0::2], self._scratch[0])
        helped.result()
        return pool

    def _fill(
        self,
        pool: np.ndarray,
        destination: np.ndarray | None,
        slices: list[tuple[np.ndarray, int]],
        scratch: np.ndarray,
    ) -> None:
        """Read, standardise (unless batches go to a GPU) and place ``slices`` of a pool."""
        standardize = self._standardize_on_host
        for part, offset in slices:
            if destination is None and not standardize:
                self.store.read_rows(
                    part, standardize=False, out=pool[offset : offset + part.size]
                )
                continue
            chunk = scratch[: part.size]
            self.store.read_rows(part, standardize=False, out=chunk)
            if standardize:
                self._standardize_in_place(chunk)
            if destination is None:
                pool[offset : offset + part.size] = chunk
            else:
                pool[destination[offset : offset + part.size]] = chunk

    def _cache_rows(self) -> int:
        """Rows of one slice that fits comfortably in a core's cache."""
        return max(1, min(self.config.block_rows, CACHE_SLICE_BYTES // (4 * self.store.n_vars)))

    def _pool_buffer(self, rows: int) -> np.ndarray:
        """Next buffer of a ring reused across pools: fresh allocations cost page faults.

        ``prefetch + 3`` buffers cover the pool being filled, the queued ones, the one being
        consumed and the previous one (whose last batch the consumer may still hold while it
        asks for the next). A buffer that is still referenced (a consumer kept its batches,
        e.g. ``list(loader)``) is never overwritten: it is replaced by a fresh one.
        """
        size = self.config.block_rows * (self.config.blocks_per_pool if self.shuffle else 1)
        if not self._ring:
            self._ring = [
                np.empty((size, self.store.n_vars), dtype=np.float32)
                for _ in range(self.config.prefetch + 3)
            ]
        self._ring_position = (self._ring_position + 1) % len(self._ring)
        buffer = self._ring[self._ring_position]
        if sys.getrefcount(buffer) > 3:  # the ring, ``buffer`` and getrefcount's argument
            buffer = self._ring[self._ring_position] = np.empty_like(buffer)
        return buffer[:rows]

    def _standardize_in_place(self, values: np.ndarray) -> None:
        np.subtract(values, self._mean, out=values)
        np.multiply(values, self._inverse_std, out=values)

    def _read(self, indices: np.ndarray, *, standardize: bool | None = None) -> np.ndarray:
        """Read rows; standardised here (in the prefetch thread) unless batches go to a GPU.

        On a GPU the rows stay in store units and are standardised there, per batch,
        where it costs nothing; on the CPU the reading thread does it in place, in
        numpy, so it overlaps with training.
        """
        if standardize is None:
            standardize = self._standardize_on_host
        out = None
        if indices.size and _is_range(indices):
            out = np.empty((indices.size, self.store.n_vars), dtype=np.float32)
        values = self.store.read_rows(indices, standardize=False, out=out)
        if self.columns is not None:
            values = values[:, self.columns]
        elif out is None:
            values = np.array(values, dtype=np.float32)  # own the buffer before editing in place
        if standardize:
            self._standardize_in_place(values)
        return values

    def _to_device(self, values: np.ndarray) -> torch.Tensor:
        """Deliver a batch to the device, standardising it there when it is a GPU."""
        tensor = torch.from_numpy(np.ascontiguousarray(values))
        if self._standardize_on_host:
            return tensor
        tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        return torch.addcmul(self._shift, tensor, self._scale)

    # -- residency ------------------------------------------------------------
    def _fits_resident(self) -> bool:
        budget = self.config.resident_bytes
        if budget is None:
            if self.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(self.device)
                budget = int(0.8 * free)
            else:
                budget = DEFAULT_HOST_RESIDENT_BYTES
        return self.n_rows * self.n_columns * 4 <= budget

    def _load_resident(self) -> torch.Tensor:
        resident = torch.empty(
            (self.n_rows, self.n_columns), dtype=torch.float32, device=self.device
        )
        block = self.config.block_rows
        for start in range(0, self.n_rows, block):
            values = self._read(self.rows[start : start + block], standardize=True)
            resident[start : start + values.shape[0]] = torch.from_numpy(values).to(self.device)
        logger.debug(
            "%s split resident on %s (%d x %d)",
            self.split,
            self.device,
            self.n_rows,
            self.n_columns,
        )
        return resident


def _is_range(indices: np.ndarray) -> bool:
    return bool(indices[-1] - indices[0] + 1 == indices.size)
