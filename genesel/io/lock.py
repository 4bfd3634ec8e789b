"""An advisory lock per output, so two genesel runs never write the same output at once.

A directory output ``OUT`` is locked through ``OUT/.genesel.lock``, a file output through
``OUT.lock`` next to it. The lock is ``fcntl.flock`` on that file, which the operating
system releases when the process ends, however it ends; the holder writes its PID
(and host) into the file so that a refused run can name it. The lock file is removed on
release; a waiting run that then wins the lock on the removed file notices it and
locks the new one.

Commands use it as::

    with output_lock(args.out, kind="dir", wait=args.wait):
        ...  # write the output
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from genesel.errors import InputFileError
from genesel.io.atomic import DISK_FULL_ERRNOS

#: Name of the lock file inside a directory output.
LOCK_NAME = ".genesel.lock"
#: Seconds between two attempts while waiting (``wait=True``).
POLL_SECONDS = 0.2


class OutputLockedError(InputFileError):
    """Another run holds the lock on the output."""


def lock_path(out: str | os.PathLike[str], kind: Literal["dir", "file"]) -> Path:
    """Return the lock file of output ``out``: ``OUT/.genesel.lock`` or ``OUT.lock``."""
    out = Path(out)
    if kind == "dir":
        return out / LOCK_NAME
    if kind == "file":
        return out.with_name(out.name + ".lock")
    raise ValueError(f"kind must be 'dir' or 'file', not {kind!r}")


@contextlib.contextmanager
def output_lock(
    out: str | os.PathLike[str], *, kind: Literal["dir", "file"], wait: bool = False
) -> Iterator[Path]:
    """Hold the advisory lock of output ``out`` for the duration of the block.

    Parameters
    ----------
    out
        The output directory (``kind="dir"``, created if missing) or file (``kind="file"``;
        its folder is created if missing).
    wait
        Wait for another run to finish instead of failing at once.

    Raises
    ------
    OutputLockedError
        When another process holds the lock and ``wait`` is false; the message names its PID.
    """
    path = lock_path(out, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, Path(out), wait=wait)
    try:
        os.ftruncate(fd, 0)
        try:
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        except OSError as error:  # the owner's name is only for messages: a full disk stops the run at its first output
            if error.errno not in DISK_FULL_ERRNOS:
                raise
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            if _same_file(path, fd):
                path.unlink()
        os.close(fd)  # releases the lock


def _acquire(path: Path, out: Path, *, wait: bool) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise OutputLockedError(
                out,
                f"another genesel run ({_holder(path)}) is writing this output",
                "wait for it to finish, pass --wait to queue behind it, or choose another --out",
            ) from None
        if _same_file(path, fd):
            return fd
        os.close(fd)  # the holder removed the file while we waited: lock the current one
        time.sleep(POLL_SECONDS if wait else 0)


def _same_file(path: Path, fd: int) -> bool:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (stat.st_dev, stat.st_ino) == (own.st_dev, own.st_ino)


def _holder(path: Path) -> str:
    try:
        fields = path.read_text().split()
    except OSError:
        fields = []
    if not fields:
        return "PID unknown"
    return f"PID {fields[0]}" + (f" on {fields[1]}" if len(fields) > 1 else "")


@contextlib.contextmanager
def guarded_output(
    out: str | os.PathLike[str], *, kind: Literal["dir", "file"], wait: bool = False
) -> Iterator[None]:
    """Lock output ``out`` and, on error, remove the folders the block created empty.

    This is what a command wraps its work in: ``with guarded_output(args.out, kind="dir", wait=args.wait):``.
    """
    from genesel.io.atomic import removing_new_folders

    with removing_new_folders(out), output_lock(out, kind=kind, wait=wait):
        yield
