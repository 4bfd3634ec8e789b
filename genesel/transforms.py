"""Per-block transforms of preprocessing: log2 and its decision, quantile normalisation, duplicates.

Pure functions and small stateful helpers on numpy blocks (samples x genes); the run that
streams an input through them is :mod:`genesel.preprocess`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genesel.errors import InputFileError, option_name

logger = logging.getLogger(__name__)

#: Default ``duplicate_tolerance``: max abs difference (log2 units) of duplicate samples.
DUPLICATE_TOLERANCE = 1e-3

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
#: Random projections hashed to find duplicate candidates, and the grid in tolerances.
DUPLICATE_PROJECTIONS = 4
DUPLICATE_GRID_IN_TOLERANCES = 50.0


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
                    "the data is probably log-scale already: use log2='no'",
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
                "pass log2='yes' or log2='no' explicitly",
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


@dataclass(frozen=True)
class Log2Decision:
    """What ``log2="auto"`` or ``log2="yes"`` decided on sampled rows (see :func:`decide_log2`)."""

    apply: bool
    clip_negative: bool = False
    expect_logged: bool = False
    info: dict[str, Any] = field(default_factory=dict)


def decide_log2(
    sample: np.ndarray, option: str, *, force_log: bool, path: str | Path
) -> Log2Decision:
    """Decide whether to take log2 from rows sampled over the input.

    Parameters
    ----------
    sample
        Gene rows read from a few places of the input (after probe averaging).
    option
        ``"auto"`` or ``"yes"`` (``"no"`` needs no decision).
    force_log
        With ``"yes"``, log data that looks log-scale already.
    path
        The input, named in errors and warnings.
    """
    if option == "auto":
        return _auto_log2(sample, path)
    low, high = float(sample.min()), float(sample.max())
    if low < 0:
        raise InputFileError(
            path,
            f"has negative values (min {low:g}): cannot take log2",
            f"use {option_name('log2', 'no')}",
        )
    if high < LOGGED_MAX and not force_log:
        raise InputFileError(
            path,
            f"looks log-scale already (max {high:g} < {LOGGED_MAX:g}): refusing to log it again",
            f"use {option_name('log2', 'no')}, or {option_name('force_log', True)} if the data really is linear",
        )
    return Log2Decision(apply=True)


def _auto_log2(sample: np.ndarray, path: str | Path) -> Log2Decision:
    """Decide ``log2="auto"``: linear when the 99.9th percentile is >= 50 and <= 0.1% are negative."""
    quantile = float(np.quantile(sample, LOG_DECISION_QUANTILE))
    n_negative = int(np.count_nonzero(sample < 0))
    negative_fraction = n_negative / max(1, sample.size)
    high_enough = quantile >= LOGGED_MAX
    apply = high_enough and negative_fraction <= LOG_NEGATIVE_FRACTION
    statistic = (
        f"99.9th percentile {quantile:.3g} (threshold {LOGGED_MAX:g}), "
        f"{n_negative} of {sample.size} sampled values negative ({negative_fraction:.2%}; at most {LOG_NEGATIVE_FRACTION:.1%} allowed)"
    )
    decision = "taking log2(x + 1)" if apply else "taking it as log-scale already, not logging"
    if LOGGED_MAX / LOG_CLOSE_FACTOR <= quantile < LOGGED_MAX * LOG_CLOSE_FACTOR:
        logger.warning(
            "%s: log2='auto' is a close call: %s; %s (pass log2='yes' or 'no' to decide)",
            path,
            statistic,
            decision,
        )
    elif high_enough and not apply:
        logger.warning(
            "%s: log2='auto': values look linear but too many are negative: %s; %s (pass log2='yes' or 'no' to decide)",
            path,
            statistic,
            decision,
        )
    elif apply and n_negative:
        logger.warning(
            "%s: log2='auto': %s; ignoring the negative values (set to 0 before log2)",
            path,
            statistic,
        )
    else:
        logger.info("%s: log2='auto': %s; %s", path, statistic, decision)
    # A decision made on small values can be contradicted by later rows; a linear one is
    # checked by log2 itself.
    return Log2Decision(
        apply=apply,
        clip_negative=apply and n_negative > 0,
        expect_logged=not high_enough,
        info={
            "log2_auto_quantile": quantile,
            "log2_auto_negative_fraction": negative_fraction,
        },
    )
