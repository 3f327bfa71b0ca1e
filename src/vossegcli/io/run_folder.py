"""A run's output folder: the mask PNGs (one per frame, named like the input frames) and the files
vosseg keeps beside them — what each is called, and reading the run record back. The one place that
names them; :mod:`vossegcli.run` writes them, overlay and export read them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vossegcli.files import clean_temporary_files, write_json_atomic
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


@dataclass(frozen=True)
class RunFolder:
    """A run's output folder (``--out``): the mask PNGs, and every file vosseg keeps beside them,
    by name. segment, ``--auto``, ``--correct``, the backward pass, batch, overlay and export all
    reach those files through one of these."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def record_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE

    @property
    def timestamps_file(self) -> Path:
        return self.path / TIMESTAMPS_FILE

    @property
    def diagnostics_file(self) -> Path:
        return self.path / DIAGNOSTICS_FILE

    @property
    def keyframes_dir(self) -> Path:
        return self.path / KEYFRAMES_DIR

    @property
    def corrections_dir(self) -> Path:
        return self.path / CORRECTIONS_DIR

    @property
    def backward_dir(self) -> Path:
        return self.path / BACKWARD_DIR

    @property
    def blend_dir(self) -> Path:
        return self.path / BLEND_DIR

    @property
    def auto_seed_file(self) -> Path:
        return self.path / AUTO_SEED_FILE

    @property
    def auto_file(self) -> Path:
        return self.path / AUTO_FILE

    @property
    def auto_early_dir(self) -> Path:
        return self.path / AUTO_EARLY_DIR

    def keyframe(self, frame: int) -> Path:
        """The engine state kept at ``frame`` (for ``--correct``)."""
        return self.keyframes_dir / f"{frame:06d}.pt"

    def holds_run(self) -> bool:
        """Whether a segment run has started here (its record is written first)."""
        return self.record_file.is_file()

    def read_record(self) -> dict | None:
        """The run record (None when there is none or it is unreadable)."""
        return read_run_record(self.path)

    def write_record(self, record: dict) -> None:
        """Write the run record atomically (raises OSError)."""
        write_json_atomic(self.record_file, record)

    def clean_temporary_files(self) -> int:
        """Remove what interrupted atomic writes left here; returns how many files."""
        return clean_temporary_files(self.path)


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


__all__ = ["AUTO_EARLY_DIR", "AUTO_FILE", "AUTO_SEED_FILE", "BACKWARD_DIR", "DIAGNOSTICS_FILE", "RUN_FILE", "RunFolder",
           "STATE_FILE", "TIMESTAMPS_FILE", "read_run_record", "recorded_input"]
