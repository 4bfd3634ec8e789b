"""Reconstruction error of a trained selector's own network on one split of a store."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from genesel.errors import ConfigError
from genesel.loader import LoaderConfig, MinibatchLoader
from genesel.store import Store

#: Units in which a reconstruction error can be reported.
UNITS = ("store", "standardized")


@torch.no_grad()
def reconstruction_mse(
    predict: Callable[[torch.Tensor], torch.Tensor],
    store: Store,
    split: str,
    *,
    units: str = "store",
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> float:
    """Mean squared error over all genes and samples of ``split``.

    Parameters
    ----------
    predict
        Maps a standardised batch (samples x all genes) to its standardised reconstruction.
    store
        The data.
    split
        ``"train"``, ``"validation"`` or ``"test"``.
    units
        ``"store"`` (the store's values, e.g. log2 expression or [0, 1]-scaled features) or
        ``"standardized"`` (per-gene z-scores with the train statistics).
    batch_size
        Rows per forward pass.
    device
        Where ``predict`` runs.
    """
    if units not in UNITS:
        raise ConfigError(f"units must be one of {UNITS}, got {units!r}")
    loader = MinibatchLoader(
        store,
        split,
        config=LoaderConfig(batch_size=batch_size, resident_bytes=0),
        shuffle=False,
        device=device,
    )
    weight = torch.as_tensor(
        store.std.astype(np.float64) ** 2 if units == "store" else np.ones(store.n_vars),
        device=device,
    )
    total, count = 0.0, 0
    for batch in loader:
        batch = batch.to(device)
        error = (predict(batch).double() - batch.double()) ** 2
        total += float((error * weight).sum())
        count += batch.numel()
    return total / max(count, 1)
