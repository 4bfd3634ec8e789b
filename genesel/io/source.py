"""MatrixSource: a samples x features matrix read by row blocks, with its names.

Every reader in :mod:`genesel.io` returns a :class:`MatrixSource`. Its ``data`` is any
array-like with ``shape``, ``dtype``, ``ndim`` and row slicing (``data[a:b]`` or
``data[a:b, c:d]``) that returns a dense ndarray: an h5py Dataset, an ``np.memmap``, or
one of the thin adapters below for data stored transposed, sparse, split over several
files or reached through a sparse probe -> gene product. Nothing here loads the whole
matrix.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeGuard

import numpy as np
import pandas as pd

from genesel.errors import InputFileError

FeatureKind = Literal["probe", "gene"]

#: Ids shown when an error lists offending names.
N_EXAMPLES = 5
#: Which axis of a text or GCTX matrix holds the features.
Orientation = Literal["samples-by-genes", "genes-by-samples"]
ORIENTATIONS: tuple[Orientation, ...] = ("samples-by-genes", "genes-by-samples")


def is_orientation(value: object) -> TypeGuard[Orientation]:
    """Whether ``value`` is one of :data:`ORIENTATIONS`."""
    return value in ORIENTATIONS


def as_float_block(block: Any) -> np.ndarray:
    """Return ``block`` as a dense C-ordered float ndarray (float32 kept, others float64)."""
    if hasattr(block, "toarray"):
        block = block.toarray()
    block = np.asarray(block)
    dtype = np.float32 if block.dtype == np.float32 else np.float64
    return np.ascontiguousarray(block, dtype=dtype)


def _split_key(key: Any, n_rows: int, n_cols: int) -> tuple[slice, slice]:
    """Split a ``data[...]`` key into a row slice and a column slice (slices only)."""
    if not isinstance(key, tuple):
        key = (key,)
    if len(key) > 2 or not all(isinstance(k, slice) for k in key):
        raise TypeError(f"only row/column slices are supported, got {key!r}")
    rows = slice(*key[0].indices(n_rows))
    cols = slice(*key[1].indices(n_cols)) if len(key) == 2 else slice(0, n_cols, 1)
    return rows, cols


class RowBlockArray:
    """Base of the adapters: ``shape``/``dtype``/``ndim`` and slice-only ``__getitem__``.

    Subclasses implement :meth:`_rows` returning rows ``start:stop`` (all columns) as a
    dense ndarray; column slices are applied afterwards.
    """

    shape: tuple[int, int]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        """Always 2."""
        return 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, cols = _split_key(key, *self.shape)
        if rows.step != 1:
            raise TypeError("row slices must have step 1")
        block = self._rows(rows.start, max(rows.start, rows.stop))
        if cols != slice(0, self.shape[1], 1):
            block = block[:, cols]
        return block

    def _rows(self, start: int, stop: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __dask_tokenize__(self) -> object:
        # Adapters wrap open files that cannot be hashed; their identity is enough.
        return (type(self).__name__, id(self), self.shape, str(self.dtype))


class TransposedRows(RowBlockArray):
    """Rows of ``stored.T`` for a features x samples array ``stored`` (e.g. an h5py Dataset)."""

    def __init__(self, stored: Any) -> None:
        self.stored = stored
        self.shape = (int(stored.shape[1]), int(stored.shape[0]))
        self.dtype = np.dtype(stored.dtype)

    def _rows(self, start: int, stop: int) -> np.ndarray:
        return as_float_block(np.asarray(self.stored[:, start:stop]).T)


class SparseRows(RowBlockArray):
    """Dense row blocks of a sparse matrix (scipy, or AnnData's backed CSR/CSC dataset)."""

    def __init__(self, stored: Any) -> None:
        self.stored = stored
        self.shape = (int(stored.shape[0]), int(stored.shape[1]))
        self.dtype = np.dtype(stored.dtype)

    def _rows(self, start: int, stop: int) -> np.ndarray:
        return as_float_block(self.stored[start:stop])


class DenseRows(RowBlockArray):
    """Row blocks of any array-like that slices rows (zarr arrays, in-memory arrays)."""

    def __init__(self, stored: Any) -> None:
        self.stored = stored
        self.shape = (int(stored.shape[0]), int(stored.shape[1]))
        self.dtype = np.dtype(stored.dtype)

    def _rows(self, start: int, stop: int) -> np.ndarray:
        return as_float_block(self.stored[start:stop])


class StackedRows(RowBlockArray):
    """Several arrays with the same columns, one after the other (row-wise concatenation)."""

    def __init__(self, parts: Sequence[Any]) -> None:
        if not parts:
            raise ValueError("StackedRows needs at least one part")
        widths = {int(p.shape[1]) for p in parts}
        if len(widths) != 1:
            raise ValueError(f"parts have different numbers of columns: {sorted(widths)}")
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [int(p.shape[0]) for p in parts])
        self.shape = (int(self.offsets[-1]), widths.pop())
        self.dtype = np.result_type(*[p.dtype for p in parts])

    def _rows(self, start: int, stop: int) -> np.ndarray:
        pieces = []
        for part, first, end in zip(self.parts, self.offsets[:-1], self.offsets[1:], strict=True):
            lo, hi = max(start, first), min(stop, end)
            if lo < hi:
                pieces.append(np.asarray(part[lo - first : hi - first], dtype=self.dtype))
        if not pieces:
            return np.empty((0, self.shape[1]), dtype=self.dtype)
        return as_float_block(np.concatenate(pieces, axis=0))


