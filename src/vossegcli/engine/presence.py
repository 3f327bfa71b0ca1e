"""Is each object still there, and where? Per-frame presence decisions, re-identification of lost
objects, a spatial prior and an ownership penalty for look-alikes, and scene-cut detection.

Everything here works on the stride-16 grid before the refiner runs, from three signals per object:

* ``peak``: the maximum of the target model's scores (under the spatial prior), against the
  object's own running reference (an average over its confidently tracked frames);
* ``similarity``: the maximum cosine between the embedding of the region the target model marks
  and the object's templates (:mod:`vossegcli.engine.reid`);
* a scene cut: consecutive frames' global descriptors (the mean of the unit-normalized stride-32
  features) and colour histograms both change (:mod:`vossegcli.engine.scene_cut`).

Statuses (:class:`Status`):

* ``tracked``: the region matches the templates and the peak is in its usual range: the mask is
  written and the memory learns from the frame (templates may be expanded from it);
* ``uncertain``: the mask is written, but the match is weak, the area jumped, or the object was
  re-found on this frame: the memory does not learn from it;
* ``lost``: no mask; something in the frame resembles the object a little (best similarity between
  the ``absent`` and ``found`` thresholds) but not enough;
* ``absent``: no mask; nothing in the frame resembles the object (or the target model does not fire).

A written object becomes lost at once on a scene cut unless its region reaches
``found_similarity``, and otherwise only after ``absent_after`` consecutive frames with similarity
below ``absent_similarity`` (or a collapsed peak): blur and pose changes lower the similarity of
well-tracked objects too, so the rule without a cut is strict (docs/RESULTS.md, "Lost, absent and look-alike objects").

While an object is lost or absent, every frame searches for it: its target model's own response
(no window while it is gone) and the local maxima of its raw scores are candidates, each maximum a
box of the object's last size around it; the best candidate reaching ``found_similarity`` re-finds
the object there. Right after a cut back to the scene an object was last tracked in (the global
descriptors match), ``absent_similarity`` suffices for ``scene_return_frames`` frames.

Look-alikes: a written object's scores are multiplied by a window around its previous box (from
the written mask) shifted by its velocity (1 inside the box grown by ``prior_margin`` of its size,
Gaussian decay outside), so it cannot jump onto a look-alike elsewhere in the frame; and where
another object owned a pixel in the previous frame, the logits are lowered
(:func:`ownership_penalties`). A lost object has no window: re-identification searches the whole
frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum

import torch
import torch.nn.functional as F
from torch import Tensor

from vossegcli.engine.device import to_host
from vossegcli.engine.reid import TemplateBank, mask_boxes, region_embeddings
from vossegcli.engine.scene_cut import CutRule, colour_distance, is_cut


class Status(IntEnum):
    TRACKED = 0
    UNCERTAIN = 1
    LOST = 2
    ABSENT = 3


STATUS_NAMES = tuple(s.name.lower() for s in Status)


@dataclass(frozen=True)
class PresenceConfig:
    """Thresholds of the presence decisions (chosen on data: docs/RESULTS.md, "How the thresholds were chosen")."""

    #: False: statuses are computed and reported but decide nothing (every object is always written,
    #: nothing is searched, no ownership penalty; the spatial prior has its own switch).
    enabled: bool = True
    spatial_prior: bool = True
    prior_margin: float = 1.0  #: the window is 1 inside the box grown by this fraction of its size per side
    prior_sigma: float = 0.5  #: Gaussian decay outside it, in box sizes
    found_similarity: float = 0.75  #: re-finds an object / keeps it through a scene cut
    track_similarity: float = 0.65  #: below: uncertain (no learning)
    absent_similarity: float = 0.3  #: below (for ``absent_after`` frames): gone (no mask); "absent" if no candidate reaches it
    absent_after: int = 3  #: consecutive frames below ``absent_similarity`` before a tracked object is gone (a cut: 1)
    #: After a cut back to the scene an object was last tracked in, for this many frames it is re-found
    #: from ``absent_similarity`` on (its look may have changed, the scene says it is back).
    scene_return_frames: int = 3
    peak_fraction: float = 0.3  #: a peak below this fraction of the object's reference: gone
    cut_similarity: float = 0.78  #: consecutive global descriptors below this cosine (and colours changed): a scene cut
    cut_colour: float = 0.2  #: colour-histogram distance (0..1) from which a changed descriptor is a cut
    cut_sure: float = 0.5  #: descriptors below this cosine are a cut whatever the colours
    candidate_score: float = 0.25  #: a local maximum of the raw scores is a candidate from this score
    max_candidates: int = 5
    area_jump: float = 3.0  #: area ×/÷ more than this against the previous frame: uncertain
    template_capacity: int = 8
    template_every: int = 10  #: frames between template expansions
    template_novelty: float = 0.95  #: a new template must have cosine below this to all held ones
    peak_rate: float = 0.1  #: rate of the running peak reference
    #: Logit penalty where another object owned a pixel in the previous frame (moved by its velocity)
    #: and this object did not nearby; 0 turns it off.
    ownership_penalty: float = 4.0
    ownership_reach: int = 1  #: cells (of :data:`OWNER_STRIDE` px) an object may grow into another's area per frame


@dataclass
class Assessment:
    """One frame's presence decisions, per slot (host lists) plus the scores' window (N, 1, h, w)."""

    status: list[int]
    peak: list[float]
    similarity: list[float]
    refound: list[bool]
    scene_cut: bool
    window: Tensor | None
    embeddings: Tensor  #: (N, D) of each object's region this frame
    boxes: list[list[float]]  #: (x0, y0, x1, y1) cells of each object's region ([] when it has none)
    areas: list[float]  #: soft area of each object's region, frame pixels
    frame_similarity: float | None = None

    def written(self, slot: int) -> bool:
        return self.status[slot] in (Status.TRACKED, Status.UNCERTAIN)


@dataclass
class FrameDiagnostics:
    """One frame's self-diagnostics, per object in slot order (host lists; see the module docstring).

    ``area`` is the written mask's area in engine pixels, ``area_ratio`` its ratio to the previous
    frame's (None after an empty mask), ``peak`` the target model's peak score, ``mean_probability``
    the refined probability averaged over the written mask (None when empty), ``similarity`` the
    best template cosine of the object's region, ``refound``: re-identified on this frame.
    """

    frame: int
    ids: list[int]
    status: list[str]
    area: list[int]
    area_ratio: list[float | None]
    peak: list[float]
    mean_probability: list[float | None]
    similarity: list[float]
    refound: list[bool]
    scene_cut: bool = False
    frame_similarity: float | None = None  #: cosine of this frame's global descriptor to the previous one's
    #: Per object, the written mask's separate parts of a real size (None when nothing is written).
    parts: list[int | None] = field(default_factory=list)
    #: Per object, why it is uncertain / lost / absent (None when tracked).
    reason: list[str | None] = field(default_factory=list)


@dataclass
class PresenceState:
    """Per video: per-slot status, box and velocity (stride-16 cells), peak reference, templates and
    the previous frame's global descriptor."""

    status: list[int] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)  #: (x0, y0, x1, y1) cells
    velocity: list[list[float]] = field(default_factory=list)  #: (dx, dy) cells per frame
    peak_ref: list[float] = field(default_factory=list)
    area: list[float] = field(default_factory=list)  #: soft area of the last region, frame pixels
    written_area: list[int] = field(default_factory=list)  #: pixels of the last written mask (diagnostics)
    low_run: list[int] = field(default_factory=list)  #: consecutive frames with similarity below ``absent_similarity``
    #: (N, D) global descriptor of the last frame each object was tracked in (its scene)
    scene: Tensor | None = None
    back: list[int] = field(default_factory=list)  #: frames left in which a returned scene eases re-finding
    bank: TemplateBank | None = None
    descriptor: Tensor | None = None  #: (D,) previous frame
    colour: Tensor | None = None  #: (B,) previous frame's colour histogram
    #: (N, h8, w8) each object's written mask of the previous frame, area-averaged to stride 8
    owner: Tensor | None = None

    def add_objects(self, embeddings: Tensor, boxes: Tensor, peaks: list[float], areas: list[float], frame: int,
                    capacity: int, descriptor: Tensor, colour: Tensor | None = None) -> None:
        if self.bank is None:
            self.bank = TemplateBank(capacity, embeddings.shape[1], embeddings.device)
        self.bank.add_objects(embeddings, frame)
        n = embeddings.shape[0]
        self.status += [int(Status.TRACKED)] * n
        self.boxes += [list(map(float, b)) for b in boxes.tolist()]
        self.velocity += [[0.0, 0.0] for _ in range(n)]
        self.peak_ref += [float(p) for p in peaks]
        self.area += [float(a) for a in areas]
        self.low_run += [0] * n
        self.back += [0] * n
        if self.descriptor is None:  # so a cut right after the first start frame is seen
            self.descriptor, self.colour = descriptor, colour
        scenes = descriptor[None].expand(n, -1)
        self.scene = scenes.clone() if self.scene is None else torch.cat([self.scene, scenes])

    def select(self, slots: list[int]) -> None:
        """Keep only the objects in ``slots``, in that order (the frame-level signals stay)."""
        owned = self.owner is not None and self.owner.shape[0] == len(self.status)
        for name in ("status", "boxes", "velocity", "peak_ref", "area", "written_area", "low_run", "back"):
            values = getattr(self, name)
            setattr(self, name, [values[i] for i in slots if i < len(values)])
        index = torch.tensor(slots, dtype=torch.long)
        if self.scene is not None:
            self.scene = self.scene[index.to(self.scene.device)]
        if self.bank is not None:
            self.bank.select(slots)
        if self.owner is not None:  # (the previous frame's masks; stale after objects started: dropped)
            self.owner = self.owner[index.to(self.owner.device)] if owned else None

    def state_dict(self) -> dict:
        return {
            "status": list(self.status), "boxes": [list(b) for b in self.boxes],
            "velocity": [list(v) for v in self.velocity], "peak_ref": list(self.peak_ref), "area": list(self.area),
            "written_area": list(self.written_area), "low_run": list(self.low_run), "back": list(self.back),
            "scene": self.scene.detach().cpu().clone() if self.scene is not None else None,
            "bank": self.bank.state_dict() if self.bank is not None else None,
            "descriptor": self.descriptor.detach().cpu().clone() if self.descriptor is not None else None,
            "colour": self.colour.detach().cpu().clone() if self.colour is not None else None,
            "owner": self.owner.detach().cpu().clone() if self.owner is not None else None,
        }

    @classmethod
    def from_state_dict(cls, blob: dict, device: torch.device | str = "cpu") -> "PresenceState":
        return cls(
            status=[int(s) for s in blob["status"]], boxes=[list(b) for b in blob["boxes"]],
            velocity=[list(v) for v in blob["velocity"]], peak_ref=[float(p) for p in blob["peak_ref"]],
            area=[float(a) for a in blob["area"]], written_area=[int(a) for a in blob["written_area"]],
            low_run=[int(a) for a in blob["low_run"]], back=[int(a) for a in blob["back"]],
            scene=blob["scene"].to(device) if blob["scene"] is not None else None,
            bank=TemplateBank.from_state_dict(blob["bank"], device) if blob["bank"] is not None else None,
            descriptor=blob["descriptor"].to(device) if blob["descriptor"] is not None else None,
            colour=blob["colour"].to(device) if blob.get("colour") is not None else None,
            owner=blob["owner"].to(device) if blob.get("owner") is not None else None,
        )


