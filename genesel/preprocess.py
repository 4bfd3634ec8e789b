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
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from genesel.blocks import prefetched
from genesel.errors import ConfigError
from genesel.io.gene_maps import annotate_genes, probe_averaging
from genesel.io.source import MatrixSource
from genesel.split import split_labels
from genesel.store import StoreWriter
from genesel.transforms import (
    DUPLICATE_TOLERANCE,
    LOG_PSEUDOCOUNT,
    BlockTransform,
    DuplicateFinder,
    decide_log2,
    quantile_normalize_rows,
    sorted_row_sum,
)

logger = logging.getLogger(__name__)

#: Bytes of one float64 block (sets the default ``block_rows``).
BLOCK_BYTES = 64 * 1024**2
#: Rows read from a few places of the input to decide ``log2="auto"``.
LOG_SAMPLE_ROWS = 256
LOG_SAMPLE_PLACES = 4
#: Entries of the input's ``uns["genesel"]`` (e.g. from the simulator) copied to the store.
PASSTHROUGH_UNS = ("noise_floor", "noise_floor_targets", "simulation")
#: ``var`` columns computed here (not copied from the input).
COMPUTED_VAR = ("symbol", "landmark", "mean", "std", "constant", "n_probes")

Log2Option = bool | Literal["auto", "yes", "no"]


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
    """Yield ``(first row, block)`` of a row-chunked dask array, computing the next block ahead."""
    starts = np.cumsum((0, *array.chunks[0]))
    indices = list(range(len(array.chunks[0]))) if block_indices is None else list(block_indices)
    total = int(sum(array.chunks[0][i] for i in indices))
    blocks = ((int(starts[i]), _compute(array.blocks[i])) for i in indices)
    with tqdm(total=total, unit="rows", desc=desc, disable=not progress, leave=False) as bar:
        for start, block in prefetched(blocks, ahead=1, name="genesel-preprocess-blocks"):
            yield start, block
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
    duplicate_tolerance: float = DUPLICATE_TOLERANCE,
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
        raise ConfigError(
            f"duplicate_tolerance={duplicate_tolerance!r} must be >= 0",
            parameter="duplicate_tolerance",
        )
    if block_rows is not None and (int(block_rows) != block_rows or block_rows < 1):
        raise ConfigError(
            f"block_rows={block_rows!r} must be a positive integer", parameter="block_rows"
        )
    out_path = Path(out_path)
    source, owned = _as_source(
        source_or_path, format=format, orientation=orientation, layer=layer, probe_map=probe_map
    )
    try:
        if source.path.resolve() == out_path.resolve():
            raise ConfigError(f"the output {out_path} is the input; choose another out_path")
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
    raise ConfigError(f"log2={value!r} must be 'auto', 'yes'/True or 'no'/False", parameter="log2")


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
                "n_vars": len(self.var),
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
        n_vars = len(self.var)
        widest = max(source.n_vars, n_vars)
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
            chunks=(raw.chunks[0], (n_vars,)),
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
        decision = decide_log2(sample, option, force_log=force_log, path=self.source.path)
        self.info.update(decision.info)
        self.transform.log2 = decision.apply
        self.transform.clip_negative = decision.clip_negative
        self.transform.expect_logged = decision.expect_logged
        self.info["log2_applied"] = decision.apply

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
        labels = split_labels(
            self.source.obs,
            keep,
            split_column=split_column,
            group_column=group_column,
            seed=seed,
            sizes=sizes,
            path=self.source.path,
        )
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
