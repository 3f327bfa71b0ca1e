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

from vossegcli.engine.reid import TemplateBank, mask_boxes, region_embeddings
from vossegcli.engine.scene_cut import colour_distance


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


#: Columns of :meth:`Assessment.packed`'s per-object rows (read back with the frame's labels).
_COLUMNS = ("status", "refound", "peak", "similarity", "has_box", "x0", "y0", "x1", "y1", "area",
            "low_run", "back", "moved", "box_set", "bx0", "by0", "bx1", "by1")
_C = {name: k for k, name in enumerate(_COLUMNS)}


@dataclass
class Assessment:
    """One frame's presence decisions, made on the device (nothing is read back here): per slot,
    (N,) tensors, plus the scores' window (N, 1, h, w) and the region embeddings (N, D). The frame
    step reads them back with its labels in one transfer (:meth:`packed`) and applies the state
    changes they carry with :func:`settle`."""

    status: Tensor  #: (N,) int64 :class:`Status`
    refound: Tensor  #: (N,) bool: re-identified on this frame
    peak: Tensor  #: (N,) float64 peak score
    similarity: Tensor  #: (N,) float64 best template cosine
    boxes: Tensor  #: (N, 4) float64 (x0, y0, x1, y1) cells of each object's region (or re-found box)
    has_box: Tensor  #: (N,) bool: the object has a region (``boxes`` is meaningful)
    areas: Tensor  #: (N,) float64 soft area of each object's region, frame pixels
    window: Tensor | None
    embeddings: Tensor  #: (N, D) of each object's region this frame
    frame: Tensor  #: (2,) float64: scene cut (0/1), cosine to the previous frame's descriptor (NaN: none)
    #: state changes, applied on the host after the read: (N,) consecutive low frames, frames of
    #: easier re-finding, velocity reset (bool), box replaced (bool) and the new boxes (N, 4) float64
    low_run: Tensor
    back: Tensor
    moved: Tensor
    box_set: Tensor
    new_boxes: Tensor

    @property
    def written(self) -> Tensor:
        """(N,) bool: the objects whose masks this frame writes (tracked or uncertain)."""
        return self.status <= Status.UNCERTAIN

    def packed(self) -> tuple[Tensor, Tensor]:
        """(N, len(_COLUMNS)) float64 per-object values and the (2,) frame values, for one read."""
        f = torch.float64
        rows = torch.cat([torch.stack([self.status.to(f), self.refound.to(f), self.peak, self.similarity,
                                       self.has_box.to(f)], dim=1), self.boxes,
                          torch.stack([self.areas, self.low_run.to(f), self.back.to(f), self.moved.to(f),
                                       self.box_set.to(f)], dim=1),
                          self.new_boxes], dim=1)
        return rows, self.frame


@dataclass
class Decisions:
    """One frame's presence decisions on the host (lists per slot), read back from an :class:`Assessment`."""

    status: list[int]
    peak: list[float]
    similarity: list[float]
    refound: list[bool]
    scene_cut: bool
    embeddings: Tensor  #: (N, D) of each object's region this frame (on the device)
    boxes: list[list[float]]  #: (x0, y0, x1, y1) cells of each object's region ([] when it has none)
    areas: list[float]  #: soft area of each object's region, frame pixels
    frame_similarity: float | None = None


def settle(state: "PresenceState", assessment: Assessment, rows, frame) -> Decisions:
    """Apply a frame's decisions to the host state (statuses, low runs, easier re-finding, velocity
    resets and boxes of re-found objects), from ``rows`` and ``frame`` (:meth:`Assessment.packed`,
    read back as numpy arrays)."""
    rows = rows.tolist()
    status = [int(r[_C["status"]]) for r in rows]
    state.status = list(status)
    state.low_run = [int(r[_C["low_run"]]) for r in rows]
    state.back = [int(r[_C["back"]]) for r in rows]
    for i, r in enumerate(rows):
        if r[_C["moved"]]:
            state.velocity[i] = [0.0, 0.0]
        if r[_C["box_set"]]:
            state.boxes[i] = [r[_C["bx0"]], r[_C["by0"]], r[_C["bx1"]], r[_C["by1"]]]
    frame_sim = float(frame[1])
    return Decisions(
        status=status, peak=[r[_C["peak"]] for r in rows], similarity=[r[_C["similarity"]] for r in rows],
        refound=[bool(r[_C["refound"]]) for r in rows], scene_cut=bool(frame[0]), embeddings=assessment.embeddings,
        boxes=[[r[_C["x0"]], r[_C["y0"]], r[_C["x1"]], r[_C["y1"]]] if r[_C["has_box"]] else [] for r in rows],
        areas=[r[_C["area"]] for r in rows], frame_similarity=None if math.isnan(frame_sim) else frame_sim,
    )


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