#: Grid of the ownership maps, in frame pixels.
OWNER_STRIDE = 8


def _shift(maps: Tensor, dx: int, dy: int) -> Tensor:
    """(h, w) map moved by (dx, dy) cells, zero-filled."""
    h, w = maps.shape
    out = torch.zeros_like(maps)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    if abs(dx) < w and abs(dy) < h:
        out[yd, xd] = maps[ys, xs]
    return out


def ownership_penalties(owner: Tensor, velocity: list[list[float]], written: list[bool], reach: int) -> Tensor:
    """(N, h8, w8) penalties in [0, 1]: where another written object owned the pixel in the previous
    frame (its mask moved by its velocity) and this object's own moved mask, grown by ``reach``
    cells, does not reach. With identical-looking objects, appearance cannot say whose a pixel is;
    this keeps each pixel with the object that had it, unless the object's own region grows into it."""
    n = owner.shape[0]
    scale = FEATURE_STRIDE_CELLS
    moved = torch.stack([
        _shift(owner[i], round(velocity[i][0] * scale), round(velocity[i][1] * scale)) if written[i] else torch.zeros_like(owner[i])
        for i in range(n)
    ])
    own = F.max_pool2d(moved[:, None], 2 * reach + 1, stride=1, padding=reach)[:, 0] if reach > 0 else moved
    others = torch.stack([
        torch.cat([moved[:i], moved[i + 1:]]).amax(dim=0) if n > 1 else torch.zeros_like(moved[0]) for i in range(n)
    ])
    return others * (1 - own)


