"""Snakemake shim: this run's panels imputing another data set, written to transfer/transfer.tsv.

The same as ``genesel.report.transfer.transfer_curve(source, target, panels)`` by hand.
"""

import logging

from genesel.report.aggregate import write_table
from genesel.report.transfer import transfer_curve
from genesel.store import Store

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

logging.basicConfig(
    filename=snakemake.log[0],
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)
with Store.open(snakemake.input.store) as source, Store.open(snakemake.input.data) as target:
    table = transfer_curve(
        source,
        target,
        list(snakemake.input.panels),
        standardize=snakemake.params.standardize,
        split=snakemake.params.split,
    )
write_table(table, snakemake.output.table)
