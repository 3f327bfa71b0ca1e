"""Between two masks of an object: propagate backward from the later one and blend with the forward pass.

An *anchor* is a mask given again for objects already tracked (:mod:`vossegcli.io.masks`). The
forward pass re-fits the objects there (:meth:`~vossegcli.engine.segmenter.Segmenter.step`); this
module makes the frames *before* an anchor benefit from it too (XMem++'s "annotated frames used
both ways"):

* **Segments.** Each anchor frame ``b`` closes a segment that starts after ``a``, the frame of the
  previous mask (start frame or anchor); at most :data:`MAX_BACKWARD` frames before ``b`` are
  revisited.
* **Backward pass.** When the forward pass enters a segment, the segment's frames are decoded
  (at the engine's size) into an on-disk cache; a fresh single-use engine state starts on ``b``
  with the anchor mask — the objects in it that started before ``b`` — and steps backward to the
  segment's first frame, keeping each frame's per-object probabilities and statuses on disk.
* **Blend.** On each frame ``t`` of the segment the forward pass's probabilities ``p_f`` and the
  backward pass's ``p_b`` of an object in both are averaged with weights ``(b − t) · c_f`` and
  ``(t − a') · c_b``, ``a'`` = ``a`` or the frame before the first one revisited, whichever is later:
  the nearer mask counts more, and each pass counts by its own confidence on
  that frame (:func:`_confidence`: its presence status and how well its region matches its
  templates); the objects are merged as in the engine
  (soft aggregation). Objects only in the forward pass keep its probabilities. A frame at an anchor is the anchor.

Disk: one segment at a time — its frames (H·W·3 bytes each) and backward probabilities
(N·H·W bytes each) at the engine's size, at most :data:`MAX_BACKWARD` frames, removed as the forward
pass moves on. Memory does not grow with the video's length. The backward pass is deterministic,
so a resumed run recomputes the same segment and continues exactly.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vossegcli.engine.merge import label_map, soft_aggregate
from vossegcli.engine.segmenter import Segmenter
from vossegcli.run.bidirectional import MAX_BACKWARD, cache_frames
from vossegcli.io.video import FrameReader
from vossegcli.run.inputs import FrameSource

#: How much a pass's probabilities count on a frame, by its presence status there. Between two
#: masks of an object, a pass that has lost it (lost or absent: its model no longer matches) is far
#: more often wrong than the object gone, so it counts little against a pass that tracks it.
CONFIDENCE = {"tracked": 1.0, "uncertain": 0.5, "absent": 0.05, "lost": 0.05}
#: ... times exp((similarity − 1) / SIMILARITY_SCALE), the pass's region against its own templates: when
#: the passes disagree, the one whose region still looks like its object (0.97 against 0.88: ×6)
#: outweighs the nearer mask.
SIMILARITY_SCALE = 0.05
#: Off: the forward pass alone (how the blend was measured against it, docs/RESULTS.md).
BLEND = True


class AnchorBlend:
    """The backward passes from anchors and their blend with the forward pass, one segment at a time.

    Args:
        segmenter: the run's engine (stateless; the backward pass uses its own state).
        input_path: the video, decoded again for the backward frames.
        work_size: (W, H) the engine's frame size.
        masks: frame → (H, W) uint8 id map at the engine's size, every frame a mask is given on.
        anchors: frame → the ids given again there (objects started before it), ascending frames.
        cache: folder for the segment's frames and backward probabilities (removed by :meth:`close`).
        notify: called with one line when a backward pass starts.
        floor: the first frame this run writes (a resumed or corrected run does not revisit earlier ones).
    """

    def __init__(self, segmenter: Segmenter, input_path: Path, work_size: tuple[int, int], masks: dict[int, np.ndarray],
                 anchors: dict[int, list[int]], cache: Path, notify: Callable[[str], None] | None = None,
                 floor: int = 0) -> None:
        self.segmenter = segmenter
        self.input_path = Path(input_path)
        self.work_size = work_size
        self.masks = masks
        self.anchors = dict(sorted((f, ids) for f, ids in anchors.items() if ids))
        self.cache = Path(cache)
        self.notify = notify
        self.floor = floor
        self._segment: tuple[int, int, int] | None = None  # (a, first frame revisited, b) held in the cache
        self._status: dict[int, dict[int, str]] = {}  # frame → id → backward status

    def segment_of(self, t: int) -> tuple[int, int, int] | None:
        """(a, lo, b): the previous mask frame, the first frame the backward pass revisits and the
        anchor after ``t``, when ``t`` lies in a segment revisited backward; else None."""
        later = [b for b in self.anchors if b > t]
        if not later:
            return None
        b = later[0]
        a = max((f for f in self.masks if f < b), default=-1)
        lo = max(a + 1, b - MAX_BACKWARD, self.floor)
        if t < lo or a < 0:
            return None
        return a, lo, b

    def wants(self, t: int) -> bool:
        """Whether frame ``t`` is blended (the forward step must keep its probabilities)."""
        return BLEND and self.segment_of(t) is not None

    def prepare(self, t: int) -> None:
        """Make sure the backward pass of ``t``'s segment is in the cache (runs it on entering a segment)."""
        seg = self.segment_of(t)
        if seg is None or seg == self._segment:
            return
        a, lo, b = seg
        shutil.rmtree(self.cache, ignore_errors=True)
        self._segment, self._status = None, {}
        if self.notify:
            self.notify(f"propagating backward from the mask of frame {b} to frame {lo}")
        frames = self.cache / "frames"
        with FrameSource(FrameReader(self.input_path), size=self.work_size) as source:
            cache_frames(source, set(range(lo, b + 1)), frames)
        if not (frames / f"{b}.npy").is_file():  # the mask's frame is past the video's real end (said at the end)
            self._segment = seg
            return
        seg_state = self.segmenter.new_state()
        anchor = self.masks[b]
        given = np.where(np.isin(anchor, self.anchors[b]), anchor, 0).astype(np.uint8)
        self.segmenter.step(seg_state, np.load(frames / f"{b}.npy"), given)
        for u in range(b - 1, lo - 1, -1):
            self.segmenter.step(seg_state, np.load(frames / f"{u}.npy"), probabilities=True)
            np.save(self.cache / f"{u}.npy", seg_state.probabilities)
            d = seg_state.diagnostics
            self._status[u] = {i: (st, sim) for i, st, sim in zip(d.ids, d.status, d.similarity)} if d is not None else {}
        shutil.rmtree(frames, ignore_errors=True)
        (self.cache / "ids.json").write_text(json.dumps(list(seg_state.objects.ids)))
        self._segment = seg

    def blend(self, t: int, labels: np.ndarray, ids: list[int], forward: np.ndarray | None,
              forward_status: list[tuple[str, float]] | None) -> np.ndarray:
        """The label map of frame ``t``: the forward pass's ``labels`` blended with the backward pass's
        probabilities (module docstring). ``forward``: (N, H, W) uint8 probabilities of the objects
        ``ids`` (slot order), ``forward_status`` their (status, template similarity); without them
        ``labels`` stay."""
        seg = self.segment_of(t)
        if not BLEND or seg is None or forward is None or forward.shape[0] != len(ids) or seg != self._segment:
            return labels
        a, _, b = seg
        a = max(a, b - MAX_BACKWARD - 1)  # (the backward pass reaches no further: its weight starts at 1 there)
        path = self.cache / f"{t}.npy"
        if not path.is_file():
            return labels
        backward = np.load(path)
        path.unlink()
        back_ids = json.loads((self.cache / "ids.json").read_text())
        status = self._status.get(t, {})
        wf, wb = float(b - t), float(t - a)
        probs = forward.astype(np.float32) / 255.0
        for k, object_id in enumerate(back_ids):
            if object_id not in ids:
                continue
            i = ids.index(object_id)
            cf = wf * _confidence(*(forward_status[i] if forward_status else ("tracked", 1.0)))
            cb = wb * _confidence(*status.get(object_id, ("tracked", 1.0)))
            probs[i] = (cf * probs[i] + cb * backward[k].astype(np.float32) / 255.0) / max(cf + cb, 1e-6)
        merged = soft_aggregate(torch.from_numpy(probs))
        return label_map(merged, torch.tensor(ids)).numpy().astype(np.uint8)

    def close(self) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)


def _confidence(status: str, similarity: float | None) -> float:
    """How much a pass counts on a frame: its status's weight times its template match, sharpened."""
    sim = 1.0 if similarity is None else float(similarity)
    return CONFIDENCE.get(status, 1.0) * math.exp((min(sim, 1.0) - 1.0) / SIMILARITY_SCALE)


__all__ = ["BLEND", "CONFIDENCE", "SIMILARITY_SCALE", "AnchorBlend"]