#: Stride-16 cells per ownership cell side (velocities are kept in stride-16 cells).
FEATURE_STRIDE_CELLS = 16 // OWNER_STRIDE


def frame_descriptor(s32: Tensor) -> Tensor:
    """(C, h, w) stride-32 features → (C,) unit global descriptor."""
    return F.normalize(F.normalize(s32.float(), dim=0).mean(dim=(1, 2)), dim=0)


def spatial_windows(boxes: Tensor, velocity: Tensor, active: Tensor, grid_hw: tuple[int, int], margin: float,
                    sigma: float) -> Tensor:
    """(N, 4) boxes and (N, 2) velocities in cells, (N,) bool → (N, 1, h, w) windows in [0, 1]
    (ones for inactive objects)."""
    h, w = grid_hw
    centre = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], dim=1) + velocity
    size = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1).clamp_min(1.0)
    half = size * (0.5 + margin) + velocity.abs()
    scale = sigma * size + 1.0
    xs = torch.arange(w, device=boxes.device, dtype=torch.float32) + 0.5
    ys = torch.arange(h, device=boxes.device, dtype=torch.float32) + 0.5
    dx = ((xs[None] - centre[:, :1]).abs() - half[:, :1]).clamp_min(0) / scale[:, :1]  # (N, w)
    dy = ((ys[None] - centre[:, 1:]).abs() - half[:, 1:]).clamp_min(0) / scale[:, 1:]  # (N, h)
    window = torch.exp(-0.5 * (dy[:, :, None] ** 2 + dx[:, None, :] ** 2))
    return torch.where(active[:, None, None], window, torch.ones_like(window))[:, None]


