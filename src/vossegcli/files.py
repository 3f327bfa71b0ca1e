"""Files written whole or not at all, and file hashes.

Every file vosseg writes (masks, records, state, weights, caches) goes through a temporary name in
the same folder and one rename, so a reader — or a later run after a kill — sees the old file,
nothing, or the whole new file, never a truncated one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable


def _current_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any thread writes
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def default_file_mode() -> int:
    """The permissions a new file gets under this process's umask (mkstemp's files are 0600)."""
    return 0o666 & ~_UMASK


class PendingFile:
    """A new file for ``path`` written under a temporary name next to it, then renamed into place.

    Creates the empty temporary ``.<stem>.<8 random chars><suffix>`` in ``path``'s folder;
    :meth:`commit` gives it normal permissions (or ``mode``) and renames it to ``path``, so readers
    see the old file, nothing, or the whole new file, never a truncated one; :meth:`discard` (call
    it in a ``finally``) removes the temporary file unless it was committed. A killed process can
    leave only the stray temporary file.
    """

    def __init__(self, path: Path, suffix: str = ".tmp"):
        self.path = Path(path)
        fd, name = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=suffix, dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(name)
        self._committed = False

    def commit(self, mode: int | None = None) -> None:
        os.chmod(self.tmp, default_file_mode() if mode is None else mode)
        os.replace(self.tmp, self.path)
        self._committed = True

    def discard(self) -> None:
        if self._committed:
            return
        try:
            self.tmp.unlink()
        except OSError:
            pass


def atomic_write(path: Path, write: Callable[[BinaryIO], None], mode: int | None = None) -> None:
    """Write a file through ``write(handle)`` atomically (see :class:`PendingFile`)."""
    pending = PendingFile(path)
    try:
        with open(pending.tmp, "wb") as handle:
            write(handle)
        pending.commit(mode)
    finally:
        pending.discard()


def atomic_torch_save(obj: Any, path: Path, fsync: bool = False) -> int:
    """``torch.save`` ``obj`` to ``path`` atomically (parents created); ``fsync``: flush it to the
    disk before the rename (state files a resume depends on). Returns the file size in bytes."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(handle: BinaryIO) -> None:
        torch.save(obj, handle)
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(path, write)
    return path.stat().st_size


def write_json_atomic(path: Path, data: dict) -> None:
    """``data`` as indented JSON, written atomically."""
    atomic_write(path, lambda handle: handle.write((json.dumps(data, indent=2) + "\n").encode()))


#: The temporary files :class:`PendingFile` makes (".<stem>.<8 random chars>.tmp").
TEMPORARY_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def clean_temporary_files(folder: Path) -> int:
    """Remove what interrupted atomic writes left in ``folder``; returns how many files."""
    removed = 0
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return 0
    for entry in entries:
        if TEMPORARY_NAME.match(entry.name) and entry.is_file():
            try:
                entry.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["PendingFile", "TEMPORARY_NAME", "atomic_torch_save", "atomic_write", "clean_temporary_files", "default_file_mode",
           "sha256_of", "write_json_atomic"]
