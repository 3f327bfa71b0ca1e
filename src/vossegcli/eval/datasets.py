"""Where a dataset of ../shared/data lives: the folder given, or the named folder inside it."""

from __future__ import annotations

from pathlib import Path

from vossegcli.errors import InputError


def dataset_root(data: Path, name: str, marker_file: str, marker_dir: str) -> Path:
    """``data`` or ``data/name``, whichever holds ``marker_file`` and ``marker_dir``; InputError otherwise."""
    data = Path(data)
    for candidate in (data, data / name):
        if (candidate / marker_file).is_file() and (candidate / marker_dir).is_dir():
            return candidate
    raise InputError(
        f"{data}: no {name} data here (expected {marker_file} and {marker_dir}/); pass data='../shared/data'"
    )
