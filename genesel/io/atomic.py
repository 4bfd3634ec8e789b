"""Write files under a temporary name and rename them into place when complete."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def temporary_path(path: str | os.PathLike[str]) -> Path:
    """Return the temporary sibling name used while ``path`` is being written."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path; move it onto ``path`` only if the block succeeds.

    Works for files and for directories (e.g. ``.zarr`` stores). On error the
    temporary output is removed, so nothing half-written is ever left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    os.replace(tmp, path)


@contextlib.contextmanager
def removing_new_folders(*paths: str | os.PathLike[str]) -> Iterator[None]:
    """On error, remove the folders among ``paths`` (and their ancestors) that the block created and left empty.

    A command that creates its output folder and then fails validation must not leave
    an empty folder behind. Only folders missing on entry are considered, and only
    ``os.rmdir`` is used, so nothing with content is ever removed. Give the output
    path itself; for a file output its folder is covered as an ancestor.
    """
    missing: list[Path] = []
    for path in paths:
        path = Path(path).absolute()
        for candidate in (path, *path.parents):
            if candidate.exists() or candidate.is_symlink():
                break
            missing.append(candidate)
    try:
        yield
    except BaseException:
        for folder in sorted(set(missing), key=lambda p: len(p.parts), reverse=True):  # deepest first
            with contextlib.suppress(OSError):
                if folder.is_dir() and not folder.is_symlink():
                    folder.rmdir()
        raise


def write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
