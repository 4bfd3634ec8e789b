"""Write a dense AnnData ``.h5ad`` file block by block, in bounded memory."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
import pandas as pd

from genesel.io.atomic import _remove, disk_full_error, temporary_path

#: Rows per HDF5 chunk of ``X`` unless told otherwise: small enough for random
#: minibatch reads, large enough that a sequential read stays at disk speed.
DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024
#: Disk space reserved for a file beyond ``X``: per sample and gene (names, annotation) and in all.
RESERVE_BYTES_PER_ROW = 1024
RESERVE_MARGIN_BYTES = 1 << 20


def _write_elem(group: h5py.Group, key: str, value: Any) -> None:
    try:
        from anndata.io import write_elem
    except ImportError:  # anndata < 0.11
        from anndata.experimental import write_elem
    write_elem(group, key, value)


def _fallocate(fd: int, n_bytes: int) -> bool:
    """Allocate the first ``n_bytes`` of file ``fd`` on disk with Linux ``fallocate(2)``.

    Returns ``False`` where the file system or platform cannot (glibc's ``posix_fallocate``
    would instead write a byte into every block, slow on network file systems). Raises
    ``OSError`` for anything else, ``ENOSPC`` included.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fallocate = libc.fallocate
    except (OSError, AttributeError):
        return False
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if fallocate(fd, 0, 0, n_bytes) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(code, os.strerror(code))


def chunk_rows_for(
    n_vars: int, dtype: np.dtype | type = np.float32, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> int:
    """Return how many rows of ``n_vars`` values fit in one HDF5 chunk of ``chunk_bytes``."""
    return max(1, int(chunk_bytes // (max(n_vars, 1) * np.dtype(dtype).itemsize)))


class DenseH5adWriter:
    """Stream rows of a dense matrix into an ``.h5ad`` that AnnData can open (also backed).

    The file is written under a temporary name and renamed onto ``path`` by
    :meth:`close` (or when the ``with`` block ends without error). If the block
    raises, the temporary file is deleted and ``path`` is untouched.

    The disk space of the whole file is reserved when it is created (``fallocate(2)``;
    skipped where the file system or platform cannot), so that a full disk stops the writer at once
    with ``OSError(ENOSPC)`` naming ``path``: HDF5 itself reports a full disk as a
    ``RuntimeError`` and can crash when it later releases the file it failed to flush.

    Parameters
    ----------
    path
        Destination ``.h5ad``.
    n_obs
        Number of rows that will be written.
    var
        Per-column annotation; its index becomes ``var_names``.
    dtype
        Storage dtype of ``X``.
    chunk_rows
        Rows per HDF5 chunk when compressed (default: about 8 MiB per chunk).
    compression
        Optional h5py compression filter. ``None`` (default) stores ``X`` contiguously,
        which keeps both block writes and row-range reads at raw disk speed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_obs: int,
        var: pd.DataFrame,
        dtype: np.dtype | type = np.float32,
        chunk_rows: int | None = None,
        compression: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.n_obs = int(n_obs)
        self.var = var
        self._tmp = temporary_path(self.path)
        _remove(self._tmp)
        x_bytes = self.n_obs * len(var) * np.dtype(dtype).itemsize
        self._reserved = False
        try:
            self._file = h5py.File(self._tmp, "w")
            self._reserved = self._reserve(
                x_bytes + RESERVE_BYTES_PER_ROW * (self.n_obs + len(var)) + RESERVE_MARGIN_BYTES
            )
        except BaseException as error:
            full = disk_full_error(error, self.path)
            with contextlib.suppress(Exception):
                self._file.close()
            _remove(self._tmp)
            if full is not None:
                raise full from None
            raise
        # Uncompressed X is stored contiguously: rows can then be written at any offset
        # without read-modify-write of partial chunks, and a row range reads in one go.
        chunks = None
        if compression is not None and self.n_obs and len(var):
            rows = chunk_rows or chunk_rows_for(len(var), dtype)
            chunks = (max(1, min(rows, self.n_obs)), len(var))
        self.X = self._file.create_dataset(
            "X", shape=(self.n_obs, len(var)), dtype=dtype, chunks=chunks, compression=compression
        )
        self.X.attrs["encoding-type"] = "array"
        self.X.attrs["encoding-version"] = "0.2.0"
        self._closed = False

    def write_rows(self, start: int, block: np.ndarray) -> None:
        """Write ``block`` into rows ``start:start + len(block)`` of ``X``."""
        self.X[start : start + block.shape[0]] = block

    def close(self, *, obs: pd.DataFrame, uns: dict[str, Any] | None = None) -> Path:
        """Write ``obs``/``var``/``uns``, close the file and move it into place."""
        if len(obs) != self.n_obs:
            raise ValueError(f"obs has {len(obs)} rows, X has {self.n_obs}")
        f = self._file
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        _write_elem(f, "obs", _stringify_index(obs))
        _write_elem(f, "var", _stringify_index(self.var))
        _write_elem(f, "uns", uns or {})
        for key in ("obsm", "varm", "obsp", "varp", "layers"):
            _write_elem(f, key, {})
        f.flush()
        used = f.id.get_filesize()  # HDF5's end of allocation, before the file closes
        f.close()
        if (
            self._reserved and os.path.getsize(self._tmp) > used
        ):  # give back the reserved space it did not use
            os.truncate(self._tmp, used)
        os.replace(self._tmp, self.path)
        self._closed = True
        return self.path

    def _reserve(self, n_bytes: int) -> bool:
        """Allocate ``n_bytes`` of disk to the temporary file; ``False`` where the file system cannot."""
        fd = os.open(self._tmp, os.O_RDWR)
        try:
            return _fallocate(fd, n_bytes)
        except OSError:
            os.ftruncate(fd, 0)  # whatever was allocated: HDF5 needs room to close the file
            raise
        finally:
            os.close(fd)

    def abort(self, error: BaseException | None = None) -> None:
        """Close and delete the temporary file without touching ``path``.

        Give the ``error`` that stopped the writing: when it came from a full disk, it is
        raised again as ``OSError(ENOSPC)`` naming ``path`` (see
        :func:`~genesel.io.atomic.disk_full_error`; HDF5 reports a full disk as a
        ``RuntimeError``).
        """
        if self._closed:
            return
        full = None if error is None else disk_full_error(error, self.path)
        try:
            if full is not None:
                # HDF5 cannot close a file it failed to flush, and crashes when it tries again
                # at exit: free the file's space first, so that the close can complete
                with contextlib.suppress(OSError):
                    os.truncate(self._tmp, 0)
            with contextlib.suppress(
                Exception
            ):  # the file is dropped: the error that stopped it matters
                self._file.close()
            self.X = self._file = (
                None  # release every HDF5 id of the file now, while it can be closed
            )
        finally:
            _remove(self._tmp)
            self._closed = True
        if full is not None:
            raise full from error

    def __enter__(self) -> DenseH5adWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None or not self._closed:
            # close() was not reached: the output is incomplete, drop it.
            self.abort(exc)


def _stringify_index(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.index = frame.index.astype(str)
    return frame
