"""Collect the results of a run directory into tables: runs, training histories, benchmarks."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from genesel.errors import InputFileError
from genesel.io.atomic import atomic_output
from genesel.report.layout import ResultsLayout, RunKey, parse_metrics_path
from genesel.usage import read_usage

logger = logging.getLogger(__name__)

#: Columns identifying a run, first in ``runs.tsv``.
KEY_COLUMNS = ("method", "n_genes", "seed", "decoder")


@dataclass
class ResultTables:
    """Everything the report shows, as tables.

    Attributes
    ----------
    runs
        One row per evaluated model: method, n_genes, seed, decoder, every metric of its
        ``metrics.json`` (nested keys joined with ``.``), and the panel's landmark overlap.
    histories
        Per-epoch training history of every panel that has one, with method, n_genes and seed
        (a LassoNet path has one row per lambda, numbered in ``epoch``).
    benchmarks
        One row per Snakemake job benchmark: rule, job, seconds, max_rss (MB), cpu_time.
    """

    runs: pd.DataFrame
    histories: pd.DataFrame
    benchmarks: pd.DataFrame

    @property
    def noise_floor(self) -> float | None:
        """The simulator's noise floor (standardised MSE) when the runs report one."""
        if "noise_floor" not in self.runs:
            return None
        values = pd.to_numeric(self.runs["noise_floor"], errors="coerce").dropna()
        return float(values.iloc[0]) if len(values) else None

    def write(self, out_dir: str | os.PathLike[str]) -> None:
        """Write ``runs.tsv``, ``histories.tsv`` and ``benchmarks.tsv`` into ``out_dir``."""
        out_dir = Path(out_dir)
        for name, frame in (
            ("runs", self.runs),
            ("histories", self.histories),
            ("benchmarks", self.benchmarks),
        ):
            write_table(frame, out_dir / f"{name}.tsv")


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a tab-separated table atomically."""
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)
    return Path(path)


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to one level, joining keys with ``.``; lists are dropped."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        elif isinstance(value, str | int | float | bool) or value is None:
            flat[name] = value
    return flat


def read_metrics(paths: Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """Read ``metrics.json`` files into one row each, keyed by the run parsed from the path."""
    rows = []
    for path in paths:
        path = Path(path)
        key = parse_metrics_path(path)
        if key is None:
            raise InputFileError(
                path,
                "not a metrics path of a run directory",
                "expected metrics/<method>/k<K>/seed<S>/<decoder>/metrics.json",
            )
        try:
            payload = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise InputFileError(
                path, f"cannot read metrics ({error})", "re-run `genesel evaluate`"
            ) from None
        metrics = {k: v for k, v in flatten(payload).items() if k not in KEY_COLUMNS}
        rows.append(
            {
                "method": key.method,
                "n_genes": key.n_genes,
                "seed": key.seed,
                "decoder": key.decoder,
                **metrics,
            }
        )
    frame = pd.DataFrame(rows, columns=None if rows else list(KEY_COLUMNS))
    return frame.sort_values(list(KEY_COLUMNS), kind="stable").reset_index(drop=True)


def panel_overlap(layout: ResultsLayout, method: str, n_genes: int, seed: int) -> float:
    """Number of L1000 landmarks in a panel (NaN when the panel table is missing)."""
    path = layout.panel_dir(method, n_genes, seed) / "panel.tsv"
    if not path.exists():
        return math.nan
    table = pd.read_csv(
        path, sep="\t", usecols=lambda c: c in ("gene_id", "landmark"), comment="#"
    )  # "# key=value" metadata lines
    if "landmark" not in table:
        return math.nan
    return float(table["landmark"].astype(str).str.lower().isin(["true", "1"]).sum())


def panel_converged(layout: ResultsLayout, method: str, n_genes: int, seed: int) -> bool | None:
    """Whether a trained selector converged (``config.json`` ``extra.converged``); ``None`` if not recorded."""
    path = layout.panel_dir(method, n_genes, seed) / "config.json"
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text()).get("extra", {}).get("converged")
    except (OSError, json.JSONDecodeError):
        return None
    return None if value is None else bool(value)


def panel_total_cost(layout: ResultsLayout, method: str, n_genes: int, seed: int) -> float:
    """A panel's total gene cost (``panel.tsv``'s ``# total_cost=`` line); NaN without costs."""
    path = layout.panel_dir(method, n_genes, seed) / "panel.tsv"
    if not path.exists():
        return math.nan
    with open(
        path
    ) as handle:  # the "# key=value" lines above the header (no torch import for the report)
        for line in handle:
            if not line.startswith("#"):
                break
            key, _, value = line[1:].strip().partition("=")
            if key.strip() == "total_cost":
                try:
                    return float(value)
                except ValueError:
                    return math.nan
    return math.nan


def read_per_sample(
    layout: ResultsLayout, runs: pd.DataFrame, *, metric: str = "mse_imputed"
) -> list[pd.Series | None]:
    """Each run's per-sample errors (``per_sample.tsv`` beside its metrics), aligned with ``runs``."""
    series: list[pd.Series | None] = []
    for key in run_keys(runs):
        path = layout.metrics_path(key).with_name("per_sample.tsv")
        if not path.exists():
            series.append(None)
            continue
        table = pd.read_csv(path, sep="\t", index_col=0, dtype={0: str})
        series.append(table[metric] if metric in table else None)
    return series


