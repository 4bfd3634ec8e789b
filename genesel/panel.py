"""A selected panel: a selector's result, its files and their readers.

The files are ``panel.tsv``, ``config.json``, ``history.tsv`` and ``model.pt``.

Below both the selectors and the imputers: reading a panel never imports torch.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from genesel.errors import InputFileError
from genesel.io.atomic import atomic_output, removing_on_error, write_json

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: Columns of ``panel.tsv``.
PANEL_COLUMNS = ("rank", "gene_id", "symbol", "landmark", "score", "status")
#: Values of ``panel.tsv``'s ``status``: a gene the user fixed (``include``) or one the method chose.
PANEL_STATUSES = ("included", "selected")
#: The files of a selection result in its folder (``panel.tsv`` is written last).
RESULT_FILES = ("history.tsv", "model.pt", "config.json", "panel.tsv")
#: Run facts written as ``# key=value`` lines above the header of ``panel.tsv`` (when known).
PANEL_METADATA_KEYS = (
    "method",
    "n_genes",
    "n_included",
    "seed",
    "converged",
    "mean_max_probability",
    "unique_percent",
    "stopped",
    "steps",
    "total_cost",
    "budget",
    "gene_cost_sha256",
)


def panel_metadata(result: PanelResult) -> dict[str, Any]:
    """The ``# key=value`` facts of ``result`` written above the ``panel.tsv`` header."""
    known = {
        "method": result.method,
        "n_genes": result.n_genes,
        "seed": result.seed,
        **result.extra,
    }
    if result.included is not None and result.included.any():
        known["n_included"] = int(result.included.sum())
    return {key: known[key] for key in PANEL_METADATA_KEYS if key in known}


def _metadata_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    return str(value)


def _metadata_value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null", ""):
        return None
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text.strip()


@dataclass
class PanelResult:
    """A selected panel with everything needed to audit and reuse it.

    Attributes
    ----------
    method, n_genes, seed
        What was run.
    gene_indices
        Column indices into the store, best first (length ``n_genes``, distinct).
    var
        The store's gene annotation (all genes).
    scores
        Optional per-panel-gene score (higher = more important), aligned with ``gene_indices``.
    history
        Per-epoch training history, if the method trains.
    state_dict
        Trained weights, if any (saved as ``model.pt``).
    config
        Every hyperparameter, for ``config.json``.
    extra
        Method-specific results (duplicates resolved, a LassoNet path, ...), also in ``config.json``.
    included
        Per panel gene, whether the user fixed it (``include``) rather than the method chose
        it; ``None``: none was.
    costs
        Per panel gene, its cost (``None``: no costs were given); ``panel.tsv``'s ``cost`` column.
    """

    method: str
    n_genes: int
    seed: int
    gene_indices: np.ndarray
    var: pd.DataFrame
    scores: np.ndarray | None = None
    history: pd.DataFrame | None = None
    state_dict: dict[str, torch.Tensor] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    included: np.ndarray | None = None
    costs: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.gene_indices = np.asarray(self.gene_indices, dtype=np.int64)
        self.included = (
            np.zeros(self.gene_indices.size, dtype=bool)
            if self.included is None
            else np.asarray(self.included, dtype=bool)
        )
        if self.included.shape != self.gene_indices.shape:
            raise ValueError(
                f"{self.method}: 'included' has {self.included.size} flags for {self.gene_indices.size} panel genes"
            )
        if len(np.unique(self.gene_indices)) != len(self.gene_indices):
            raise ValueError(f"{self.method}: panel has duplicate genes")
        if len(self.gene_indices) != self.n_genes:
            raise ValueError(
                f"{self.method}: panel has {len(self.gene_indices)} genes, expected {self.n_genes}"
            )

    @property
    def included_mask(self) -> np.ndarray:
        """Per panel gene, whether the user fixed it (all ``False`` when none was)."""
        if self.included is None:
            return np.zeros(self.gene_indices.size, dtype=bool)
        return np.asarray(self.included, dtype=bool)

    @property
    def gene_ids(self) -> pd.Index:
        """Identifiers of the panel genes, best first."""
        return self.var.index[self.gene_indices]

    def table(self) -> pd.DataFrame:
        """The panel as written to ``panel.tsv``."""
        chosen = self.var.iloc[self.gene_indices]
        symbol = (
            chosen["symbol"] if "symbol" in chosen else pd.Series(chosen.index, index=chosen.index)
        )
        landmark = (
            chosen["landmark"] if "landmark" in chosen else pd.Series(False, index=chosen.index)
        )
        return pd.DataFrame(
            {
                "rank": np.arange(1, self.n_genes + 1),
                "gene_id": chosen.index.astype(str),
                "symbol": symbol.astype(str).to_numpy(),
                "landmark": landmark.astype(bool).to_numpy(),
                "score": np.full(self.n_genes, np.nan)
                if self.scores is None
                else np.asarray(self.scores, float),
                "status": np.where(self.included_mask, PANEL_STATUSES[0], PANEL_STATUSES[1]),
                **({} if self.costs is None else {"cost": np.asarray(self.costs, dtype=float)}),
            }
        )

    def write(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write ``panel.tsv``, ``history.tsv``, ``config.json`` and ``model.pt`` (if trained).

        ``panel.tsv`` goes last, so its presence means the result is complete; should a
        write fail (a full disk), all four are removed rather than leave new files beside
        old ones.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "panel.tsv").unlink(missing_ok=True)
        with removing_on_error(*(out_dir / name for name in RESULT_FILES)):
            if self.history is not None:
                with atomic_output(out_dir / "history.tsv") as tmp:
                    self.history.to_csv(tmp, sep="\t", index=False)
            if self.state_dict is not None:
                import torch

                with atomic_output(out_dir / "model.pt") as tmp:
                    torch.save({k: v.detach().cpu() for k, v in self.state_dict.items()}, tmp)
            write_json(
                out_dir / "config.json",
                {
                    "method": self.method,
                    "n_genes": self.n_genes,
                    "seed": self.seed,
                    "config": self.config,
                    "extra": self.extra,
                },
            )
            with atomic_output(out_dir / "panel.tsv") as tmp:
                with open(tmp, "w", newline="") as handle:
                    for key, value in panel_metadata(self).items():
                        handle.write(f"# {key}={_metadata_text(value)}\n")
                    self.table().to_csv(handle, sep="\t", index=False)
        logger.info("wrote %s panel of %d genes to %s", self.method, self.n_genes, out_dir)
        return out_dir


