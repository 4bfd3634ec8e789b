"""Preprocess an expression matrix into a genesel store, out of core.

Steps, in order (see ``docs/data.md``): probe -> gene averaging (D-GEX), optional log2,
optional near-duplicate removal, the split, optional quantile normalisation (reference
from the train split), per-gene train statistics, and the store with rows grouped by
split. The matrix is streamed by row blocks through a dask graph
(``from_array(...).map_blocks(...)``), computed one block at a time while the next block
is prefetched in a background thread, so memory depends on the block size, not on the
number of samples.
"""

from __future__ import annotations

import functools
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from genesel.errors import ConfigError, InputFileError
from genesel.io.gene_maps import annotate_genes, probe_averaging
from genesel.io.source import MatrixSource
from genesel.split import assign_group_splits, assign_splits, splits_from_column
from genesel.store import StoreWriter

logger = logging.getLogger(__name__)

#: Data whose values stay below this are taken to be log-scale already.
LOGGED_MAX = 50.0
#: ``log2="auto"`` compares this quantile of the sampled values with :data:`LOGGED_MAX`,
#: so that a few outliers do not decide the scale.
LOG_DECISION_QUANTILE = 0.999
#: ``log2="auto"`` still takes data for linear when at most this fraction of the sampled
#: values is negative (background-corrected noise); those values are set to 0 before log2.
LOG_NEGATIVE_FRACTION = 0.001
#: A decision whose quantile lies within this factor of :data:`LOGGED_MAX` is logged as a warning.
LOG_CLOSE_FACTOR = 2.0
#: ``log2(x + LOG_PSEUDOCOUNT)`` keeps zeros finite.
LOG_PSEUDOCOUNT = 1.0
#: Bytes of one float64 block (sets the default ``block_rows``).
BLOCK_BYTES = 64 * 1024**2
#: Rows read from a few places of the input to decide ``log2="auto"``.
LOG_SAMPLE_ROWS = 256
LOG_SAMPLE_PLACES = 4
#: Random projections hashed to find duplicate candidates, and the grid in tolerances.
DUPLICATE_PROJECTIONS = 4
DUPLICATE_GRID_IN_TOLERANCES = 50.0
#: Entries of the input's ``uns["genesel"]`` (e.g. from the simulator) copied to the store.
PASSTHROUGH_UNS = ("noise_floor", "noise_floor_targets", "simulation")
#: ``var`` columns computed here (not copied from the input).
COMPUTED_VAR = ("symbol", "landmark", "mean", "std", "constant", "n_probes")

Log2Option = bool | Literal["auto", "yes", "no"]


# -- pure per-block math ----------------------------------------------------------


def log2_values(block: np.ndarray) -> np.ndarray:
    """Return ``log2(block + 1)``."""
    return np.log2(block + LOG_PSEUDOCOUNT)


def sorted_row_sum(block: np.ndarray) -> np.ndarray:
    """Sum over rows of each row's values sorted ascending (float64)."""
    return np.sort(np.asarray(block, dtype=np.float64), axis=1).sum(axis=0)


