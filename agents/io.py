"""Files written safely: one atomic-write helper and one lock helper for the whole library.

:func:`atomic_write` writes through a temporary file in the same directory, fsyncs it and moves
it into place (:func:`os.replace`), so a process killed at any moment leaves either the previous
file or the new one, never half of one. :func:`file_lock` holds an exclusive ``flock`` on a lock
file (released by the kernel when the process dies).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Callable, Iterator


def temporary_name(path: Path) -> Path:
    """``.<name>.<pid>.<random>.tmp`` beside ``path``: unique per writer, so two processes
    writing the same file never share a temporary file."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def atomic_write(path, writer: Callable[[Path], object]) -> Path:
    """``writer(tmp_path)`` writes the file; it is then fsynced and moved onto ``path``
    atomically (the directory is created if needed). Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        writer(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


@contextlib.contextmanager
def file_lock(path, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on the file ``path`` (created if missing) while the block runs.
    Yields True once held; with ``blocking=False`` yields False at once where another process
    holds it. Where ``fcntl`` does not exist (Windows) nothing is locked and True is yielded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield True
        return
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError:
            if blocking:
                raise
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
