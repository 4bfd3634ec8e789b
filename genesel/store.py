"""The preprocessed store: an ``.h5ad`` whose rows are grouped by split.

`genesel preprocess` writes it with :class:`StoreWriter`; every trainer, imputer and
evaluation reads it through :class:`Store`, which also wraps an in-memory or backed
AnnData for the scanpy API.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
import pandas as pd

from genesel import __version__
from genesel.errors import InputFileError, StoreVersionError
from genesel.io.h5ad_writer import DenseH5adWriter
from genesel.io.source import check_unique
from genesel.statistics import GeneMoments, standardisation

logger = logging.getLogger(__name__)

#: Bumped whenever the layout of the store changes incompatibly.
STORE_VERSION = 1
#: The splits, in the order their rows appear in the store.
SPLITS = ("train", "validation", "test")
#: Columns every store's ``var`` carries.
REQUIRED_VAR_COLUMNS = ("symbol", "landmark", "mean", "std")
#: Prefix of the columns :func:`genesel.tl.prepare` writes into an AnnData's ``obs``/``var``
#: (``genesel_split``, ``genesel_mean``, ...), so that they never collide with scanpy's own
#: (``sc.pp.scale`` writes ``var["mean"]`` and ``var["std"]``).
ANNDATA_PREFIX = "genesel_"


def anndata_column(columns: pd.Index, name: str) -> str | None:
    """The column holding store annotation ``name`` in an AnnData's ``obs`` or ``var``.

    The prefixed column (``genesel_<name>``, written by :func:`genesel.tl.prepare`) when
    there is one, else the store's own unprefixed column, else ``None``.
    """
    for candidate in (ANNDATA_PREFIX + name, name):
        if candidate in columns:
            return candidate
    return None


class StoreWriter:
    """Stream standardisation-ready rows into a store, grouped by split.

    Rows arrive in input order with their split label; each split has its own write
    cursor, so the output holds all train rows, then validation, then test, each in
    input order. Train-split per-gene sums are accumulated as rows pass
    (:class:`~genesel.statistics.GeneMoments`), giving the mean and standard deviation
    without a second pass.

    Parameters
    ----------
    path
        Destination ``.h5ad``.
    var
        Gene annotation (index = gene id); ``symbol`` and ``landmark`` are required.
    split_sizes
        Number of rows of each split that will be written.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, var: pd.DataFrame, split_sizes: Mapping[str, int]
    ) -> None:
        unknown = set(split_sizes) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split names {sorted(unknown)}; expected {SPLITS}")
        self.var = var.copy()
        self.var.index.name = "gene_id"
        self.split_sizes = {name: int(split_sizes.get(name, 0)) for name in SPLITS}
        self.n_obs = sum(self.split_sizes.values())
        offsets = np.cumsum([0, *self.split_sizes.values()])
        self._cursor = dict(zip(SPLITS, offsets[:-1].tolist(), strict=True))
        self._end = dict(zip(SPLITS, offsets[1:].tolist(), strict=True))
        self._names: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
        self._moments = GeneMoments(len(var))
        self._writer = DenseH5adWriter(path, n_obs=self.n_obs, var=self.var, dtype=np.float32)
        self.path = Path(path)

    def write_block(self, block: np.ndarray, splits: np.ndarray, obs_names: Sequence[str]) -> None:
        """Append the rows of ``block`` to their splits."""
        splits = np.asarray(splits)
        names = np.asarray(obs_names, dtype=object)
        for name in SPLITS:
            mask = splits == name
            count = int(mask.sum())
            if not count:
                continue
            rows = block[mask]
            start = self._cursor[name]
            if start + count > self._end[name]:
                raise ValueError(f"more {name} rows than announced ({self.split_sizes[name]})")
            self._writer.write_rows(start, rows.astype(np.float32, copy=False))
            self._cursor[name] = start + count
            self._names[name].append(names[mask])
            if name == "train":
                self._moments.add(rows)

    def close(
        self, *, obs: pd.DataFrame | None = None, uns: Mapping[str, Any] | None = None
    ) -> Path:
        """Finish the store: write ``obs``/``var``/``uns`` and move it into place.

        Parameters
        ----------
        obs
            Extra per-sample columns, indexed by sample id (any order); ``split`` is added.
        uns
            Parameters recorded under ``uns["genesel"]``.
        """
        for name in SPLITS:
            if self._cursor[name] != self._end[name]:
                raise ValueError(f"{name}: wrote {self._cursor[name]} of {self._end[name]} rows")
        mean, std = self._moments.mean_std()
        self.var["mean"] = mean
        self.var["std"], constant = standardisation(std)
        self.var["constant"] = constant
        names = np.concatenate(
            [
                np.concatenate(parts) if parts else np.empty(0, dtype=object)
                for parts in self._names.values()
            ]
        )
        split = pd.Categorical(
            np.repeat(SPLITS, list(self.split_sizes.values())), categories=list(SPLITS)
        )
        frame = pd.DataFrame({"split": split}, index=pd.Index(names.astype(str), name="sample_id"))
        if obs is not None and len(obs.columns):
            extra = obs.drop(columns=["split"], errors="ignore").reindex(frame.index)
            frame = pd.concat([frame, extra], axis=1)
        info = dict(uns or {})
        info.update(
            store_version=STORE_VERSION,
            genesel_version=__version__,
            split_sizes=dict(self.split_sizes),
            n_constant_genes=int(constant.sum()),
        )
        self._writer.var = self.var
        path = self._writer.close(obs=frame, uns={"genesel": _clean_uns(info)})
        logger.info("wrote store %s (%d samples x %d genes)", path, self.n_obs, len(self.var))
        return path

    def abort(self, error: BaseException | None = None) -> None:
        """Drop the partially written store (``error``: what stopped it; see :meth:`DenseH5adWriter.abort`)."""
        self._writer.abort(error)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort(exc)


