"""The run record ``<out>/.vosseg-run.json`` and ``--resume``: what makes two runs the same run,
and where (and with which masks) an interrupted run continues."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vossegcli import __version__
from vossegcli.engine.weights import weights_file
from vossegcli.files import sha256_of
from vossegcli.engine.config import SegmenterConfig
from vossegcli.errors import OutputError
from vossegcli.io.masks import MaskSet
from vossegcli.io.palette import read_label_png
from vossegcli.io.video import FrameReader
from vossegcli.io.run_folder import RUN_FILE, RunFolder

#: Written into the output folder at the start of a run; what ``resume`` checks.
RUN_FILE_FORMAT = 1


def run_identity(input_path: Path, reader: FrameReader, masks: MaskSet, config: SegmenterConfig, snap_mask: bool) -> dict:
    """What makes two runs the same run (resume refuses to continue a different one).

    Input (resolved path, kind, size, file size / frame names), masks (path, start frame,
    sha256), every engine setting, and ``snap_mask``. Not the device or ``max_size``: those are
    what one changes after running out of memory, and the masks written so far stay valid.
    """
    info = reader.info
    path = Path(input_path).expanduser().resolve()
    source: dict = {"path": str(path), "kind": info.kind, "width": info.width, "height": info.height}
    if info.kind == "video":
        source["bytes"] = path.stat().st_size
    else:
        names = info.frame_names or ()
        source["frames"] = len(names)
        source["names_sha256"] = hashlib.sha256("\n".join(names).encode()).hexdigest()
    given = sorted({(str(Path(path).expanduser().resolve()), frame) for path, frame in masks.files})
    mask_list = [{"path": p, "frame": f, "sha256": sha256_of(Path(p))} for p, f in given]
    engine = json.loads(json.dumps(config.as_dict()))
    refiner = engine.get("refiner")
    if isinstance(refiner, str):  # the weights' content, not just their name, makes the run
        engine["refiner_sha256"] = weights_file("refiner", refiner)[1]
    if isinstance(engine.get("target_features"), str):
        engine["target_features_sha256"] = weights_file("target_features", engine["target_features"])[1]
    return {"input": source, "masks": mask_list, "engine": engine, "snap_mask": bool(snap_mask)}


def new_run_record(identity: dict, *, command: str | None, max_size: int | None, internal_resolution: tuple[int, int],
                   device: str, resumed_from_frame: int | None) -> dict:
    """The run record written when a run starts (``complete`` False, ``frames`` None)."""
    return {
        "vosseg_run": RUN_FILE_FORMAT, "version": __version__, "command": command, "identity": identity,
        "max_size": max_size, "internal_resolution": list(internal_resolution), "device": device,
        "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "resumed_from_frame": resumed_from_frame, "complete": False, "frames": None,
    }


def resume_hint(command: str | None) -> str:
    """How to continue: the CLI command with --resume, or (library use) resume=True."""
    return f"`{command} --resume`" if command else "the same call with resume=True"


def _readable_mask(path: Path, size: tuple[int, int]) -> np.ndarray | None:
    """The id map in ``path`` if it is a complete palette/gray PNG of ``size`` = (w, h), else None."""
    try:
        labels = read_label_png(path)
    except (OSError, ValueError, SyntaxError):
        return None
    return labels if (labels.shape[1], labels.shape[0]) == size else None


@dataclass
class ResumePlan:
    last: int  # last complete frame already in the folder (-1: none)
    initial: dict[int, np.ndarray]  # engine frame index (0 = frame `last`) -> id map at input size
    notes: list[str]
    complete: bool = False


def plan_resume(out_dir: Path, identity: dict, reader: FrameReader, masks: MaskSet,
                correcting: bool = False) -> ResumePlan:
    """Where to continue an interrupted run in ``out_dir``, and the masks to re-seed the objects
    (``correcting``: for ``correct=``, which the messages then name instead of ``resume=True``)."""
    info = reader.info
    fix = ("correct it with the same input, masks and options, or start a new run in another out_dir with the "
           "correction as another mask") if correcting else \
        "resume with the same input, masks and options, or add force=True instead of resume=True to start over"
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return ResumePlan(-1, dict(masks.labels), [f"{out_dir}: nothing to resume yet; starting at frame 0"])
    if not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder; choose another out_dir")
    folder = RunFolder(out_dir)
    run_file = folder.record_file
    if not run_file.is_file():
        raise OutputError(
            f"{out_dir}: has files but no {RUN_FILE}, so it holds no vosseg run to resume; "
            "choose another out_dir, or add force=True instead of resume=True to start over"
        )
    try:
        record = json.loads(run_file.read_text())
        old = record["identity"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputError(f"{run_file}: unreadable ({exc}); add force=True instead of resume=True to start over") from exc
    if old != identity:
        labels = {"input": "input", "masks": "masks", "engine": "engine options", "snap_mask": "snap_mask=True"}
        diff = [labels.get(k, k) for k in sorted(set(old) | set(identity)) if old.get(k) != identity.get(k)]
        if "engine options" in diff and isinstance(old.get("engine"), dict):
            changed = [k for k in sorted(set(old["engine"]) | set(identity["engine"]))
                       if old["engine"].get(k) != identity["engine"].get(k)]
            diff[diff.index("engine options")] = f"engine options ({', '.join(changed)})"
        before = f"; it was started with: {record['command']}" if record.get("command") else ""
        raise OutputError(
            f"{out_dir}: holds a run with different {', '.join(diff)}{before} - {fix}"
        )
    folder.clean_temporary_files()
    size = (info.width, info.height)
    names = info.frame_names
    last = -1
    labels = None
    while names is None or last + 1 < len(names):
        found = _readable_mask(out_dir / f"{reader.frame_name(last + 1)}.png", size)
        if found is None:
            break
        last, labels = last + 1, found
    if last < 0:
        return ResumePlan(-1, dict(masks.labels), [f"{out_dir}: no complete frame yet; starting at frame 0"])
    if record.get("complete") and record.get("frames") == last + 1:
        return ResumePlan(last, {}, [], complete=True)
    known = set(masks.ids)
    present = set(np.unique(labels).tolist()) & known
    seed = np.where(np.isin(labels, sorted(present)), labels, 0).astype(np.uint8)
    initial: dict[int, np.ndarray] = {}
    if present:
        initial[0] = seed
    for frame, lab in masks.labels.items():
        if frame > last:
            initial[frame - last] = lab
    if not initial:  # nobody left to track and nobody to come: the rest is background
        initial[0] = seed
    notes = [f"resuming after frame {last} ({reader.frame_name(last)}.png): objects re-seeded from their masks in that frame"]
    lost = sorted(o.id for o in masks.objects if o.start_frame <= last and o.id not in present)
    if lost:
        notes.append(
            f"object(s) {', '.join(map(str, lost))} are not in frame {last} (lost before the interruption); "
            "they stay lost in the resumed frames"
        )
    return ResumePlan(last, initial, notes)


# ----------------------------------------------------------------------------- engine state

#: The engine's saved video state (target models, memories, counters): what makes a resume exact.
#: Frames between two periodic saves of the engine state (measured cost in docs/RESULTS.md); a
#: run stopped by SIGINT/SIGTERM also saves it on the way out, a killed one resumes from the last.
STATE_EVERY = 50


def identity_sha256(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def state_extra(identity: dict, work_size: tuple[int, int]) -> dict:
    """What a saved state records about its run, so it is only ever continued by the same run."""
    return {"run": identity_sha256(identity), "internal_resolution": list(work_size)}


def load_saved_state(segmenter, out_dir: Path, identity: dict, work_size: tuple[int, int], last: int,
                     path: Path | None = None):
    """The saved engine state of this run in ``out_dir``, usable to continue after frame ``last``.

    Returns (state, None) or (None, the reason it cannot be used — None when there is no file).
    A state is used when it belongs to this run (same input, masks and engine options), was made
    at the same internal resolution, and every frame before it is complete in the folder. ``path``: another
    state file of the run (a keyframe) instead of the state file.
    """
    path = Path(path) if path is not None else RunFolder(out_dir).state_file
    if not path.is_file():
        return None, None
    try:
        state = segmenter.load_state(path)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file only means: re-seed
        return None, f"{path.name} is unusable ({type(exc).__name__})"
    if state.extra.get("run") != identity_sha256(identity):
        return None, f"{path.name} belongs to another run"
    if state.extra.get("internal_resolution") != list(work_size):
        return None, f"{path.name} was made at another max_size"
    if state.frame_index - 1 > last:
        return None, f"{path.name} is ahead of the masks in the folder"
    return state, None
