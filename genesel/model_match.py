"""Find an imputation model's genes among a store's columns: by gene id, then by symbol."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from genesel.impute.genes import (
    MATCH_STAGES,
    MAX_LISTED,
    ColumnMatch,
    locate_columns,
    require_panel,
)
from genesel.impute.model import ImputationModel
from genesel.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneMatch:
    """The model's genes among a store's columns (see :func:`match_model_genes`).

    Attributes
    ----------
    columns
        Store column of each model gene (``-1``: not in the store, or ambiguous).
    stages
        How each gene was found: an index into :data:`genesel.impute.genes.MATCH_STAGES`.
    missing_targets
        Gene ids of the model's non-panel genes the store lacks.
    """

    columns: np.ndarray
    stages: np.ndarray
    missing_targets: pd.Index

    @property
    def kept(self) -> np.ndarray:
        """Boolean mask over the model's genes: those scored."""
        return self.columns >= 0

    @property
    def by_id(self) -> int:
        """Genes matched by gene id."""
        return int((self.stages == 0).sum())

    @property
    def by_symbol(self) -> int:
        """Genes matched by symbol (exactly or ignoring case)."""
        return int((self.stages > 0).sum())

    @property
    def matched_by(self) -> str:
        """``"gene_id"``, ``"symbol"`` or ``"gene_id and symbol"``: what found the genes."""
        used = [
            name for name, count in (("gene_id", self.by_id), ("symbol", self.by_symbol)) if count
        ]
        return " and ".join(used) or "nothing"


def match_model_genes(store: Store, model: ImputationModel) -> GeneMatch:
    """Find the model's genes among ``store``'s: by gene id, falling back to symbol.

    Raises
    ------
    InputFileError
        Naming the panel genes the store lacks (or holds in several columns).
    """
    source = store.path or "<store>"
    match = locate_columns(
        model.gene_ids,
        model.symbols.tolist(),
        store.var.index.astype(str),
        store.var,
        source=source,
    )
    columns, stages = match.columns.copy(), match.stages.copy()
    # a column claimed twice (say by one gene's id and another's symbol) goes to the first claim by the earliest stage
    order = np.lexsort((np.arange(columns.size), stages))
    order = order[columns[order] >= 0]
    taken = pd.Index(columns[order]).duplicated()
    columns[order[taken]], stages[order[taken]] = -1, -1
    panel = model.panel_indices
    labels = [f"{model.symbols[k]} ({model.gene_ids[k]})" for k in panel[columns[panel] == -2]]
    require_panel(
        ColumnMatch(
            columns[panel],
            stages[panel],
            [a for a in match.ambiguous if a.split(" in columns ")[0] in labels],
        ),
        model.panel_ids,
        model.panel_symbols.tolist(),
        source=source,
        hint="the data must measure every panel gene of the model (matched by gene id, then symbol); evaluate on data "
        "that has them, or select a panel among the genes both data sets share and refit",
    )
    columns[columns < 0] = -1
    stages[columns < 0] = -1
    missing = model.gene_ids[columns < 0]
    if missing.size:
        logger.warning(
            "%s: %d of the model's %d genes are not in the data and are left out of the scores, e.g. %s",
            source,
            missing.size,
            model.n_vars,
            missing[:MAX_LISTED].tolist(),
        )
    counts = {name: int((stages == k).sum()) for k, name in enumerate(MATCH_STAGES)}
    if counts["gene_id"] < model.n_vars - missing.size:
        logger.info(
            "%s: model genes matched by %s",
            source,
            ", ".join(f"{name} {count}" for name, count in counts.items()),
        )
    return GeneMatch(columns, stages, missing)
