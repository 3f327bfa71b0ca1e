"""The file a run writes its self-diagnostics to, ``<out>/diagnostics.jsonl``, and reading it back
(one JSON object per frame; written by :mod:`vossegcli.run.diagnostics`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

DIAGNOSTICS_FILE = "diagnostics.jsonl"


def read_records(path: Path) -> Iterator[dict]:
    """The lines of a diagnostics file, in order (a damaged line ends the stream)."""
    with Path(path).open() as handle:
        for line in handle:
            try:
                yield json.loads(line)
            except ValueError:
                return


__all__ = ["DIAGNOSTICS_FILE", "read_records"]
