"""Gene-by-gene moments of a store: one pass per split, then every linear panel without data.

For each split the pass accumulates, in float64, the row count, ``sum z`` and the ``D x D``
cross-product ``sum z z^T`` of the standardised values ``z = (x - mean) / std`` (train
statistics, so the sums are shifted by the train means and stay accurate). Any panel's
linear decoder, its validation error for every ridge penalty and its exact test errors
are then small dense computations on slices of these matrices
(:func:`panel_statistics` feeds :mod:`genesel.impute.ridge`).

The moments live in one HDF5 file written atomically beside the store, with the store's
fingerprint; :func:`open_moments` refuses a file made from another store. Memory: one row
block plus one ``D x D`` float64 matrix while computing (``8 D^2`` bytes: 0.88 GB at
D = 10,463); reading a panel touches only its ``K`` rows of each matrix.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np
import scipy.linalg.blas
import torch
from tqdm.auto import tqdm

from genesel import __version__
from genesel.blocks import DEFAULT_BLOCK_ROWS, iter_row_blocks
from genesel.errors import ConfigError, InputFileError
from genesel.impute.ridge import PanelStatistics, shift_cross_products
from genesel.io.atomic import atomic_output
from genesel.store import SPLITS, Store, store_fingerprint

logger = logging.getLogger(__name__)

#: Bumped when the file layout changes.
MOMENTS_FORMAT_VERSION = 1
#: Arithmetic of the per-block products.
PRECISIONS = ("float64", "float32")
#: Columns mirrored at a time when the upper triangle is copied into the lower one.
SYMMETRIZE_BLOCK = 512
#: Default memory budget for the ``D x D`` matrices (GiB): half the machine's memory.
DEFAULT_MEMORY_FRACTION = 0.5


def machine_memory_bytes() -> int:
    """Physical memory of this machine."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def check_memory(n_vars: int, *, max_memory_gib: float | None) -> None:
    """Fail clearly when two ``D x D`` float64 matrices exceed the memory budget."""
    budget = (
        DEFAULT_MEMORY_FRACTION * machine_memory_bytes()
        if max_memory_gib is None
        else max_memory_gib * 2**30
    )
    needed = 2 * 8 * n_vars**2
    if needed > budget:
        raise ConfigError(
            f"the gene-by-gene moments of {n_vars} genes need {needed / 2**30:.1f} GiB (two {n_vars} x {n_vars} float64 "
            f"matrices) but the memory budget is {budget / 2**30:.1f} GiB; raise max_memory_gib, or fit each panel "
            "with its own pass over the data (the linear decoder of `genesel impute fit`), which needs K x D only",
            parameter="max_memory_gib",
        )


