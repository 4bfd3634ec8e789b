"""Write files under a temporary name and rename them into place when complete."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from genesel.errors import GeneselError

#: ``errno`` values of a full disk (``EDQUOT``: over quota).
DISK_FULL_ERRNOS = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None
)
#: A failed write counts as a full disk when fewer bytes than this remain free beside the
#: output: torch and HDF5 report a full disk as a ``RuntimeError`` without its ``errno``.
FULL_DISK_BYTES = 1 << 20


def temporary_path(path: str | os.PathLike[str]) -> Path:
    """Return the temporary sibling name used while ``path`` is being written."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def disk_full_error(error: BaseException, path: str | os.PathLike[str]) -> OSError | None:
    """``OSError(ENOSPC)`` naming ``path`` when writing it failed with ``error`` for lack of space, else ``None``.

    That is an ``ENOSPC``/``EDQUOT`` anywhere in ``error``'s chain of causes, or any other
    failure (torch's ``unexpected pos``, HDF5's ``file write failed``) while fewer than
    :data:`FULL_DISK_BYTES` remain free in ``path``'s folder; check before removing the
    partial file. Interrupts and genesel's own errors are never taken for a full disk.
    """
    if not isinstance(error, Exception) or isinstance(error, GeneselError):
        return None
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = current.errno if isinstance(current, OSError) else None
        if code is not None and code in DISK_FULL_ERRNOS:
            return OSError(code, os.strerror(code), str(path))
        current = current.__cause__ or current.__context__
    try:
        stat = os.statvfs(Path(path).parent)
    except OSError:
        return None
    if stat.f_bavail * stat.f_frsize >= FULL_DISK_BYTES:
        return None
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path; move it onto ``path`` only if the block succeeds.

    Works for files and for directories (e.g. ``.zarr`` stores). On error the
    temporary output is removed, so nothing half-written is ever left behind; an error
    from a full disk is raised as ``OSError(ENOSPC)`` naming ``path`` (see
    :func:`disk_full_error`), whatever the writing library made of it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    _remove(tmp)
    try:
        yield tmp
    except BaseException as error:
        full = disk_full_error(error, path)
        _remove(tmp)
        if full is not None:
            raise full from error
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
        for folder in sorted(
            set(missing), key=lambda p: len(p.parts), reverse=True
        ):  # deepest first
            with contextlib.suppress(OSError):
                if folder.is_dir() and not folder.is_symlink():
                    folder.rmdir()
        raise


@contextlib.contextmanager
def removing_on_error(*paths: str | os.PathLike[str]) -> Iterator[None]:
    """On error, delete ``paths``: files that make one result together, none of use without the others.

    Each file is written atomically; this covers a failure between two of them (a full
    disk), which would otherwise leave some of the new files beside old ones.
    """
    try:
        yield
    except BaseException:
        for path in paths:
            with contextlib.suppress(OSError):
                _remove(Path(path))
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