def local_maxima(scores: Tensor, min_score: float, k: int) -> list[tuple[int, int, float]]:
    """(h, w) scores → up to ``k`` local maxima (3×3) ≥ ``min_score`` as (y, x, score), best first."""
    pooled = F.max_pool2d(scores[None, None], 3, stride=1, padding=1)[0, 0]
    peaks = (scores >= pooled) & (scores >= min_score)
    values = torch.where(peaks, scores, torch.full_like(scores, -math.inf)).flatten()
    top = torch.topk(values, min(k, values.numel()))
    w = scores.shape[1]
    return [(i // w, i % w, v) for v, i in zip(top.values.tolist(), top.indices.tolist()) if v > -math.inf]


def region_weights(scores: Tensor, sharpness: float) -> Tensor:
    """(K, h, w) target-model scores → (K, h, w) soft region weights (the engine's D-only probability)."""
    return torch.sigmoid(sharpness * (scores - 0.5))


def assess(
    state: PresenceState,
    cfg: PresenceConfig,
    scores: Tensor,
    s16: Tensor,
    s32: Tensor,
    sharpness: float,
    colour: Tensor | None = None,
) -> Assessment:
    """This frame's statuses from the raw scores (N, 1, h, w), the backbone features (C, h, w),
    (C', h', w') and the frame's colour histogram (B,) (None: the descriptor decides cuts alone);
    updates ``state.status``, ``state.boxes`` (for re-found objects), the descriptor and the colours."""
    n, _, h, w = scores.shape
    desc = frame_descriptor(s32)
    boxes = torch.tensor(state.boxes, device=scores.device, dtype=torch.float32)
    written = torch.tensor([s in (Status.TRACKED, Status.UNCERTAIN) for s in state.status], device=scores.device)
    if cfg.spatial_prior:
        window = spatial_windows(boxes, torch.tensor(state.velocity, device=scores.device, dtype=torch.float32),
                                 written, (h, w), cfg.prior_margin, cfg.prior_sigma)
    else:
        window = torch.ones_like(scores)
    used = scores * window
    weights = region_weights(used[:, 0], sharpness)
    region = mask_boxes(weights)
    emb = region_embeddings(s16, s32, region, weights)
    # every signal the decisions below read, in one transfer: the frame's similarity to the previous
    # one and its colour change (cuts), each object's scene match, region, similarity, peak and area
    frame = torch.stack([desc @ state.descriptor if state.descriptor is not None else desc.new_zeros(()),
                         colour_distance(colour, state.colour) if colour is not None and state.colour is not None
                         else desc.new_ones(())])
    returned = state.scene @ desc >= cfg.cut_similarity if state.scene is not None else desc.new_zeros(n, dtype=torch.bool)
    per_object = torch.stack([returned.float(), (weights >= 0.5).flatten(1).any(dim=1).float(),
                              state.bank.similarity(list(range(n)), emb), used.flatten(1).amax(dim=1),
                              weights.flatten(1).sum(dim=1) * 256.0], dim=1)  # areas: frame pixels (stride-16 cells)
    frame_h, per_object_h, region_h = to_host(frame, per_object.float(), region.float())
    frame_sim, colour_change = (float(frame_h[0]), float(frame_h[1])) if state.descriptor is not None else (None, None)
    returned_h, has_region, sims, peaks, areas = (per_object_h[:, k].tolist() for k in range(5))
    rule = CutRule(cfg.cut_similarity, cfg.cut_colour, cfg.cut_sure)
    cut = frame_sim is not None and is_cut(frame_sim, colour_change, rule)
    state.descriptor, state.colour = desc, colour
    if cut:  # objects whose scene this is again get a few frames of easier re-finding
        state.back = [cfg.scene_return_frames if r else 0 for r in returned_h]
    else:
        state.back = [max(b - 1, 0) for b in state.back]
    boxes_out = [b if on else [] for b, on in zip(region_h.tolist(), has_region)]
    status, refound = list(state.status), [False] * n
    gone: list[int] = []
    for i in range(n):
        ref = state.peak_ref[i]
        weak_peak = peaks[i] < cfg.peak_fraction * ref
        low = weak_peak or sims[i] < cfg.absent_similarity
        state.low_run[i] = state.low_run[i] + 1 if low else 0
        if status[i] in (Status.TRACKED, Status.UNCERTAIN) or not cfg.enabled:
            if cut:
                ok = sims[i] >= _found(cfg, state, i) and not weak_peak
                status[i] = Status.UNCERTAIN if ok else Status.LOST
            elif state.low_run[i] >= cfg.absent_after:
                status[i] = Status.LOST
            elif low or sims[i] < cfg.track_similarity or not _steady(areas[i], state.area[i], cfg.area_jump):
                status[i] = Status.UNCERTAIN
            else:
                status[i] = Status.TRACKED
        elif sims[i] >= _found(cfg, state, i) and not weak_peak:
            # a gone object whose target model's own response (no window while gone) matches again
            status[i], refound[i] = Status.UNCERTAIN, True
            state.velocity[i] = [0.0, 0.0]
            state.low_run[i] = 0
            if boxes_out[i]:
                state.boxes[i] = list(boxes_out[i])
        if status[i] in (Status.LOST, Status.ABSENT):
            gone.append(i)
    if not cfg.enabled:
        # Report only: a gone object keeps being written (and searched for nothing).
        state.status = [int(s) for s in status]
        return Assessment([int(s) for s in status], peaks, sims, refound, cut, window if cfg.spatial_prior else None, emb,
                          boxes_out, areas, frame_sim)
    for i in gone:
        found = _search(state, cfg, i, scores[i, 0], s16, s32, sharpness)
        if found is None:
            continue
        box, sim, peak, embedding = found
        if sim >= _found(cfg, state, i):
            status[i], refound[i] = Status.UNCERTAIN, state.status[i] in (Status.LOST, Status.ABSENT)
            sims[i], peaks[i] = sim, peak
            emb[i] = embedding
            boxes_out[i] = box
            state.boxes[i] = box
            state.velocity[i] = [0.0, 0.0]
            state.low_run[i] = 0
            if cfg.spatial_prior:
                b = torch.tensor([box], device=scores.device)
                window[i] = spatial_windows(b, torch.zeros_like(b[:, :2]), torch.ones(1, dtype=torch.bool, device=b.device),
                                            (h, w), cfg.prior_margin, cfg.prior_sigma)[0]
        else:
            status[i] = Status.LOST if sim >= cfg.absent_similarity else Status.ABSENT
            sims[i] = max(sims[i], sim)
    for i in gone:
        if status[i] == Status.LOST and sims[i] < cfg.absent_similarity:
            status[i] = Status.ABSENT
    state.status = [int(s) for s in status]
    return Assessment([int(s) for s in status], peaks, sims, refound, cut, window if cfg.spatial_prior else None, emb,
                      boxes_out, areas, frame_sim)


def _found(cfg: PresenceConfig, state: PresenceState, slot: int) -> float:
    """The similarity that re-finds ``slot`` now: eased right after a cut back to its scene."""
    return cfg.absent_similarity if state.back[slot] > 0 else cfg.found_similarity


def _steady(area: float, previous: float, jump: float) -> bool:
    """Whether ``area`` is within ×/÷ ``jump`` of ``previous`` (areas under one cell always are)."""
    if previous < 256.0 and area < 256.0:
        return True
    return previous / jump <= area <= previous * jump


def _search(state: PresenceState, cfg: PresenceConfig, slot: int, scores: Tensor, s16: Tensor, s32: Tensor,
            sharpness: float) -> tuple[list[float], float, float, Tensor] | None:
    """The best re-identification candidate of ``slot`` among the local maxima of its raw scores
    (h, w): (box, similarity, peak, embedding), or None when the target model fires nowhere."""
    ref = state.peak_ref[slot]
    peaks = local_maxima(scores, max(cfg.candidate_score, cfg.peak_fraction * ref), cfg.max_candidates)
    if not peaks:
        return None
    h, w = scores.shape
    x0, y0, x1, y1 = state.boxes[slot]
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    boxes = []
    for y, x, _ in peaks:
        cx, cy = x + 0.5, y + 0.5
        boxes.append([max(cx - bw / 2, 0.0), max(cy - bh / 2, 0.0), min(cx + bw / 2, float(w)), min(cy + bh / 2, float(h))])
    boxes_t = torch.tensor(boxes, device=scores.device)
    weights = region_weights(scores, sharpness)[None].expand(len(boxes), h, w)
    emb = region_embeddings(s16, s32, boxes_t, weights)
    sims = state.bank.similarity([slot] * len(boxes), emb)
    best = int(sims.argmax())
    return boxes[best], float(sims[best]), peaks[best][2], emb[best]


def after_frame(state: PresenceState, cfg: PresenceConfig, assessment: Assessment, frame: int,
                written_boxes: list[list[float]]) -> None:
    """Update boxes and velocities (from the written masks' boxes, in cells; [] for an empty mask),
    region areas, peak references and templates of the objects written on this frame."""
    for i, status in enumerate(assessment.status):
        box = written_boxes[i]
        if status not in (Status.TRACKED, Status.UNCERTAIN) or not box:
            continue
        old = state.boxes[i]
        if not assessment.refound[i]:  # (a re-found object's previous box is from before it was lost)
            shift = [(box[0] + box[2] - old[0] - old[2]) / 2, (box[1] + box[3] - old[1] - old[3]) / 2]
            state.velocity[i] = [0.5 * v + 0.5 * s for v, s in zip(state.velocity[i], shift)]
        state.boxes[i] = list(box)
        state.area[i] = assessment.areas[i]
        if status == Status.TRACKED:
            state.scene[i] = state.descriptor
            state.peak_ref[i] += cfg.peak_rate * (assessment.peak[i] - state.peak_ref[i])
            if frame - state.bank.added[i] >= cfg.template_every:
                state.bank.expand(i, assessment.embeddings[i], frame, cfg.template_novelty, assessment.similarity[i])
