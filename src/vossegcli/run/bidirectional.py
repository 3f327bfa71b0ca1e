"""The backward pass of ``--bidirectional`` (DyeNet's bidirectional Re-MP and greedy tracklet linking,
on the FRTM engine).

After the forward pass has written every mask and ``diagnostics.jsonl``:

1. **Stretches.** Per object, every run of frames where it was lost, absent or uncertain and that
   ends in confidently tracked frames (the *anchor*: the best-matching of the first of them);
   runs of uncertain frames only (all of them drawn) count from :data:`MIN_UNCERTAIN` frames on.
   At most :data:`MAX_BACKWARD` frames before each anchor are revisited.
2. **Backward tracklets.** From each anchor, a fresh single-object engine state is started on the
   anchor frame with the forward mask of that object (target model trained on it, as on a start
   frame) and steps backward through the stretch, with the forward pass's templates for that
   object (so its similarities compare with the forward ones). It stops after
   :data:`STOP_AFTER` consecutive frames where it does not find the object either.
3. **Linking.** Stretches are taken greedily in order of their anchor's template similarity. A
   backward frame replaces the forward result for that object where the backward tracklet tracks
   the object confidently (status tracked) and the forward pass did not have it, or had it with a
   lower template similarity; the object's pixels are only written where the forward labels are background or
   that object (no contradiction with another object's tracklet).
4. **Rewrite.** Changed frames get new PNGs (atomically) and their diagnostics lines are updated
   (``"backward": true``).

Streaming: for each stretch in turn, its frames are decoded, in order, into an on-disk cache
(``<out>/.vosseg-backward/``, one ``.npy`` per frame at the engine's size: at most
:data:`MAX_BACKWARD` + 1 frames, removed afterwards), then read in reverse; memory and disk use do
not depend on the video's length (each stretch decodes the video again up to its last frame).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from vossegcli.engine.reid import TemplateBank
from vossegcli.engine.segmenter import Segmenter
from vossegcli.engine.state import VideoState
from vossegcli.io.palette import read_label_png, write_label_png
from vossegcli.io.video import FrameReader
from vossegcli.run.diagnostics import read_records, rewrite_records
from vossegcli.run.inputs import FrameSource, resize_labels
from vossegcli.io.run_folder import RunFolder

#: Most frames one backward tracklet revisits before its anchor.
MAX_BACKWARD = 300
#: A backward tracklet stops after this many consecutive frames without the object.
STOP_AFTER = 3
#: A stretch of uncertain frames only (all drawn) is revisited from this length on.
MIN_UNCERTAIN = 3
#: The anchor is the best of the first this many tracked frames after a stretch.
ANCHOR_WINDOW = 5
WRITTEN = ("tracked", "uncertain")


@dataclass
class Stretch:
    object_id: int
    first: int  #: first frame of the stretch
    anchor: int  #: the confidently tracked frame after it
    anchor_similarity: float


def find_stretches(diagnostics: Path) -> list[Stretch]:
    """Per object, the runs of lost / absent / uncertain frames that end in tracked frames and hold
    a lost or absent frame or at least :data:`MIN_UNCERTAIN` uncertain ones (a lone uncertain frame
    was drawn anyway), ordered by the anchor's similarity (best first). The anchor is the frame of
    highest similarity among the first :data:`ANCHOR_WINDOW` tracked frames after the run (the
    first frame after a re-find often still holds some background)."""
    open_runs: dict[str, list[int]] = {}  # id → [first frame, frames without a mask, frames]
    anchors: dict[str, list] = {}  # id → [first, best frame, best similarity, tracked frames seen]
    out: list[Stretch] = []

    def close(key: str) -> None:
        first, best, sim, _ = anchors.pop(key)
        out.append(Stretch(int(key), max(first, best - MAX_BACKWARD), best, sim))

    for record in read_records(diagnostics):
        t = record["frame"]
        for key, o in record["objects"].items():
            if o["status"] == "tracked":
                run = open_runs.pop(key, None)
                if run is not None and (run[1] > 0 or run[2] >= MIN_UNCERTAIN):
                    anchors[key] = [run[0], t, float(o["similarity"]), 0]
                if key in anchors:
                    a = anchors[key]
                    if float(o["similarity"]) > a[2]:
                        a[1], a[2] = t, float(o["similarity"])
                    a[3] += 1
                    if a[3] >= ANCHOR_WINDOW:
                        close(key)
            else:
                if key in anchors:
                    close(key)
                run = open_runs.setdefault(key, [t, 0, 0])
                run[1] += o["status"] not in WRITTEN
                run[2] += 1
    for key in list(anchors):
        close(key)
    return sorted(out, key=lambda s: -s.anchor_similarity)


def cache_frames(source: FrameSource, frames: set[int], folder: Path) -> None:
    """Decode the video up to the last of ``frames`` and keep those (at the engine's size) as .npy files."""
    folder.mkdir(parents=True, exist_ok=True)
    last = max(frames)
    decoded = source.frames(min(frames))
    try:
        for frame in decoded:
            if frame.index in frames:
                np.save(folder / f"{frame.index}.npy", frame.image)
            if frame.index >= last:
                break
    finally:
        decoded.close()  # stops the decoder


def _forward_entries(diagnostics: Path, frames: set[int]) -> dict[int, dict]:
    return {r["frame"]: r["objects"] for r in read_records(diagnostics) if r["frame"] in frames}


def backward_pass(
    segmenter: Segmenter,
    forward_state: VideoState,
    input_path: Path,
    out_dir: Path,
    frame_name: Callable[[int], str],
    work_size: tuple[int, int],
    palette: list[int] | None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run the backward pass over ``out_dir`` (written by the forward pass); returns what changed:
    ``{"stretches", "frames_changed", "changed": {object id: [[first, last], ...]}, "seconds"}``."""
    start = time.perf_counter()
    diag_path = RunFolder(out_dir).diagnostics_file
    # (an object missing from the engine state — not re-seeded by a resume — has no templates to link by)
    stretches = [s for s in find_stretches(diag_path) if s.object_id in forward_state.objects]
    result = {"stretches": len(stretches), "frames_changed": 0, "changed": {}, "seconds": 0.0}
    if not stretches:
        return result
    cache = RunFolder(out_dir).backward_dir
    changes: dict[int, dict[str, dict]] = {}
    try:
        forward = _forward_entries(diag_path, {t for s in stretches for t in range(s.first, s.anchor + 1)})
        bank = forward_state.presence.bank
        with FrameSource(FrameReader(input_path), size=work_size) as source:
            for done, stretch in enumerate(stretches, 1):
                # one stretch's frames at a time: the cache holds at most MAX_BACKWARD + 1 frames
                shutil.rmtree(cache, ignore_errors=True)
                cache_frames(source, set(range(stretch.first, stretch.anchor + 1)), cache)
                _one_stretch(segmenter, forward_state, bank, stretch, cache, out_dir, frame_name, work_size, forward, changes,
                             palette)
                if progress:
                    progress(done, len(stretches))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if changes:
        rewrite_records(diag_path, changes)
    per_object: dict[str, list[list[int]]] = {}
    for t in sorted(changes):
        for key in changes[t]:
            runs = per_object.setdefault(key, [])
            if runs and runs[-1][1] == t - 1:
                runs[-1][1] = t
            else:
                runs.append([t, t])
    result.update(frames_changed=len(changes), changed=per_object, seconds=round(time.perf_counter() - start, 3))
    return result


def _one_stretch(segmenter: Segmenter, forward_state: VideoState, bank: TemplateBank, stretch: Stretch, cache: Path,
                 out_dir: Path, frame_name: Callable[[int], str], work_size: tuple[int, int], forward: dict[int, dict],
                 changes: dict[int, dict[str, dict]], palette: list[int] | None) -> None:
    key = str(stretch.object_id)
    slot = forward_state.objects.slot_of(stretch.object_id)
    anchor_png = Path(out_dir) / f"{frame_name(stretch.anchor)}.png"
    full = read_label_png(anchor_png)
    anchor_mask = resize_labels(np.where(full == stretch.object_id, stretch.object_id, 0).astype(np.uint8), work_size)
    if not anchor_mask.any():
        return
    state = segmenter.new_state()
    segmenter.step(state, np.load(cache / f"{stretch.anchor}.npy"), anchor_mask)
    # Judge the backward tracklet by the forward pass's templates of this object.
    state.presence.bank.adopt(bank, [slot])
    misses = 0
    for t in range(stretch.anchor - 1, stretch.first - 1, -1):
        labels = segmenter.step(state, np.load(cache / f"{t}.npy"))
        d = state.diagnostics
        status = d.status[0]
        if status != "tracked":  # only confident backward frames are linked
            misses += 1
            if misses >= STOP_AFTER:
                break
            continue
        misses = 0
        fwd = changes.get(t, {}).get(key) or forward.get(t, {}).get(key)
        if fwd is not None and fwd["status"] in WRITTEN and fwd["similarity"] >= d.similarity[0]:
            continue
        png = Path(out_dir) / f"{frame_name(t)}.png"
        current = read_label_png(png)
        mine = resize_labels((labels == stretch.object_id).astype(np.uint8), (current.shape[1], current.shape[0])) > 0
        merged = np.where(current == stretch.object_id, 0, current).astype(np.uint8)
        merged[mine & (merged == 0)] = stretch.object_id
        write_label_png(png, merged, palette)
        changes.setdefault(t, {})[key] = {
            "status": status, "area": int(d.area[0]), "area_ratio": d.area_ratio[0], "peak": d.peak[0],
            "mean_probability": d.mean_probability[0], "similarity": d.similarity[0],
            "refound": bool(fwd.get("refound")) if fwd is not None else False, "backward": True,
            "parts": d.parts[0] if d.parts else None, "reason": None,
        }


__all__ = ["MAX_BACKWARD", "STOP_AFTER", "Stretch", "backward_pass", "cache_frames", "find_stretches"]
