"""Snakemake shim: collect the evaluated models of this run into report/runs.tsv.

The same as ``genesel.report.aggregate_results(results_dir, metrics_paths=...)`` by hand;
the explicit list keeps results of methods no longer configured out of the report.
"""

import logging
from pathlib import Path

import pandas as pd

from genesel.report.aggregate import aggregate_results, write_table

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)
metrics = []
for path in snakemake.input.decoders:  # metrics.json files, or with batch_runs the lists of them
    metrics += Path(path).read_text().split() if path.endswith(".txt") else [path]
for table in snakemake.input.linear:  # the linear curve lists the metrics it wrote beside it
    metrics += [Path(table).parent / path for path in pd.read_csv(table, sep="\t")["metrics"]]
tables = aggregate_results(snakemake.params.results, metrics_paths=metrics)
write_table(tables.runs, snakemake.output.runs)
