"""A run's output folder: the mask PNGs (one per frame, named like the input frames) and the files
vosseg keeps beside them — what each is called, and reading the run record back. The one place that
names them; :mod:`vossegcli.run` writes them, overlay and export read them."""

from __future__ import annotations

import json
from pathlib import Path

from vossegcli.io.diagnostics_file import DIAGNOSTICS_FILE

RUN_FILE = ".vosseg-run.json"  #: the run record: command, identity (input, masks, engine), progress
STATE_FILE = ".vosseg-state.pt"  #: the engine state a --resume continues from exactly
TIMESTAMPS_FILE = "timestamps.csv"  #: each written frame's presentation time
BACKWARD_DIR = ".vosseg-backward"  #: the backward pass's frame cache (removed when it ends)
KEYFRAMES_DIR = ".vosseg-keyframes"  #: engine states kept every state_every frames, for --correct
CORRECTIONS_DIR = ".vosseg-corrections"  #: the masks given with --correct, kept by the run
BLEND_DIR = ".vosseg-blend"  #: a segment's frames and backward probabilities before an anchor (removed as the run moves on)
AUTO_SEED_FILE = ".vosseg-auto-seed.png"  #: --auto: the seed mask
AUTO_FILE = ".vosseg-auto.json"  #: --auto: its record (identity, seed, references)
AUTO_EARLY_DIR = ".vosseg-auto-early"  #: --auto: the masks of the frames before the seed frame


def read_run_record(folder: Path) -> dict | None:
    """The run record of ``folder`` (None when there is none or it is unreadable)."""
    try:
        record = json.loads((Path(folder) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def recorded_input(folder: Path) -> dict | None:
    """What the run record says of the input (path, kind, size, bytes) and of the run (complete,
    frames, command); None without a readable record."""
    record = read_run_record(folder)
    try:
        return {**record["identity"]["input"], "complete": record.get("complete"), "frames": record.get("frames"),
                "command": record.get("command")}
    except (KeyError, TypeError):
        return None


__all__ = ["AUTO_EARLY_DIR", "AUTO_FILE", "AUTO_SEED_FILE", "BACKWARD_DIR", "DIAGNOSTICS_FILE", "RUN_FILE",
           "STATE_FILE", "TIMESTAMPS_FILE", "read_run_record", "recorded_input"]