def ownership_penalties(owner: Tensor, velocity: list[list[float]], written: Tensor, reach: int) -> Tensor:
    """(N, h8, w8) penalties in [0, 1]: where another written object owned the pixel in the previous
    frame (its mask moved by its velocity) and this object's own moved mask, grown by ``reach``
    cells, does not reach. With identical-looking objects, appearance cannot say whose a pixel is;
    this keeps each pixel with the object that had it, unless the object's own region grows into it."""
    n = owner.shape[0]
    scale = FEATURE_STRIDE_CELLS
    moved = torch.stack([
        _shift(owner[i], round(velocity[i][0] * scale), round(velocity[i][1] * scale)) for i in range(n)
    ]) * written.to(owner.dtype)[:, None, None]  # ((N,) bool: an object not written owns nothing)
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


def local_maxima(scores: Tensor, min_score: Tensor | float, k: int) -> tuple[Tensor, Tensor]:
    """(N, h, w) scores → per map its up to ``k`` local maxima (3×3) ≥ ``min_score`` ((N,) or a
    number), best first: values (N, k) (−inf past the last maximum) and flat indices (N, k)."""
    n, h, w = scores.shape
    pooled = F.max_pool2d(scores[:, None], 3, stride=1, padding=1)[:, 0]
    floor = torch.as_tensor(min_score, device=scores.device).to(scores.dtype).reshape(-1, 1, 1)
    peaks = (scores >= pooled) & (scores >= floor)
    values = torch.where(peaks, scores, torch.full_like(scores, -math.inf)).flatten(1)
    top = torch.topk(values, min(k, h * w), dim=1)
    return top.values, top.indices


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
    (C', h', w') and the frame's colour histogram (B,) (None: the descriptor decides cuts alone),
    decided on the device with no read back (the host state goes up as one small tensor). Updates
    the previous-frame descriptor and colours; the rest of the state changes when the decisions are
    read back (:func:`settle`).

    Per object, from its previous status: a written one (tracked or uncertain) is lost on a scene
    cut unless its region matches its templates (``found_similarity``, eased right after a cut back
    to its scene), lost after ``absent_after`` low frames (weak peak or similarity), uncertain on a
    low frame, a weak match or an area jump, else tracked. A gone one whose own response matches
    again is re-found; otherwise the local maxima of its raw scores are searched (a box of its last
    size around each) and the best match re-finds it, or leaves it lost (some resemblance) or absent.
    """
    n, _, h, w = scores.shape
    dev, f64 = scores.device, torch.float64
    desc = frame_descriptor(s32)
    host = torch.tensor([[st, lr, pr, bk, ar, *bx, *v] for st, lr, pr, bk, ar, bx, v in zip(
        state.status, state.low_run, state.peak_ref, state.back, state.area, state.boxes, state.velocity)],
        dtype=f64).reshape(n, 11).to(dev, non_blocking=True)
    previous, low_run, peak_ref, back, prev_area = host[:, 0].long(), host[:, 1], host[:, 2], host[:, 3], host[:, 4]
    boxes, velocity = host[:, 5:9], host[:, 9:11]
    was_written = previous <= Status.UNCERTAIN
    if cfg.spatial_prior:
        window = spatial_windows(boxes.float(), velocity.float(), was_written, (h, w), cfg.prior_margin, cfg.prior_sigma)
    else:
        window = torch.ones_like(scores)
    used = scores * window
    weights = region_weights(used[:, 0], sharpness)
    region = mask_boxes(weights)
    emb = region_embeddings(s16, s32, region, weights)
    has_region = (weights >= 0.5).flatten(1).any(dim=1)
    sims = state.bank.similarity(list(range(n)), emb).to(f64)
    peaks = used.flatten(1).amax(dim=1).to(f64)
    areas = (weights.flatten(1).sum(dim=1) * 256.0).to(f64)  # frame pixels (stride-16 cells)

    # the frame: a scene cut when the global descriptor changes (and the colours, unless it changes a lot)
    if state.descriptor is not None:
        frame_sim = (desc @ state.descriptor).to(f64)
        change = (colour_distance(colour, state.colour).to(f64) if colour is not None and state.colour is not None
                  else torch.ones((), dtype=f64, device=dev))
        cut = (frame_sim < cfg.cut_sure) | ((frame_sim < cfg.cut_similarity) & (change >= cfg.cut_colour))
    else:
        frame_sim = torch.full((), math.nan, dtype=f64, device=dev)
        cut = torch.zeros((), dtype=torch.bool, device=dev)
    returned = (state.scene @ desc >= cfg.cut_similarity if state.scene is not None
                else torch.zeros(n, dtype=torch.bool, device=dev))
    state.descriptor, state.colour = desc, colour
    # objects whose scene this is again get a few frames of easier re-finding
    back = torch.where(cut, returned.to(f64) * cfg.scene_return_frames, (back - 1).clamp_min(0))
    found_at = torch.where(back > 0, cfg.absent_similarity, cfg.found_similarity)

    weak_peak = peaks < cfg.peak_fraction * peak_ref
    low = weak_peak | (sims < cfg.absent_similarity)
    low_run = torch.where(low, low_run + 1, 0)
    matches = (sims >= found_at) & ~weak_peak
    steady = (((prev_area < 256.0) & (areas < 256.0))
              | ((prev_area / cfg.area_jump <= areas) & (areas <= prev_area * cfg.area_jump)))
    tracked, uncertain, lost, absent = (int(v) for v in (Status.TRACKED, Status.UNCERTAIN, Status.LOST, Status.ABSENT))
    status_written = torch.where(
        cut, torch.where(matches, uncertain, lost),
        torch.where(low_run >= cfg.absent_after, lost,
                    torch.where(low | (sims < cfg.track_similarity) | ~steady, uncertain, tracked)))
    judged = was_written | (not cfg.enabled)
    # a gone object whose target model's own response (no window while it is gone) matches again
    refound = ~judged & matches
    status = torch.where(judged, status_written, torch.where(refound, uncertain, previous))
    low_run = torch.where(refound, 0, low_run)
    out_boxes, has_box = region.to(f64), has_region
    box_set = refound & has_region
    new_boxes = out_boxes
    moved = refound.clone()
    if cfg.enabled:  # (report only: a gone object keeps being written, and nothing is searched)
        gone = status >= Status.LOST
        cand = _search(cfg, scores[:, 0], peak_ref, boxes, state.bank, s16, s32, sharpness)
        c_ok, c_box, c_sim, c_peak, c_emb = cand
        searched = gone & c_ok
        hit = searched & (c_sim >= found_at)
        miss = searched & ~hit
        status = torch.where(hit, uncertain, status)
        refound = refound | (hit & (previous >= Status.LOST))
        peaks = torch.where(hit, c_peak, peaks)
        sims = torch.where(hit, c_sim, torch.where(miss, torch.maximum(sims, c_sim), sims))
        status = torch.where(miss, torch.where(c_sim >= cfg.absent_similarity, lost, absent),
                             status)
        emb = torch.where(hit[:, None], c_emb, emb)
        out_boxes = torch.where(hit[:, None], c_box, out_boxes)
        has_box = has_box | hit
        new_boxes = torch.where(hit[:, None], c_box, new_boxes)
        box_set = box_set | hit
        moved = moved | hit
        low_run = torch.where(hit, 0, low_run)
        if cfg.spatial_prior:
            found_window = spatial_windows(c_box.float(), torch.zeros_like(c_box[:, :2]).float(), torch.ones_like(hit),
                                           (h, w), cfg.prior_margin, cfg.prior_sigma)
            window = torch.where(hit[:, None, None, None], found_window, window)
        status = torch.where(gone & (status == Status.LOST) & (sims < cfg.absent_similarity),
                             absent, status)
    return Assessment(status=status, refound=refound, peak=peaks, similarity=sims, boxes=out_boxes, has_box=has_box,
                      areas=areas, window=window if cfg.spatial_prior else None, embeddings=emb,
                      frame=torch.stack([cut.to(f64), frame_sim]), low_run=low_run, back=back, moved=moved,
                      box_set=box_set, new_boxes=new_boxes)


def _search(cfg: PresenceConfig, scores: Tensor, peak_ref: Tensor, boxes: Tensor, bank: TemplateBank, s16: Tensor,
            s32: Tensor, sharpness: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Every object's best re-identification candidate among the local maxima of its raw scores
    (N, h, w) (a box of its last size ``boxes`` (N, 4) around each, float64 cells): whether it has
    any (N,) bool, and the best one's box (N, 4) float64, similarity (N,) float64, peak (N,)
    float64 and embedding (N, D). Computed for all objects (no read decides who is gone)."""
    n, h, w = scores.shape
    k = min(cfg.max_candidates, h * w)
    floor = torch.clamp_min(cfg.peak_fraction * peak_ref, cfg.candidate_score)
    values, index = local_maxima(scores, floor, k)  # (N, k)
    valid = values > -math.inf
    cx = (index % w).to(torch.float64) + 0.5
    cy = torch.div(index, w, rounding_mode="floor").to(torch.float64) + 0.5
    bw = (boxes[:, 2] - boxes[:, 0]).clamp_min(1.0)[:, None]
    bh = (boxes[:, 3] - boxes[:, 1]).clamp_min(1.0)[:, None]
    cand = torch.stack([(cx - bw / 2).clamp_min(0.0), (cy - bh / 2).clamp_min(0.0),
                        (cx + bw / 2).clamp_max(float(w)), (cy + bh / 2).clamp_max(float(h))], dim=2)  # (N, k, 4)
    weights = region_weights(scores, sharpness)[:, None].expand(n, k, h, w).reshape(n * k, h, w)
    emb = region_embeddings(s16, s32, cand.reshape(n * k, 4).float(), weights)
    slots = torch.arange(n, device=scores.device).repeat_interleave(k)
    sims = bank.similarity(slots, emb).reshape(n, k).masked_fill(~valid, -math.inf)
    best = sims.argmax(dim=1)
    pick = torch.arange(n, device=scores.device)
    return (valid.any(dim=1), cand[pick, best], sims[pick, best].to(torch.float64),
            values[pick, best].to(torch.float64), emb.reshape(n, k, -1)[pick, best])


def after_frame(state: PresenceState, cfg: PresenceConfig, assessment: Decisions, frame: int,
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
