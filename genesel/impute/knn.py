"""K-nearest-neighbour imputation (D-GEX's KNN-GE baseline).

A new sample's genes are the average of the full profiles of its ``k`` nearest
reference samples, with Euclidean distance over the standardised panel genes. The
reference is the train split, or a seeded random subsample of at most
``max_reference`` rows of it (the profiles are stored in the model file). Queries scan
the reference in blocks and keep a running top-k, so memory is bounded by the block
sizes, and a reference loaded memory-mapped is never read into memory at once.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from genesel.blocks import DEFAULT_BLOCK_ROWS, iter_row_blocks
from genesel.errors import ConfigError
from genesel.impute.base import Decoder, DecoderFit, register_decoder
from genesel.run import RunConfig
from genesel.store import Store

if TYPE_CHECKING:
    from genesel.loader import LoaderConfig
    from genesel.training import TrainerConfig

logger = logging.getLogger(__name__)

#: Reference rows compared with a query block at once.
REFERENCE_BLOCK_ROWS = 8192
#: Default cap on stored reference rows (about 420 MB at 10,463 genes).
DEFAULT_MAX_REFERENCE = 10_000


class NearestNeighborImputer(nn.Module):
    """Average the profiles of the ``n_neighbors`` closest reference samples in panel space.

    Parameters
    ----------
    n_reference
        Number of reference samples.
    panel
        Column indices of the panel genes in the profiles.
    n_vars
        Genes per profile (all genes).
    n_neighbors
        ``k``.
    """

    reference: torch.Tensor
    panel: torch.Tensor

    def __init__(
        self,
        n_reference: int,
        panel: np.ndarray | list[int],
        n_vars: int,
        *,
        n_neighbors: int,
    ) -> None:
        super().__init__()
        if n_neighbors < 1:
            raise ConfigError(
                f"n_neighbors must be at least 1, got {n_neighbors}", parameter="param:n_neighbors"
            )
        if n_reference < n_neighbors:
            raise ConfigError(
                f"n_neighbors={n_neighbors} exceeds the {n_reference} reference samples",
                parameter="param:n_neighbors",
            )
        self.n_neighbors = int(n_neighbors)
        self.register_buffer(
            "reference", torch.zeros((int(n_reference), int(n_vars)), dtype=torch.float32)
        )
        self.register_buffer("panel", torch.as_tensor(np.asarray(panel, dtype=np.int64)))
        self._reference_panel: torch.Tensor | None = None

    def _panel_view(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference's panel columns and their squared norms (computed once)."""
        if self._reference_panel is None or self._reference_panel.device != self.reference.device:
            parts = [
                self.reference[i : i + REFERENCE_BLOCK_ROWS].index_select(1, self.panel)
                for i in range(0, self.reference.shape[0], REFERENCE_BLOCK_ROWS)
            ]
            self._reference_panel = torch.cat(parts)
        return self._reference_panel, self._reference_panel.square().sum(dim=1)

    def neighbors(self, panel_values: torch.Tensor) -> torch.Tensor:
        """Indices (``n x k``) of the nearest reference samples of each query row."""
        reference, reference_norm = self._panel_view()
        query = panel_values.to(reference.dtype)
        query_norm = query.square().sum(dim=1, keepdim=True)
        k = self.n_neighbors
        best_distance = torch.full((query.shape[0], k), torch.inf, device=query.device)
        best_index = torch.zeros((query.shape[0], k), dtype=torch.int64, device=query.device)
        for start in range(0, reference.shape[0], REFERENCE_BLOCK_ROWS):
            block = reference[start : start + REFERENCE_BLOCK_ROWS]
            distance = (
                query_norm - 2.0 * query @ block.T + reference_norm[start : start + block.shape[0]]
            )
            index = torch.arange(start, start + block.shape[0], device=query.device).expand(
                query.shape[0], -1
            )
            distance = torch.cat([best_distance, distance], dim=1)
            index = torch.cat([best_index, index], dim=1)
            best_distance, chosen = torch.topk(distance, k, dim=1, largest=False, sorted=True)
            best_index = index.gather(1, chosen)
        return best_index

    def forward(self, panel_values: torch.Tensor) -> torch.Tensor:
        """Predict every gene (standardised) from the panel genes (standardised)."""
        index = self.neighbors(panel_values)
        total = torch.zeros(
            (panel_values.shape[0], self.reference.shape[1]),
            dtype=torch.float32,
            device=panel_values.device,
        )
        for j in range(self.n_neighbors):
            total += self.reference.index_select(0, index[:, j].to(self.reference.device)).to(
                total.device
            )
        return total / self.n_neighbors