class GramAccumulator:
    """Running ``sum z``, ``sum z z^T`` of standardised rows, fed one block at a time.

    Parameters
    ----------
    mean, std
        Train statistics defining ``z``.
    precision
        ``"float64"``: blocks standardised and multiplied in float64 (symmetric rank-k
        updates, half the flops of a general product). ``"float32"``: each block's product
        in float32 (about twice as fast on a CPU), summed over blocks in float64.
    device
        ``cpu`` or a CUDA device (general products in the given precision).
    """

    def __init__(
        self,
        mean: np.ndarray,
        std: np.ndarray,
        *,
        precision: str = "float64",
        device: str | torch.device = "cpu",
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.precision = precision
        self.device = torch.device(device)
        n_vars = self.mean.size
        self.n = 0
        self.total = np.zeros(n_vars, dtype=np.float64)
        self.gram: np.ndarray | None
        if self.device.type == "cpu":
            self.gram = np.zeros(
                (n_vars, n_vars), dtype=np.float64, order="F"
            )  # upper triangle filled
            self._gram_device = None
        else:
            self.gram = None
            self._gram_device = torch.zeros(
                (n_vars, n_vars), dtype=torch.float64, device=self.device
            )

    def update(self, block: np.ndarray) -> None:
        """Add the rows of ``block`` (store units, samples x genes)."""
        if not block.shape[0]:
            return
        dtype = np.float64 if self.precision == "float64" else np.float32
        z = ((block.astype(np.float64) - self.mean) / self.std).astype(dtype, copy=False)
        self.total += z.sum(axis=0, dtype=np.float64)
        self.n += block.shape[0]
        if self._gram_device is not None:
            torch_dtype = torch.float64 if self.precision == "float64" else torch.float32
            rows = torch.from_numpy(np.ascontiguousarray(z)).to(self.device, torch_dtype)
            self._gram_device.add_((rows.T @ rows).to(torch.float64))
        elif self.precision == "float64":
            # z.T is D x B and Fortran-ordered: C += z^T z on the upper triangle, in place.
            self.gram = scipy.linalg.blas.dsyrk(
                1.0, z.T, beta=1.0, c=self.gram, trans=0, lower=0, overwrite_c=1
            )
        else:
            product = scipy.linalg.blas.ssyrk(1.0, z.T, trans=0, lower=0)
            self.gram += product

    def result(self) -> tuple[int, np.ndarray, np.ndarray]:
        """``(n, sum z, sum z z^T)`` with the full symmetric matrix (C-ordered float64)."""
        if self._gram_device is not None:
            return self.n, self.total, np.ascontiguousarray(self._gram_device.cpu().numpy())
        # Mirror the upper triangle into the lower one in place, one column block at a time: no
        # D x D copy (np.triu and a sum took three more, 2.5 GiB and 40 s at D = 10,463). The
        # Fortran-ordered symmetric matrix is its own transpose, whose view is C-ordered.
        gram = self.gram
        assert gram is not None  # on the CPU the matrix is held in numpy
        n_vars = gram.shape[0]
        for a in range(0, n_vars, SYMMETRIZE_BLOCK):
            b = min(a + SYMMETRIZE_BLOCK, n_vars)
            gram[b:, a:b] = gram[a:b, b:].T
            diagonal = gram[a:b, a:b]
            diagonal[np.tril_indices(b - a, -1)] = diagonal.T[np.tril_indices(b - a, -1)]
        return self.n, self.total, gram.T


def compute_moments(
    store: Store,
    out: str | os.PathLike[str],
    *,
    splits: tuple[str, ...] = SPLITS,
    precision: str = "float64",
    device: str | torch.device = "cpu",
    block_rows: int = DEFAULT_BLOCK_ROWS,
    max_memory_gib: float | None = None,
    progress: bool = True,
) -> Path:
    """One streaming pass per split; write the moments to ``out`` (HDF5, atomically).

    Parameters
    ----------
    store
        The preprocessed data.
    out
        Destination file (``.h5``).
    splits
        Splits to accumulate (default all three; empty splits are stored with ``n = 0``).
    precision
        ``"float64"`` (default, exact to rounding) or ``"float32"`` block products.
    device
        ``cpu`` or a CUDA device.
    block_rows
        Rows per block.
    max_memory_gib
        Budget for the matrices (default: half the machine's memory); a larger ``D``
        fails with an error pointing to the per-panel path.
    progress
        Show a progress bar.
    """
    check_memory(store.n_vars, max_memory_gib=max_memory_gib)
    mean = store.var["mean"].to_numpy(np.float64)
    std = store.var["std"].to_numpy(np.float64)
    out = Path(out)
    started = time.perf_counter()
    with atomic_output(out) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.attrs["format_version"] = MOMENTS_FORMAT_VERSION
            handle.attrs["genesel_version"] = __version__
            handle.attrs["store_fingerprint"] = json.dumps(
                store_fingerprint(store), sort_keys=True
            )
            handle.attrs["precision"] = precision
            handle.create_dataset(
                "gene_ids",
                data=np.asarray(store.gene_ids.astype(str), dtype=object),
                dtype=h5py.string_dtype(),
            )
            for split in splits:
                rows = store.split_indices(split)
                accumulator = GramAccumulator(mean, std, precision=precision, device=device)
                with tqdm(
                    total=rows.size,
                    desc=f"moments ({split})",
                    unit="rows",
                    disable=not progress,
                    leave=False,
                ) as bar:
                    for _, block in iter_row_blocks(store, rows, block_rows=block_rows):
                        accumulator.update(block)
                        bar.update(block.shape[0])
                n, total, gram = accumulator.result()
                del accumulator
                group = handle.create_group(split)
                group.attrs["n"] = n
                group.create_dataset("total", data=total)
                group.create_dataset("squares", data=np.diagonal(gram).copy())
                # Contiguous (not chunked): a panel's rows are then read straight from the file
                # (Moments.panel_statistics), about 10x faster than an h5py row selection.
                group.create_dataset("gram", data=gram)
                del gram
    logger.info(
        "wrote the moments of %d genes (%s) to %s in %.1f s",
        store.n_vars,
        ", ".join(splits),
        out,
        time.perf_counter() - started,
    )
    return out


class Moments:
    """Read access to a moments file; slices per panel (see :func:`open_moments`)."""

    def __init__(self, path: Path, handle: h5py.File) -> None:
        self.path = path
        self._handle = handle
        self.n_vars = int(handle["gene_ids"].shape[0])
        self._fd: int | None = os.open(path, os.O_RDONLY)

    def n(self, split: str) -> int:
        """Rows of ``split`` summed into the file (0 when absent)."""
        return int(self._handle[split].attrs["n"]) if split in self._handle else 0

    def panel_statistics(self, split: str, panel: np.ndarray) -> PanelStatistics:
        """:class:`PanelStatistics` of ``panel`` over ``split`` (reads ``K`` rows of the matrix)."""
        if split not in self._handle:
            raise InputFileError(
                self.path,
                f"holds no moments of the {split} split",
                "recompute it with `genesel moments`",
            )
        group = self._handle[split]
        panel = np.asarray(panel, dtype=np.int64)
        rows = self._read_rows(group["gram"], panel)
        return PanelStatistics(
            n=int(group.attrs["n"]),
            total=group["total"][:],
            cross=rows,
            squares=group["squares"][:],
            panel=panel,
        )

    def _read_rows(self, dataset: h5py.Dataset, panel: np.ndarray) -> np.ndarray:
        """Rows ``panel`` of a ``D x D`` float64 matrix, in ``panel``'s order.

        A contiguous little-endian dataset is read with one ``preadv`` per run of
        consecutive rows (h5py's row selection costs about 0.35 s of CPU per 943 rows of
        10,463 at GEO scale, this about a tenth of it); a chunked one (files written before
        the layout changed) through h5py.
        """
        order = np.argsort(panel, kind="stable")
        ordered = panel[order]
        offset = dataset.id.get_offset()
        if (
            offset is None
            or self._fd is None
            or dataset.dtype != np.dtype("<f8")
            or dataset.shape != (self.n_vars, self.n_vars)
        ):
            rows = np.empty((panel.size, self.n_vars), dtype=np.float64)
            rows[order] = dataset[ordered]
            return rows
        row_bytes = 8 * self.n_vars
        buffer = np.empty((panel.size, self.n_vars), dtype=np.float64)
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, ordered.size], strict=True):
            view = memoryview(buffer[start:stop].data).cast("B")
            position = offset + int(ordered[start]) * row_bytes
            done = 0
            while done < view.nbytes:
                read = os.preadv(self._fd, [view[done:]], position + done)
                if read <= 0:
                    raise InputFileError(
                        self.path,
                        "ended inside the moments matrix",
                        "recompute it with `genesel moments`",
                    )
                done += read
        if np.array_equal(order, np.arange(panel.size)):
            return buffer
        rows = np.empty_like(buffer)
        rows[order] = buffer
        return rows

    def mean(self, split: str) -> np.ndarray:
        """Mean of ``z`` over ``split`` (standardised units)."""
        group = self._require(split)
        return group["total"][:] / max(int(group.attrs["n"]), 1)

    def second_moment(self, split: str, center: np.ndarray) -> np.ndarray:
        """``(1/n) sum (z - center)(z - center)^T`` over ``split`` (``D x D`` float64, one copy in memory).

        With ``center`` the split's own mean this is its covariance; the validation moment
        about the *train* means is what a train-fitted decoder's validation error needs.
        """
        group = self._require(split)
        n = int(group.attrs["n"])
        if n < 1:
            raise InputFileError(
                self.path,
                f"holds no rows of the {split} split",
                "use a store with rows in that split",
            )
        center = np.asarray(center, dtype=np.float64)
        matrix = np.ascontiguousarray(group["gram"][:], dtype=np.float64)
        shift_cross_products(matrix, group["total"][:], n, center, slice(None))
        matrix /= n
        return matrix

    def _require(self, split: str) -> h5py.Group:
        if split not in self._handle:
            raise InputFileError(
                self.path,
                f"holds no moments of the {split} split",
                "recompute it with `genesel moments`",
            )
        return self._handle[split]

    def close(self) -> None:
        """Close the file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._handle.close()

    def __enter__(self) -> Moments:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_moments(path: str | os.PathLike[str], store: Store) -> Moments:
    """Open a moments file, checking that it was computed from ``store``."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(
            path,
            "no such moments file",
            f"compute it with genesel.moments.compute_moments(store, {str(path)!r}) or `genesel moments`",
        )
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise InputFileError(
            path, f"not a readable HDF5 file ({error})", "recompute it with `genesel moments`"
        ) from None
    try:
        version = handle.attrs.get("format_version")
        if version != MOMENTS_FORMAT_VERSION:
            raise InputFileError(
                path,
                f"moments format {version} is not {MOMENTS_FORMAT_VERSION}",
                "recompute it with `genesel moments`",
            )
        saved = json.loads(handle.attrs["store_fingerprint"])
        current = store_fingerprint(store)
        if saved != current:
            differing = sorted(k for k in current if saved.get(k) != current.get(k))
            raise InputFileError(
                path,
                f"was computed from another store (differs in {', '.join(differing)}) than {store.path or 'the given data'}",
                "recompute it with `genesel moments` on this store",
            )
    except BaseException:
        handle.close()
        raise
    return Moments(path, handle)