def quantile_normalize_rows(block: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Give each row the ``reference`` distribution, keeping its ranks.

    The k-th smallest value of a row becomes ``reference[k]`` (``reference`` sorted
    ascending); a group of tied values gets the mean of the reference values at the
    positions it occupies.
    """
    block = np.asarray(block, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    out = np.empty_like(block)
    for i, row in enumerate(block):  # row by row: faster than the 2-D take/put along axis
        order = np.argsort(row)
        ordered = row[order]
        starts = np.empty(ordered.size, dtype=bool)
        starts[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
        if starts.all():
            out[i, order] = reference
            continue
        group = np.cumsum(starts) - 1
        means = np.bincount(group, weights=reference) / np.bincount(group)
        out[i, order] = means[group]
    return out


@dataclass
class BlockTransform:
    """Input rows -> gene rows: probe averaging, log2 and input checks.

    Parameters
    ----------
    path
        The input, named in errors.
    obs_names, gene_ids
        Ids for error messages.
    to_genes
        Sparse probe -> gene averaging matrix, or ``None`` for gene-level input.
    log2
        Apply ``log2(x + 1)``.
    expect_logged
        Raise if values above :data:`LOGGED_MAX` appear (``log2="auto"`` decided the
        data is logged from a sample of rows).
    """

    path: Path
    obs_names: pd.Index
    gene_ids: pd.Index
    to_genes: sp.csr_matrix | None = None
    log2: bool = False
    expect_logged: bool = False
    probe_ids: pd.Index | None = None
    clip_negative: bool = False

    def __call__(self, raw: np.ndarray, start: int = 0) -> np.ndarray:
        """Transform the input rows ``start:start + len(raw)``."""
        # Work in float32 when the input is float32 (the store's dtype): a float64 copy of
        # every block would double the memory traffic of the write pass for nothing.
        raw = np.asarray(raw)
        if raw.dtype not in (np.float32, np.float64):
            raw = raw.astype(np.float64)
        genes = raw @ self.to_genes if self.to_genes is not None else raw
        genes = np.asarray(genes, dtype=raw.dtype)
        self._check_finite(genes, raw, start)
        if self.log2:
            if self.clip_negative:
                genes = np.maximum(genes, 0, out=genes if genes is not raw else None)
            if genes.min(initial=0.0) < 0:
                row, column = _first(genes < 0)
                raise InputFileError(
                    self.path,
                    f"cannot take log2 of the negative value {genes[row, column]:g} "
                    f"(sample {self.obs_names[start + row]!r}, gene {self.gene_ids[column]!r})",
                    "the data is probably log-scale already: use --log2 no",
                )
            return log2_values(genes)
        if (
            self.expect_logged
            and np.count_nonzero(genes > LOGGED_MAX) > (1 - LOG_DECISION_QUANTILE) * genes.size
        ):
            row, column = _first(genes > LOGGED_MAX)
            raise InputFileError(
                self.path,
                f"sample {self.obs_names[start + row]!r} has the value {genes[row, column]:g}, not log-scale, "
                "while the rows sampled to decide log2='auto' looked log-scale",
                "pass --log2 yes or --log2 no explicitly",
            )
        return genes

    def _check_finite(self, genes: np.ndarray, raw: np.ndarray, start: int) -> None:
        if np.isfinite(genes.sum(dtype=np.float64)):
            return  # a finite total means every value is finite (one pass, no mask)
        finite = np.isfinite(genes)
        if finite.all():
            return
        row, column = _first(~finite)
        where = f"gene {self.gene_ids[column]!r}"
        if self.to_genes is not None and self.probe_ids is not None:
            probes = self.to_genes[:, column].nonzero()[0]
            bad = [self.probe_ids[p] for p in probes if not np.isfinite(raw[row, p])]
            where += f" (probe {bad[0]!r})" if bad else ""
        raise InputFileError(
            self.path,
            f"non-finite value {genes[row, column]} at row {start + row} (sample "
            f"{self.obs_names[start + row]!r}), {where}",
            "remove or impute missing values before preprocessing",
        )


def _first(mask: np.ndarray) -> tuple[int, int]:
    rows, columns = np.nonzero(mask)
    return int(rows[0]), int(columns[0])


# -- duplicates ---------------------------------------------------------------------


@dataclass
class DuplicateFinder:
    """Find samples that repeat an earlier sample up to ``tolerance``, in one pass.

    Each row is projected on a few seeded random directions; the projections, cut on a
    grid of ``50 * tolerance``, are hashed in two tables whose grids are offset by half a
    cell. Rows sharing a cell with an earlier kept row in either table are candidates,
    confirmed when the maximum absolute difference is at most ``tolerance``. Exact
    duplicates are always found; a near-duplicate pair can be missed only when its
    projections straddle cell borders in both tables.
    """

    n_vars: int
    tolerance: float
    read_row: Callable[[int], np.ndarray]
    seed: int = 0
    duplicate_of: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self._directions = rng.standard_normal((self.n_vars, DUPLICATE_PROJECTIONS)) / np.sqrt(
            self.n_vars
        )
        self._grid = max(DUPLICATE_GRID_IN_TOLERANCES * self.tolerance, 1e-9)
        self._tables: tuple[dict[bytes, list[int]], ...] = ({}, {})

    def add_block(self, start: int, block: np.ndarray) -> None:
        """Scan the rows ``start:start + len(block)`` (in input order)."""
        cells = (block @ self._directions) / self._grid
        keys = [np.floor(cells + offset).astype(np.int64) for offset in (0.0, 0.5)]
        for i in range(block.shape[0]):
            row_keys = [k[i].tobytes() for k in keys]
            candidates = dict.fromkeys(
                c
                for table, key in zip(self._tables, row_keys, strict=True)
                for c in table.get(key, ())
            )
            original = next((c for c in candidates if self._same(block, start, c, i)), None)
            if original is not None:
                self.duplicate_of[start + i] = original
                continue
            for table, key in zip(self._tables, row_keys, strict=True):
                table.setdefault(key, []).append(start + i)

    def _same(self, block: np.ndarray, start: int, earlier: int, i: int) -> bool:
        other = block[earlier - start] if earlier >= start else self.read_row(earlier)
        return bool(np.max(np.abs(other - block[i])) <= self.tolerance)


# -- streaming ----------------------------------------------------------------------


def _compute(array: Any) -> np.ndarray:
    return np.asarray(array.compute(scheduler="synchronous"))


def iterate_blocks(
    array: Any,
    block_indices: Sequence[int] | None = None,
    *,
    desc: str = "",
    progress: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first row, block)`` of a row-chunked dask array, prefetching the next block."""
    starts = np.cumsum((0, *array.chunks[0]))
    indices = list(range(len(array.chunks[0]))) if block_indices is None else list(block_indices)
    total = int(sum(array.chunks[0][i] for i in indices))
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        tqdm(total=total, unit="rows", desc=desc, disable=not progress, leave=False) as bar,
    ):
        pending = pool.submit(_compute, array.blocks[indices[0]]) if indices else None
        for position, index in enumerate(indices):
            block = pending.result()  # type: ignore[union-attr]
            if position + 1 < len(indices):
                pending = pool.submit(_compute, array.blocks[indices[position + 1]])
            yield int(starts[index]), block
            bar.update(block.shape[0])