class Store:
    """Read access to a preprocessed store or an AnnData with the same annotation.

    Parameters
    ----------
    X
        Samples x genes, sliceable by rows (h5py dataset, ndarray, sparse or backed matrix).
    var
        Gene annotation with ``symbol``, ``landmark``, ``mean`` and ``std``.
    obs
        Sample annotation with a ``split`` column.
    uns
        The ``uns["genesel"]`` parameters.
    path
        File the store was opened from, if any.
    """

    def __init__(
        self,
        X: Any,
        *,
        var: pd.DataFrame,
        obs: pd.DataFrame,
        uns: Mapping[str, Any] | None = None,
        path: Path | None = None,
        file: h5py.File | None = None,
    ) -> None:
        self.X = X
        self.var = var
        self.obs = obs
        self.uns = dict(uns or {})
        self.path = path
        self._file = file
        self.mean = var["mean"].to_numpy(np.float32)
        self.std = var["std"].to_numpy(np.float32)

    # -- construction -------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Store:
        """Open a store written by ``genesel preprocess`` (read-only, out-of-core)."""
        path = Path(path)
        if not path.exists():
            raise InputFileError(path, "no such store", "run `genesel preprocess` first")
        try:
            file = h5py.File(path, "r")
        except OSError as error:
            raise InputFileError(path, f"not a readable HDF5/.h5ad file ({error})") from None
        try:
            from anndata.io import read_elem
        except ImportError:  # anndata < 0.11
            from anndata.experimental import read_elem
        try:
            uns = read_elem(file["uns"]) if "uns" in file else {}
            info = uns.get("genesel")
            if info is None or "store_version" not in info:
                raise InputFileError(
                    path,
                    "not a genesel store (no uns['genesel'])",
                    "preprocess the data with `genesel preprocess`",
                )
            if int(info["store_version"]) != STORE_VERSION:
                raise StoreVersionError(
                    path,
                    f"store version {int(info['store_version'])} but this genesel reads version {STORE_VERSION}",
                    "re-run `genesel preprocess` with this version",
                )
            var = read_elem(file["var"])
            obs = read_elem(file["obs"])
            missing = [c for c in REQUIRED_VAR_COLUMNS if c not in var.columns]
            if missing or "split" not in obs.columns:
                raise InputFileError(
                    path,
                    f"store lacks var columns {missing} or obs['split']",
                    "re-run `genesel preprocess`",
                )
            check_unique(path, pd.Index(var.index.astype(str)), "gene")
        except BaseException:
            file.close()
            raise
        return cls(file["X"], var=var, obs=obs, uns=info, path=path, file=file)

    @classmethod
    def from_anndata(cls, adata: Any, *, layer: str | None = None) -> Store:
        """Wrap an AnnData (in memory or backed) that carries store annotation.

        The annotation is read from the prefixed columns :func:`genesel.tl.prepare` writes
        (``var["genesel_mean"]``, ..., ``obs["genesel_split"]``), or, for a store read with
        ``anndata.read_h5ad``, from the store's own ``var["mean"]``, ..., ``obs["split"]``.
        """
        X = adata.layers[layer] if layer else adata.X
        where = getattr(adata, "filename", None) or "<AnnData>"
        var_names = {c: anndata_column(adata.var.columns, c) for c in REQUIRED_VAR_COLUMNS}
        missing = [c for c, name in var_names.items() if name is None]
        if missing:
            raise InputFileError(
                where,
                f"var lacks columns {[ANNDATA_PREFIX + c for c in missing]}",
                "compute them with genesel.tl.prepare(adata)",
            )
        split_name = anndata_column(adata.obs.columns, "split")
        if split_name is None:
            raise InputFileError(
                where,
                f"obs lacks a {ANNDATA_PREFIX}split column",
                "compute it with genesel.tl.prepare(adata)",
            )
        # a repeated gene id would make panel look-ups silently take its first column
        check_unique(where, pd.Index(adata.var.index.astype(str)), "gene")
        var = pd.DataFrame(
            {c: adata.var[name].to_numpy() for c, name in var_names.items()}, index=adata.var.index
        )
        obs = pd.DataFrame({"split": adata.obs[split_name].to_numpy()}, index=adata.obs.index)
        info = dict(adata.uns.get("genesel", {})) if hasattr(adata, "uns") else {}
        return cls(X, var=var, obs=obs, uns=info)

    # -- shape and annotation ----------------------------------------------
    @property
    def n_obs(self) -> int:
        """Number of samples."""
        return int(self.X.shape[0])

    @property
    def n_vars(self) -> int:
        """Number of genes."""
        return int(self.X.shape[1])

    @property
    def gene_ids(self) -> pd.Index:
        """Gene identifiers (``var_names``)."""
        return self.var.index

    @property
    def landmark_mask(self) -> np.ndarray:
        """Boolean mask of the L1000 landmark genes."""
        return self.var["landmark"].to_numpy(bool)

    @property
    def noise_floor(self) -> float | None:
        """The simulator's best achievable standardised MSE, when the data is simulated."""
        value = self.uns.get("noise_floor")
        return None if value is None else float(value)

    def split_indices(self, name: str) -> np.ndarray:
        """Return the sorted row indices of split ``name``."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        labels = self.obs["split"].to_numpy()
        return np.flatnonzero(labels == name)

    def require_split(self, name: str) -> np.ndarray:
        """Like :meth:`split_indices`, but fail clearly when the split is empty."""
        indices = self.split_indices(name)
        if indices.size == 0:
            raise InputFileError(
                self.path or "<AnnData>",
                f"the {name} split is empty",
                "re-run preprocessing with a non-empty split",
            )
        return indices

    # -- data -----------------------------------------------------------
    def read_rows(
        self, rows: slice | np.ndarray, *, standardize: bool = True, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Read rows (a slice or sorted indices) as float32, optionally standardised."""
        if isinstance(rows, np.ndarray) and rows.size and _is_contiguous(rows):
            rows = slice(int(rows[0]), int(rows[-1]) + 1)
        if isinstance(rows, slice) and isinstance(self.X, h5py.Dataset) and out is not None:
            start, stop, _ = rows.indices(self.n_obs)
            self.X.read_direct(out, source_sel=np.s_[start:stop], dest_sel=np.s_[: stop - start])
            block = out[: stop - start]
        else:
            block = np.asarray(_dense(self.X[rows]), dtype=np.float32)
            if out is not None:
                out[: block.shape[0]] = block
                block = out[: block.shape[0]]
        self._check_finite(block, rows)
        if standardize:
            if not block.flags.writeable or (
                isinstance(self.X, np.ndarray) and np.may_share_memory(block, self.X)
            ):
                block = block.copy()
            block -= self.mean
            block /= self.std
        return block

    def _check_finite(self, block: np.ndarray, rows: slice | np.ndarray) -> None:
        """Raise :class:`InputFileError` naming the first row of ``block`` holding NaN or inf."""
        finite = np.isfinite(block)
        if finite.all():
            return
        first = int(np.flatnonzero(~finite.all(axis=1))[0])
        if isinstance(rows, slice):
            index = rows.indices(self.n_obs)[0] + first
        else:
            index = int(np.asarray(rows)[first])
        sample = str(self.obs.index[index]) if index < len(self.obs) else f"row {index}"
        n_bad = int(block.size - np.count_nonzero(finite))
        raise InputFileError(
            self.path if self.path is not None else "<store>",
            f"non-finite values (NaN or inf) in the data: {n_bad} in the rows read, the first at sample {sample!r} (row {index})",
            "the store is damaged; re-run `genesel preprocess` to rebuild it",
        )

    def standardize(self, values: np.ndarray) -> np.ndarray:
        """Map values in store units to standardised units."""
        return (np.asarray(values, dtype=np.float32) - self.mean) / self.std

    def unstandardize(self, values: np.ndarray) -> np.ndarray:
        """Map standardised values back to store units."""
        return np.asarray(values, dtype=np.float32) * self.std + self.mean

    # -- lifetime -------------------------------------------------------
    def close(self) -> None:
        """Close the underlying file, if the store owns one."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        sizes = {name: int((self.obs["split"] == name).sum()) for name in SPLITS}
        return f"Store({self.path or 'in memory'}, {self.n_obs} samples x {self.n_vars} genes, splits={sizes})"


def store_fingerprint(store: Store) -> dict[str, Any]:
    """What identifies a store's content for derived files: shape, genes, splits, statistics.

    ``sha256`` covers the gene ids (in order), the per-gene means and standard deviations
    and every sample's split, so a store with permuted or other genes, other statistics or
    other split sizes has another fingerprint. Moments files and training checkpoints
    record it and refuse a store that does not match.
    """
    digest = hashlib.sha256()
    digest.update("\n".join(store.gene_ids.astype(str)).encode())
    digest.update(store.var["mean"].to_numpy(np.float64).tobytes())
    digest.update(store.var["std"].to_numpy(np.float64).tobytes())
    digest.update(store.obs["split"].astype(str).str.cat(sep=",").encode())
    return {"n_obs": store.n_obs, "n_vars": store.n_vars, "sha256": digest.hexdigest()}


def open_store(path: str | os.PathLike[str]) -> Store:
    """Open a preprocessed store; see :meth:`Store.open`."""
    return Store.open(path)


def _is_contiguous(indices: np.ndarray) -> bool:
    return bool(indices[-1] - indices[0] + 1 == indices.size and np.all(np.diff(indices) == 1))


def _dense(block: Any) -> np.ndarray:
    return block.toarray() if hasattr(block, "toarray") else np.asarray(block)


def _clean_uns(value: Any) -> Any:
    """Make ``uns`` content writable by anndata (no None, tuples as lists)."""
    if isinstance(value, Mapping):
        return {str(k): _clean_uns(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple | list):
        items = [_clean_uns(v) for v in value]
        return (
            np.asarray(items)
            if items and all(isinstance(v, int | float | np.number) for v in items)
            else [str(v) for v in items]
        )
    if isinstance(value, Path):
        return str(value)
    return value
