"""Small helpers shared by the scanpy-style functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genesel.loader import LoaderConfig
from genesel.run import RunConfig, configure_precision
from genesel.training import TrainerConfig


def training_configs(
    *,
    seed: int,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    device: str | None = None,
    progress: bool | None = None,
    min_steps: int | None = None,
) -> tuple[TrainerConfig, LoaderConfig, RunConfig]:
    """The trainer, loader and run options the API functions expose as keywords.

    A keyword left ``None`` keeps the core's default (:class:`~genesel.training.TrainerConfig`,
    :class:`~genesel.loader.LoaderConfig`, :class:`~genesel.run.RunConfig`).
    """
    run = RunConfig(seed=seed, **_given(device=device, progress=progress))
    configure_precision(run.device)
    trainer = TrainerConfig(
        min_steps=min_steps, **_given(max_epochs=epochs, learning_rate=learning_rate)
    )
    return trainer, LoaderConfig(**_given(batch_size=batch_size)), run


def _given(**options: Any) -> dict[str, Any]:
    """The ``options`` that are not ``None``."""
    return {key: value for key, value in options.items() if value is not None}


def uns_safe(value: Any) -> Any:
    """Make ``value`` writable into ``.uns`` (no ``None``, tuples as lists, paths as text)."""
    if isinstance(value, Mapping):
        return {str(k): uns_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple | list):
        return [uns_safe(v) for v in value if v is not None]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.DataFrame):
        return value.reset_index(drop=True)
    return value


def add_record(
    adata: Any, key: str, record: Mapping[str, Any], *, replaces: Sequence[str]
) -> None:
    """Write ``record`` into ``adata.uns[key]``, keeping what other calls left there.

    Entries named in ``replaces`` (those the calling function writes) are dropped first, so
    that a repeated call leaves no stale entry of the previous one; everything else, such as
    :func:`genesel.tl.prepare`'s ``"prepare"`` record or a store's parameters, is kept.

    Parameters
    ----------
    adata
        The AnnData written to.
    key
        Key of ``adata.uns``.
    record
        The entries to write.
    replaces
        Every entry the calling function may write.
    """
    previous = adata.uns.get(key, {})
    if not isinstance(previous, Mapping):
        from genesel.errors import ConfigError

        raise ConfigError(
            f"adata.uns[{key!r}] holds a {type(previous).__name__} from another call; pass another key_added"
        )
    kept = {k: v for k, v in previous.items() if k not in replaces}
    adata.uns[key] = {**kept, **record}


def copy_or_self(adata: Any, copy: bool) -> Any:
    """``adata.copy()`` when ``copy`` (in-memory data only), else ``adata`` itself."""
    if not copy:
        return adata
    if getattr(adata, "isbacked", False):
        from genesel.errors import ConfigError

        raise ConfigError(
            "copy=True needs an in-memory AnnData; load it with adata.to_memory() or annotate the backed object"
        )
    return adata.copy()
