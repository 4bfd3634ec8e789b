"""Where a selector finds the store's moments: a named file, one beside the store, or a temporary one."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

from genesel.moments import Moments, check_memory, compute_moments, open_moments
from genesel.store import Store

logger = logging.getLogger(__name__)


def moments_path_for(store: Store) -> Path | None:
    """The moments file autodetected beside a store: ``<store>.moments.h5`` (``None`` if the store has no path)."""
    if store.path is None:
        return None
    path = Path(store.path)
    return (
        path.with_name(path.name + ".moments.h5")
        if not path.name.endswith(".h5ad")
        else path.with_suffix(".moments.h5")
    )


@contextlib.contextmanager
def store_moments(
    store: Store,
    moments: str | Path | None = None,
    *,
    work_dir: Path | None = None,
    max_memory_gib: float | None = None,
    progress: bool = True,
) -> Iterator[Moments]:
    """Open the moments of ``store`` for a selector.

    ``moments`` names the file: used if it exists, else computed there and kept (a cache for
    later runs). Without it, ``<store>.moments.h5`` beside the store is used if it exists,
    else the moments are computed into a temporary file (in ``work_dir`` when given, which
    must then have room for ``3 x 8 D^2`` bytes) and removed afterwards. The memory check of
    :func:`genesel.moments.check_memory` runs first.
    """
    check_memory(store.n_vars, max_memory_gib=max_memory_gib)
    path = Path(moments) if moments is not None else moments_path_for(store)
    if path is not None and path.exists():
        with open_moments(path, store) as handle:
            yield handle
        return
    if moments is not None:
        named = Path(moments)
        logger.info("computing the gene-by-gene moments of the store into %s", named)
        compute_moments(store, named, max_memory_gib=max_memory_gib, progress=progress)
        with open_moments(named, store) as handle:
            yield handle
        return
    with tempfile.TemporaryDirectory(prefix="genesel-moments-", dir=work_dir) as tmp:
        logger.info("computing the gene-by-gene moments of the store (temporary file)")
        temporary = compute_moments(
            store, Path(tmp) / "moments.h5", max_memory_gib=max_memory_gib, progress=progress
        )
        with open_moments(temporary, store) as handle:
            yield handle