def read_histories(layout: ResultsLayout, panels: Iterable[tuple[str, int, int]]) -> pd.DataFrame:
    """Concatenate the ``history.tsv`` of the given panels (those that trained)."""
    frames = []
    for method, n_genes, seed in sorted(set(panels)):
        path = layout.panel_dir(method, n_genes, seed) / "history.tsv"
        if path.exists():
            history = pd.read_csv(path, sep="\t")
            if "epoch" not in history:  # a regularisation path (LassoNet): one row per lambda
                history.insert(0, "epoch", range(len(history)))
            if len(history):
                frames.append(history.assign(method=method, n_genes=n_genes, seed=seed))
    if not frames:
        return pd.DataFrame(columns=["method", "n_genes", "seed", "epoch"])
    frame = pd.concat(frames, ignore_index=True)
    first = ["method", "n_genes", "seed"]
    return frame[first + [c for c in frame.columns if c not in first]]


def read_benchmarks(
    directory: str | os.PathLike[str], logs: str | os.PathLike[str] | None = None
) -> pd.DataFrame:
    """Read Snakemake benchmark files ``<directory>/<rule>/<job>.tsv`` (mean over repeats).

    Wall time and peak RSS come from Snakemake. CPU time comes from the job's log
    ``<logs>/<rule>/<job>.log`` when the genesel command wrote its resource-usage line there
    (:mod:`genesel.usage`: exact user + system time), else from Snakemake's ``cpu_time``,
    which misses most of a short job; ``cpu_source`` says which.
    """
    rows = []
    for path in sorted(Path(directory).glob("*/*.tsv")):
        try:
            table = pd.read_csv(path, sep="\t")
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            logger.warning("skipping unreadable benchmark file %s", path)
            continue
        if "s" not in table or not len(table):
            continue
        numeric = table.apply(pd.to_numeric, errors="coerce").mean()
        usage = (
            read_usage(Path(logs) / path.parent.name / f"{path.stem}.log")
            if logs is not None
            else None
        )
        rows.append(
            {
                "rule": path.parent.name,
                "job": path.stem,
                "seconds": float(numeric["s"]),
                "max_rss_mb": float(numeric.get("max_rss", math.nan)),
                "cpu_seconds": usage["cpu_s"]
                if usage and "cpu_s" in usage
                else float(numeric.get("cpu_time", math.nan)),
                "cpu_source": "genesel" if usage and "cpu_s" in usage else "snakemake",
            }
        )
    return pd.DataFrame(
        rows, columns=["rule", "job", "seconds", "max_rss_mb", "cpu_seconds", "cpu_source"]
    )


def aggregate_results(
    results_dir: str | os.PathLike[str],
    *,
    metrics_paths: Iterable[str | os.PathLike[str]] | None = None,
) -> ResultTables:
    """Collect a run directory's metrics, panels, training histories and benchmarks.

    Parameters
    ----------
    results_dir
        The run directory (``results/<run>``), laid out as in :mod:`genesel.report.layout`.
    metrics_paths
        The ``metrics.json`` files to include; default: every one under ``results_dir``.
        The workflow passes its own list, so results of methods no longer configured
        do not show up.

    Returns
    -------
    The tables; ``runs`` has a ``landmark_overlap`` column (landmarks in the panel) and a
    ``total_cost`` column (the panel's total gene cost; NaN when selected without costs).
    """
    layout = ResultsLayout.at(results_dir)
    if not layout.root.is_dir():
        raise InputFileError(
            layout.root,
            "no such results directory",
            "run the workflow, or pass its run directory results/<run>",
        )
    paths = layout.find_metrics() if metrics_paths is None else [Path(p) for p in metrics_paths]
    if not paths:
        raise InputFileError(
            layout.metrics_dir,
            "no metrics.json found",
            "run `genesel evaluate` (or the workflow) first",
        )
    runs = read_metrics(paths)
    panels = list(
        runs[["method", "n_genes", "seed"]].drop_duplicates().itertuples(index=False, name=None)
    )
    overlap = {panel: panel_overlap(layout, *panel) for panel in panels}
    converged = {panel: panel_converged(layout, *panel) for panel in panels}
    total_cost = {panel: panel_total_cost(layout, *panel) for panel in panels}
    triples = list(zip(runs["method"], runs["n_genes"], runs["seed"], strict=True))
    runs["landmark_overlap"] = [overlap[triple] for triple in triples]
    runs["converged"] = [converged[triple] for triple in triples]
    runs["total_cost"] = [total_cost[triple] for triple in triples]
    tables = ResultTables(
        runs=runs,
        histories=read_histories(layout, panels),
        benchmarks=read_benchmarks(layout.benchmarks_dir, layout.logs_dir),
    )
    logger.info(
        "collected %d evaluated models, %d benchmarked jobs from %s",
        len(runs),
        len(tables.benchmarks),
        layout.root,
    )
    return tables


def read_runs(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``runs.tsv`` written by :meth:`ResultTables.write`."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(
            path,
            "no such runs table",
            "run the workflow's aggregate step, or collect the runs from the metrics instead",
        )
    frame = pd.read_csv(path, sep="\t")
    missing = [c for c in KEY_COLUMNS if c not in frame]
    if missing:
        raise InputFileError(path, f"runs table lacks columns {missing}")
    return frame


def run_keys(runs: pd.DataFrame) -> list[RunKey]:
    """The :class:`RunKey` of every row of a runs table."""
    return [
        RunKey(m, int(k), int(s), d)
        for m, k, s, d in runs[list(KEY_COLUMNS)].itertuples(index=False, name=None)
    ]