def read_panel(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a ``panel.tsv`` (or a directory holding one) written by :meth:`PanelResult.write`."""
    path = Path(path)
    if path.is_dir():
        path = path / "panel.tsv"
    if not path.exists():
        raise InputFileError(path, "no such panel file", "run `genesel select` first")
    try:
        table = pd.read_csv(path, sep="\t", dtype={"gene_id": str, "symbol": str}, comment="#")
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InputFileError(path, f"cannot parse panel table ({error})") from None
    missing = [c for c in ("rank", "gene_id") if c not in table.columns]
    if missing:
        raise InputFileError(
            path,
            f"panel table lacks columns {missing}",
            "expected the panel.tsv written by genesel select",
        )
    if table["gene_id"].duplicated().any():
        raise InputFileError(
            path,
            f"duplicate genes in panel: {table.loc[table['gene_id'].duplicated(), 'gene_id'].tolist()[:5]}",
        )
    if (
        "status" not in table.columns
    ):  # written before include/exclude existed: every gene was selected
        table["status"] = PANEL_STATUSES[1]
    return table.sort_values("rank").reset_index(drop=True)


def read_panel_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``# key=value`` lines above the header of a ``panel.tsv`` (or a directory holding one).

    Values are parsed back to ``bool`` / ``int`` / ``float`` / ``None`` where they look like
    one; a panel written before these lines existed gives ``{}``. Keys include ``method``,
    ``n_genes``, ``seed`` and, for trained selectors, ``converged``,
    ``mean_max_probability`` and ``unique_percent`` (see ``PANEL_METADATA_KEYS``).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "panel.tsv"
    if not path.exists():
        raise InputFileError(path, "no such panel file", "run `genesel select` first")
    metadata: dict[str, Any] = {}
    with open(path) as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            key, sep, value = line[1:].strip().partition("=")
            if sep:
                metadata[key.strip()] = _metadata_value(value)
    return metadata


def read_panel_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the ``config.json`` beside a panel."""
    path = Path(path)
    path = path / "config.json" if path.is_dir() else path.with_name("config.json")
    return json.loads(path.read_text()) if path.exists() else {}