# -- the pipeline ---------------------------------------------------------------------


def preprocess(
    source_or_path: MatrixSource | str | os.PathLike[str] | Any,
    out_path: str | os.PathLike[str],
    *,
    format: str | None = None,
    orientation: str | None = None,
    layer: str | None = None,
    probe_map: str | os.PathLike[str] | pd.DataFrame | None = None,
    log2: Log2Option = "auto",
    force_log: bool = False,
    quantile_normalize: bool = False,
    remove_duplicates: bool = False,
    duplicate_tolerance: float = 1e-3,
    split_column: str | None = None,
    group_column: str | None = None,
    seed: int = 0,
    sizes: Sequence[int] | Mapping[str, int] | None = None,
    block_rows: int | None = None,
    progress: bool = True,
) -> Path:
    """Preprocess an expression matrix into a genesel store (``.h5ad``), out of core.

    Parameters
    ----------
    source_or_path
        A :class:`~genesel.io.source.MatrixSource`, an AnnData (in memory or backed), or a
        path opened with :func:`~genesel.io.open.open_source`.
    out_path
        The store to write (written under a temporary name, renamed when complete).
    format, orientation, layer, probe_map
        Passed to :func:`~genesel.io.open.open_source` when a path is given.
    log2
        ``"auto"``, ``True``/``"yes"`` or ``False``/``"no"``. ``"auto"`` reads 4 x 256 rows
        spread over the input and takes log2(x + 1) when they look linear: the 99.9th
        percentile of the values is >= 50 and at most 0.1% of them are negative (those are
        set to 0 before log2, with a warning). Otherwise the data is taken as log-scale, and
        a later block with more than 0.1% of its values above 50 stops the run. A warning
        names the input and the statistic when the percentile lies within a factor 2 of 50
        or when negative values decided against log2.
    force_log
        With ``log2=True``, log data that looks log-scale already (never negative values).
    quantile_normalize
        Give every sample the same value distribution: the mean of the train samples'
        sorted values, ties averaged.
    remove_duplicates
        Drop samples that repeat an earlier one up to ``duplicate_tolerance`` (max abs
        difference after log2).
    duplicate_tolerance
        See ``remove_duplicates``.
    split_column
        Take the split from this ``obs`` column (train/validation/test, or tr/va/te)
        instead of a seeded random split.
    group_column
        Keep the samples of each value of this ``obs`` column (subject, patient, batch)
        together in one split (seeded, sizes met as closely as whole groups allow), so that
        no test subject is seen in training.
    seed
        Seed of the random split.
    sizes
        ``(train, validation[, test])`` sample counts; default: D-GEX's sizes for 112,171
        samples, D-GEX's fractions otherwise.
    block_rows
        Samples per block (memory use; default about 64 MiB of float64 per block).
    progress
        Show progress bars.

    Returns
    -------
    The store's path. ``X``: float32 samples x genes, rows grouped train, validation,
    test (input order within each); ``obs``: ``split`` and the input's columns; ``var``:
    ``symbol``, ``landmark``, ``n_probes`` (probe input), ``mean``, ``std`` (train only,
    std 1 for constant genes), ``constant``; ``uns["genesel"]``: every parameter here,
    what was decided (``log2_applied``, duplicates removed, split sizes) and the
    input's ``noise_floor`` when it is simulated.
    """
    log2_option = _log2_option(log2)
    if duplicate_tolerance < 0:
        raise ConfigError(f"duplicate_tolerance={duplicate_tolerance!r} must be >= 0")
    if block_rows is not None and (int(block_rows) != block_rows or block_rows < 1):
        raise ConfigError(f"block_rows={block_rows!r} must be a positive integer")
    out_path = Path(out_path)
    source, owned = _as_source(
        source_or_path, format=format, orientation=orientation, layer=layer, probe_map=probe_map
    )
    try:
        if source.path.resolve() == out_path.resolve():
            raise ConfigError(f"the output {out_path} is the input; choose another --out")
        run = _Run(
            source,
            log2_option=log2_option,
            force_log=force_log,
            block_rows=block_rows,
            progress=progress,
        )
        return run.write(
            out_path,
            quantile_normalize=quantile_normalize,
            remove_duplicates=remove_duplicates,
            duplicate_tolerance=float(duplicate_tolerance),
            split_column=split_column,
            group_column=group_column,
            seed=int(seed),
            sizes=sizes,
        )
    finally:
        if owned:
            source.close()