def fit_knn(
    store: Store,
    panel: np.ndarray,
    *,
    n_neighbors: int,
    max_reference: int | None,
    seed: int = 0,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    progress: bool = True,
) -> NearestNeighborImputer:
    """Build the KNN imputer with (a seeded subsample of) the train split as reference.

    Parameters
    ----------
    store
        The data.
    panel
        Column indices of the panel genes.
    n_neighbors
        ``k`` (D-GEX's KNN-GE used the 10 nearest profiles).
    max_reference
        Keep at most this many train rows, drawn uniformly with ``seed``; ``None`` keeps all.
    seed
        Seed of the subsample.
    block_rows
        Rows read at a time.
    progress
        Show a progress bar.
    """
    rows = store.require_split("train")
    if max_reference is not None and max_reference < rows.size:
        keep = np.sort(
            np.random.default_rng(seed).choice(rows.size, size=int(max_reference), replace=False)
        )
        logger.info("KNN reference: %d of %d train samples (seed %d)", keep.size, rows.size, seed)
    else:
        keep = np.arange(rows.size)
    module = NearestNeighborImputer(keep.size, panel, store.n_vars, n_neighbors=n_neighbors)
    mean = store.var["mean"].to_numpy(np.float32)
    std = store.var["std"].to_numpy(np.float32)
    filled = 0
    with tqdm(
        total=rows.size, desc="knn reference", unit="rows", disable=not progress, leave=False
    ) as bar:
        for offset, block in iter_row_blocks(store, rows, block_rows=block_rows):
            chosen = keep[(keep >= offset) & (keep < offset + block.shape[0])] - offset
            if chosen.size:
                values = (block[chosen] - mean) / std
                module.reference[filled : filled + chosen.size] = torch.from_numpy(values)
                filled += chosen.size
            bar.update(block.shape[0])
    return module


@register_decoder
class KNNDecoder(Decoder):
    """D-GEX's KNN-GE: the average of the nearest train profiles in panel space.

    Parameters
    ----------
    n_neighbors
        ``k``, the profiles averaged (D-GEX used 10).
    max_reference
        Train samples stored as reference, drawn with the run's seed; ``None``: all.
    block_rows
        Rows read at a time.
    """

    name = "knn"

    def __init__(
        self,
        *,
        n_neighbors: int = 10,
        max_reference: int | None = DEFAULT_MAX_REFERENCE,
        block_rows: int = DEFAULT_BLOCK_ROWS,
    ) -> None:
        if int(n_neighbors) < 1:
            raise ConfigError(
                f"n_neighbors must be at least 1, got {n_neighbors}", parameter="param:n_neighbors"
            )
        if max_reference is not None and int(max_reference) < 1:
            raise ConfigError(
                f"max_reference must be positive or None (all), got {max_reference}",
                parameter="param:max_reference",
            )
        self.n_neighbors = int(n_neighbors)
        self.max_reference = None if max_reference is None else int(max_reference)
        self.block_rows = int(block_rows)

    def fit_module(
        self,
        store: Store,
        panel: np.ndarray,
        *,
        trainer: TrainerConfig | None,
        run: RunConfig,
        loader: LoaderConfig | None,
        work_dir: str | os.PathLike[str] | None,
        resume: bool,
    ) -> DecoderFit:
        """Store (a seeded subsample of) the train split as the reference profiles."""
        module = fit_knn(
            store,
            panel,
            n_neighbors=self.n_neighbors,
            max_reference=self.max_reference,
            seed=run.seed,
            block_rows=self.block_rows,
            progress=run.progress,
        )
        params = {"n_neighbors": self.n_neighbors, "n_reference": int(module.reference.shape[0])}
        return DecoderFit(module, params, {"seed": run.seed, "max_reference": self.max_reference})

    @classmethod
    def build_module(
        cls, params: dict[str, Any], *, n_genes: int, n_vars: int, panel: np.ndarray
    ) -> nn.Module:
        """An empty reference of the saved size (filled by the saved weights)."""
        return NearestNeighborImputer(
            params["n_reference"], panel, n_vars, n_neighbors=params["n_neighbors"]
        )