class SideBySideRows(RowBlockArray):
    """Several arrays with the same rows, placed side by side (column-wise concatenation)."""

    def __init__(self, parts: Sequence[Any]) -> None:
        if not parts:
            raise ValueError("SideBySideRows needs at least one part")
        heights = {int(p.shape[0]) for p in parts}
        if len(heights) != 1:
            raise ValueError(f"parts have different numbers of rows: {sorted(heights)}")
        self.parts = list(parts)
        self.shape = (heights.pop(), int(sum(int(p.shape[1]) for p in parts)))
        self.dtype = np.result_type(*[p.dtype for p in parts])

    def _rows(self, start: int, stop: int) -> np.ndarray:
        return as_float_block(
            np.concatenate(
                [np.asarray(p[start:stop], dtype=self.dtype) for p in self.parts], axis=1
            )
        )


class MappedRows(RowBlockArray):
    """Row blocks of ``stored`` passed through ``transform`` (e.g. a sparse probe -> gene product)."""

    def __init__(
        self, stored: Any, transform: Callable[[np.ndarray], np.ndarray], n_cols: int, dtype: Any
    ) -> None:
        self.stored = stored
        self.transform = transform
        self.shape = (int(stored.shape[0]), int(n_cols))
        self.dtype = np.dtype(dtype)

    def _rows(self, start: int, stop: int) -> np.ndarray:
        return as_float_block(self.transform(as_float_block(self.stored[start:stop])))


class MatrixSource:
    """A samples x features matrix with names, read by row blocks.

    Parameters
    ----------
    path
        The file (or directory) the matrix comes from; used in error messages.
    data
        Array-like samples x features (see the module docstring).
    obs_names, var_names
        Sample and feature ids (unique).
    var
        Feature annotation indexed like ``var_names`` (may have no columns).
    obs
        Sample annotation indexed like ``obs_names`` (e.g. a ``split`` column).
    feature_kind
        ``"probe"`` when the features are microarray probes to be averaged into genes,
        ``"gene"`` otherwise.
    uns
        Unstructured metadata of the input (e.g. a simulator's ``noise_floor``).
    gene_map
        Probe -> gene map to average probes with (see :mod:`genesel.io.gene_maps`);
        ``None`` means the D-GEX maps.
    on_close
        Callables run by :meth:`close` (closing files, removing temporary copies).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        data: Any,
        *,
        obs_names: Sequence[str] | pd.Index,
        var_names: Sequence[str] | pd.Index,
        var: pd.DataFrame | None = None,
        obs: pd.DataFrame | None = None,
        feature_kind: FeatureKind = "gene",
        uns: dict[str, Any] | None = None,
        gene_map: pd.DataFrame | None = None,
        on_close: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.path = Path(path)
        self.data = data
        self.obs_names = pd.Index(np.asarray(obs_names).astype(str), name=None)
        self.var_names = pd.Index(np.asarray(var_names).astype(str), name=None)
        self.var = var.copy() if var is not None else pd.DataFrame(index=self.var_names)
        self.obs = obs.copy() if obs is not None else pd.DataFrame(index=self.obs_names)
        if len(self.var) == len(self.var_names):
            self.var.index = self.var_names
        if len(self.obs) == len(self.obs_names):
            self.obs.index = self.obs_names
        if feature_kind not in ("probe", "gene"):
            raise ValueError(f"feature_kind must be 'probe' or 'gene', not {feature_kind!r}")
        self.feature_kind: FeatureKind = feature_kind
        self.uns = dict(uns or {})
        self.gene_map = gene_map
        self._on_close = list(on_close)
        self._closed = False
        try:
            self._validate()
        except Exception:
            self.close()
            raise

    @property
    def n_obs(self) -> int:
        """Number of samples (rows)."""
        return int(self.data.shape[0])

    @property
    def n_vars(self) -> int:
        """Number of features (columns)."""
        return int(self.data.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_obs, n_vars)``."""
        return self.n_obs, self.n_vars

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Return rows ``start:stop`` as a dense float32/float64 ndarray."""
        return as_float_block(self.data[start:stop])

    def close(self) -> None:
        """Release files and temporary copies; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for action in reversed(self._on_close):
            action()

    def __enter__(self) -> MatrixSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MatrixSource({str(self.path)!r}, {self.n_obs} samples x {self.n_vars} {self.feature_kind}s)"

    def _validate(self) -> None:
        if len(self.data.shape) != 2:
            raise InputFileError(
                self.path, f"expected a 2-D matrix, found shape {tuple(self.data.shape)}"
            )
        if self.n_obs == 0 or self.n_vars == 0:
            raise InputFileError(
                self.path, f"the matrix is empty ({self.n_obs} samples x {self.n_vars} features)"
            )
        if len(self.obs_names) != self.n_obs:
            raise InputFileError(
                self.path, f"{len(self.obs_names)} sample ids for {self.n_obs} rows"
            )
        if len(self.var_names) != self.n_vars:
            raise InputFileError(
                self.path, f"{len(self.var_names)} feature ids for {self.n_vars} columns"
            )
        if len(self.var) != self.n_vars or len(self.obs) != self.n_obs:
            raise InputFileError(
                self.path, "the sample or feature annotation does not match the matrix shape"
            )
        check_unique(self.path, self.obs_names, "sample")
        check_unique(self.path, self.var_names, "feature")


def check_unique(path: str | os.PathLike[str], names: pd.Index, what: str) -> None:
    """Raise :class:`InputFileError` naming a few repeated ids if ``names`` has duplicates."""
    if names.is_unique:
        return
    repeated = names[names.duplicated()].unique()
    raise InputFileError(
        path,
        f"{len(repeated)} {what} id(s) occur more than once, e.g. {list(repeated[:N_EXAMPLES])}",
        f"make the {what} ids unique (e.g. AnnData's var_names_make_unique / obs_names_make_unique)",
    )