def _log2_option(value: Any) -> str:
    if value is True or value == "yes":
        return "yes"
    if value is False or value == "no":
        return "no"
    if value == "auto":
        return "auto"
    raise ConfigError(f"log2={value!r} must be 'auto', 'yes'/True or 'no'/False")


def _as_source(value: Any, **options: Any) -> tuple[MatrixSource, bool]:
    if isinstance(value, MatrixSource):
        return value, False
    from genesel.io.open import open_source

    if isinstance(value, (str, os.PathLike)):
        return open_source(value, **options), True
    return open_source(value, layer=options["layer"], probe_map=options["probe_map"]), True


class _Run:
    """The state of one preprocessing run: the gene view of the source and the passes."""

    def __init__(
        self,
        source: MatrixSource,
        *,
        log2_option: str,
        force_log: bool,
        block_rows: int | None,
        progress: bool,
    ) -> None:
        import dask.array as da

        self.source = source
        self.progress = progress
        self.info: dict[str, Any] = {
            "input": str(source.path),
            "input_features": source.feature_kind,
            "n_input_samples": source.n_obs,
            "n_input_features": source.n_vars,
            "log2": log2_option,
            "force_log": bool(force_log),
            "log_pseudocount": LOG_PSEUDOCOUNT,
        }
        if source.feature_kind == "probe":
            averaging = probe_averaging(source.var_names, source.gene_map, path=source.path)
            self.var = averaging.genes.copy()
            to_genes: sp.csr_matrix | None = averaging.matrix
            self.info["probe_averaging"] = {
                "n_genes": len(self.var),
                "n_genes_without_probes": len(averaging.missing_genes),
                "n_probes_without_gene": averaging.n_unmatched_probes,
            }
        else:
            self.var = annotate_genes(source.var_names, source.var)
            extra = [
                c
                for c in source.var.columns
                if c not in COMPUTED_VAR and _simple_column(source.var[c])
            ]
            self.var = pd.concat([self.var, source.var[extra].set_axis(self.var.index)], axis=1)
            to_genes = None
        n_genes = len(self.var)
        widest = max(source.n_vars, n_genes)
        self.block_rows = int(block_rows or max(1, min(source.n_obs, BLOCK_BYTES // (8 * widest))))
        self.transform = BlockTransform(
            source.path,
            source.obs_names,
            self.var.index,
            to_genes=to_genes,
            probe_ids=source.var_names,
        )
        self._decide_log2(log2_option, force_log)
        raw = da.from_array(
            source.data, chunks=(self.block_rows, source.n_vars), name=False, fancy=False
        )
        self.genes = raw.map_blocks(
            self._transform_block,
            chunks=(raw.chunks[0], (n_genes,)),
            dtype=np.result_type(raw.dtype, np.float32),
            name=_unique_name("genes"),
        )

    def _transform_block(
        self, raw: np.ndarray, block_info: dict[Any, Any] | None = None
    ) -> np.ndarray:
        start = block_info[0]["array-location"][0][0] if block_info else 0
        return self.transform(raw, start)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Gene rows ``start:stop`` after averaging and log2 (outside dask, for random reads)."""
        return self.transform(self.source.read_rows(start, stop), start)

    # -- log2 ------------------------------------------------------------------------

    def _decide_log2(self, option: str, force_log: bool) -> None:
        if option == "no":
            self.info["log2_applied"] = False
            return
        n_obs, rows = self.source.n_obs, min(LOG_SAMPLE_ROWS, self.block_rows)
        places = np.unique(np.linspace(0, max(0, n_obs - rows), LOG_SAMPLE_PLACES).astype(int))
        sample = np.concatenate([self.rows(int(a), min(n_obs, int(a) + rows)) for a in places])
        low, high = float(sample.min()), float(sample.max())
        if option == "auto":
            apply = self._auto_log2(sample)
        else:
            looks_logged = low < 0 or high < LOGGED_MAX
            if low < 0:
                raise InputFileError(
                    self.source.path,
                    f"has negative values (min {low:g}): cannot take log2",
                    "use --log2 no",
                )
            if looks_logged and not force_log:
                raise InputFileError(
                    self.source.path,
                    f"looks log-scale already (max {high:g} < {LOGGED_MAX:g}): refusing to log it again",
                    "use --log2 no, or --force-log if the data really is linear",
                )
            apply = True
        self.transform.log2 = apply
        self.info["log2_applied"] = apply

    def _auto_log2(self, sample: np.ndarray) -> bool:
        """Decide ``log2="auto"`` on sampled rows: linear when the 99.9th percentile is >= 50 and <= 0.1% are negative."""
        path = self.source.path
        quantile = float(np.quantile(sample, LOG_DECISION_QUANTILE))
        n_negative = int(np.count_nonzero(sample < 0))
        negative_fraction = n_negative / max(1, sample.size)
        self.info["log2_auto_quantile"] = quantile
        self.info["log2_auto_negative_fraction"] = negative_fraction
        high_enough = quantile >= LOGGED_MAX
        apply = high_enough and negative_fraction <= LOG_NEGATIVE_FRACTION
        statistic = (
            f"99.9th percentile {quantile:.3g} (threshold {LOGGED_MAX:g}), "
            f"{n_negative} of {sample.size} sampled values negative ({negative_fraction:.2%}; at most {LOG_NEGATIVE_FRACTION:.1%} allowed)"
        )
        decision = "taking log2(x + 1)" if apply else "taking it as log-scale already, not logging"
        if LOGGED_MAX / LOG_CLOSE_FACTOR <= quantile < LOGGED_MAX * LOG_CLOSE_FACTOR:
            logger.warning(
                "%s: --log2 auto is a close call: %s; %s (pass --log2 yes or no to decide)",
                path,
                statistic,
                decision,
            )
        elif high_enough and not apply:
            logger.warning(
                "%s: --log2 auto: values look linear but too many are negative: %s; %s (pass --log2 yes or no to decide)",
                path,
                statistic,
                decision,
            )
        elif apply and n_negative:
            logger.warning(
                "%s: --log2 auto: %s; ignoring the negative values (set to 0 before log2)",
                path,
                statistic,
            )
        else:
            logger.info("%s: --log2 auto: %s; %s", path, statistic, decision)
        self.transform.clip_negative = apply and n_negative > 0
        # A decision made on small values can be contradicted by later rows; a linear one is checked by log2 itself.
        self.transform.expect_logged = not high_enough
        return apply

    # -- passes ------------------------------------------------------------------------

    def _find_duplicates(self, tolerance: float) -> np.ndarray:
        finder = DuplicateFinder(
            len(self.var), tolerance, read_row=lambda i: self.rows(i, i + 1)[0]
        )
        for start, block in iterate_blocks(self.genes, desc="duplicates", progress=self.progress):
            finder.add_block(start, block)
        keep = np.ones(self.source.n_obs, dtype=bool)
        duplicates = np.array(sorted(finder.duplicate_of), dtype=np.int64)
        keep[duplicates] = False
        names = self.source.obs_names
        self.info["n_duplicates_removed"] = len(duplicates)
        if len(duplicates):
            self.info["duplicate_samples"] = np.asarray(names[duplicates], dtype=str)
            self.info["duplicate_of"] = np.asarray(
                names[[finder.duplicate_of[i] for i in duplicates]], dtype=str
            )
            logger.warning(
                "%s: removed %d duplicate samples, e.g. %s",
                self.source.path,
                len(duplicates),
                list(names[duplicates[:5]]),
            )
        return keep

    def _splits(
        self,
        keep: np.ndarray,
        split_column: str | None,
        group_column: str | None,
        seed: int,
        sizes: Any,
    ) -> np.ndarray:
        labels = np.full(self.source.n_obs, None, dtype=object)
        if split_column is not None and group_column is not None:
            raise ConfigError("give a split column or a group column, not both")
        if group_column is not None:
            if group_column not in self.source.obs.columns:
                raise InputFileError(
                    self.source.path,
                    f"has no sample column {group_column!r}",
                    f"available columns: {list(self.source.obs.columns)}",
                )
            groups = self.source.obs[group_column].to_numpy()[keep]
            labels[keep] = assign_group_splits(
                groups, seed=seed, sizes=sizes, column=group_column, path=self.source.path
            )
        elif split_column is not None:
            if split_column not in self.source.obs.columns:
                raise InputFileError(
                    self.source.path,
                    f"has no sample column {split_column!r}",
                    f"available columns: {list(self.source.obs.columns)}",
                )
            labels[keep] = splits_from_column(
                self.source.obs[split_column].to_numpy()[keep],
                column=split_column,
                path=self.source.path,
            )
        else:
            if "split" in self.source.obs.columns:
                logger.info(
                    "%s: has a 'split' column; pass split_column='split' to use it instead of a seeded split",
                    self.source.path,
                )
            labels[keep] = assign_splits(int(keep.sum()), seed=seed, sizes=sizes)
        return labels

    def _quantile_reference(self, labels: np.ndarray) -> np.ndarray:
        is_train = labels == "train"
        starts = np.cumsum((0, *self.genes.chunks[0]))
        with_train = [
            i for i in range(len(starts) - 1) if is_train[starts[i] : starts[i + 1]].any()
        ]
        total = np.zeros(len(self.var), dtype=np.float64)
        for start, block in iterate_blocks(
            self.genes, with_train, desc="quantile reference", progress=self.progress
        ):
            total += sorted_row_sum(block[is_train[start : start + block.shape[0]]])
        return total / int(is_train.sum())

    def write(
        self,
        out_path: Path,
        *,
        quantile_normalize: bool,
        remove_duplicates: bool,
        duplicate_tolerance: float,
        split_column: str | None,
        group_column: str | None,
        seed: int,
        sizes: Any,
    ) -> Path:
        """Run the passes and write the store."""
        keep = (
            self._find_duplicates(duplicate_tolerance)
            if remove_duplicates
            else np.ones(self.source.n_obs, dtype=bool)
        )
        labels = self._splits(keep, split_column, group_column, seed, sizes)
        values = self.genes
        self.info.update(
            quantile_normalize=bool(quantile_normalize),
            remove_duplicates=bool(remove_duplicates),
            duplicate_tolerance=duplicate_tolerance,
            split_column=split_column,
            group_column=group_column,
            seed=seed,
            sizes=None
            if sizes is None
            else (dict(sizes) if isinstance(sizes, Mapping) else [int(s) for s in sizes]),
            block_rows=self.block_rows,
            statistics="train split only",
        )
        if quantile_normalize:
            reference = self._quantile_reference(labels)
            self.info["quantile_reference"] = reference
            values = values.map_blocks(
                functools.partial(quantile_normalize_rows, reference=reference),
                dtype=np.float64,
                name=_unique_name("quantile"),
            )
        counts = {name: int(np.sum(labels == name)) for name in ("train", "validation", "test")}
        names = np.asarray(self.source.obs_names, dtype=object)
        with StoreWriter(out_path, var=self.var, split_sizes=counts) as writer:
            for start, block in iterate_blocks(values, desc="write", progress=self.progress):
                stop = start + block.shape[0]
                kept = keep[start:stop]
                writer.write_block(block[kept], labels[start:stop][kept], names[start:stop][kept])
            columns = [
                c
                for c in self.source.obs.columns
                if c != "split" and _simple_column(self.source.obs[c])
            ]
            obs = self.source.obs.loc[keep, columns]
            path = writer.close(obs=obs, uns=self._uns())
        logger.info("%s: %s", path, ", ".join(f"{n} {k}" for k, n in counts.items()))
        return path

    def _uns(self) -> dict[str, Any]:
        inherited = dict(self.source.uns.get("genesel", {}) or {})
        if "noise_floor" in self.source.uns:
            inherited.setdefault("noise_floor", self.source.uns["noise_floor"])
        info = {key: inherited[key] for key in PASSTHROUGH_UNS if key in inherited}
        info.update(self.info)
        return info


def _unique_name(prefix: str) -> str:
    # Named explicitly so that dask does not try to hash the open files behind the graph.
    return f"genesel-{prefix}-{uuid.uuid4().hex}"


def _simple_column(column: pd.Series) -> bool:
    return bool(
        pd.api.types.is_numeric_dtype(column)
        or pd.api.types.is_bool_dtype(column)
        or isinstance(column.dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(column)
    )
