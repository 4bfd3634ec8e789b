"""Where a workflow run keeps its files: the one definition shared by the report and the rules.

A run directory (``results/<run>/``) holds::

    data/store.h5ad                                        preprocessed store
    panels/<method>/k<n_genes>/seed<seed>/panel.tsv        selected panel (+ history.tsv, config.json)
    imputers/<method>/k<n_genes>/seed<seed>/<decoder>/     fitted imputation model
    metrics/<method>/k<n_genes>/seed<seed>/<decoder>/metrics.json   evaluation (+ per_gene.tsv)
    benchmarks/<rule>/<job>.tsv                            Snakemake benchmark of each job
    logs/<rule>/<job>.log                                  log of each job
    report/                                                tables, figures and index.html

The path patterns below (relative to the run directory, with ``{method}``, ``{n_genes}``,
``{seed}`` and ``{decoder}`` fields) are what ``workflow/rules/common.smk`` builds its
Snakemake patterns from, and what :class:`ResultsLayout` fills in.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from genesel.impute.decoders import MODEL_FILE

#: The simulated compendium the demo preprocesses.
COMPENDIUM = "data/compendium.h5ad"
#: The preprocessed store.
STORE = "data/store.h5ad"
#: The store's moments (``genesel moments``).
MOMENTS = "data/moments.h5"
#: The preprocessed copy of the data set the panels are transferred to.
TRANSFER_STORE = "data/transfer_store.h5ad"
#: Folder of one selected panel.
PANEL_DIR = "panels/{method}/k{n_genes}/seed{seed}"
#: Folder of one fitted imputation model.
IMPUTER_DIR = "imputers/{method}/k{n_genes}/seed{seed}/{decoder}"
#: Folder of all evaluations, and of one.
METRICS_ROOT = "metrics"
METRICS_DIR = METRICS_ROOT + "/{method}/k{n_genes}/seed{seed}/{decoder}"
#: The file ``genesel impute fit`` writes last into a model folder (its presence marks it complete).
IMPUTER_FILE = MODEL_FILE
#: The table ``genesel curve`` writes beside the linear decoder's metrics it lists.
LINEAR_TABLE = "metrics/linear_runs.tsv"
#: What a batched selection job writes last: the panel.tsv files of its method, one a line.
PANEL_LIST = "panels/{method}/panels.txt"
#: What a batched decoder job writes last: the metrics.json files of its decoder, one a line.
DECODER_LIST = "metrics/{decoder}_runs.txt"
#: The transfer table (``workflow/rules/transfer.smk``).
TRANSFER_TABLE = "transfer/transfer.tsv"
#: Folders of the jobs' logs, Snakemake benchmarks and the report.
LOGS_DIR = "logs"
BENCHMARKS_DIR = "benchmarks"
REPORT_DIR = "report"

#: Matches the tail of a metrics path and names its parts.
METRICS_PATTERN = re.compile(
    r"metrics/(?P<method>[^/]+)/k(?P<n_genes>\d+)/seed(?P<seed>\d+)/(?P<decoder>[^/]+)/metrics\.json$"
)


#: Matches the folder of a panel and names its parts.
PANEL_PATTERN = re.compile(
    r"panels/(?P<method>[^/]+)/k(?P<n_genes>\d+)/seed(?P<seed>\d+)(/panel\.tsv)?/?$"
)


@dataclass(frozen=True)
class RunKey:
    """Identifies one evaluated model: a panel (method, size, seed) and a decoder."""

    method: str
    n_genes: int
    seed: int
    decoder: str


@dataclass(frozen=True)
class ResultsLayout:
    """Paths inside one run directory.

    Parameters
    ----------
    root
        The run directory, e.g. ``results/demo``.
    """

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> ResultsLayout:
        """Return the layout of the run directory ``root``."""
        return cls(Path(root))

    @property
    def store(self) -> Path:
        """The preprocessed store."""
        return self.root / STORE

    @property
    def metrics_dir(self) -> Path:
        """Folder of all evaluation results."""
        return self.root / METRICS_ROOT

    @property
    def benchmarks_dir(self) -> Path:
        """Folder of the Snakemake benchmark files."""
        return self.root / BENCHMARKS_DIR

    @property
    def logs_dir(self) -> Path:
        """Folder of the jobs' logs (``<rule>/<job>.log``, beside their benchmark files)."""
        return self.root / LOGS_DIR

    @property
    def report_dir(self) -> Path:
        """Default folder of the report."""
        return self.root / REPORT_DIR

    def panel_dir(self, method: str, n_genes: int, seed: int) -> Path:
        """Folder of one selected panel."""
        return self.root / PANEL_DIR.format(method=method, n_genes=int(n_genes), seed=int(seed))

    def imputer_dir(self, key: RunKey) -> Path:
        """Folder of one fitted imputation model."""
        return self.root / IMPUTER_DIR.format(**asdict(key))

    def metrics_path(self, key: RunKey) -> Path:
        """The ``metrics.json`` of one evaluated model."""
        return self.root / METRICS_DIR.format(**asdict(key)) / "metrics.json"

    def find_metrics(self) -> list[Path]:
        """Every ``metrics.json`` under the run directory, sorted."""
        return sorted(
            p for p in self.metrics_dir.glob("*/k*/seed*/*/metrics.json") if parse_metrics_path(p)
        )


def parse_metrics_path(path: str | os.PathLike[str]) -> RunKey | None:
    """Read method, panel size, seed and decoder from a metrics path; ``None`` if it does not match."""
    match = METRICS_PATTERN.search(Path(path).as_posix())
    if match is None:
        return None
    return RunKey(match["method"], int(match["n_genes"]), int(match["seed"]), match["decoder"])


def parse_panel_path(path: str | os.PathLike[str]) -> tuple[str, int, int] | None:
    """Read method, panel size and seed from a panel path; ``None`` if it does not match."""
    match = PANEL_PATTERN.search(Path(path).as_posix())
    if match is None:
        return None
    return match["method"], int(match["n_genes"]), int(match["seed"])
