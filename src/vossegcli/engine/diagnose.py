"""The presence stage's bookkeeping around the frame step: the ownership penalty applied to the
logits, the written masks' diagnostics (area, probability, box, parts, reasons → ``state.diagnostics``)
and the presence state of objects starting on a frame. The decisions themselves are
:func:`vossegcli.engine.presence.assess`; this module feeds them what the frame wrote."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vossegcli.engine.backbone import BackboneFeatures
from vossegcli.engine.config import SegmenterConfig
from vossegcli.engine.device import to_host
from vossegcli.engine.geometry import FEATURE_STRIDE, downsample_mask
from vossegcli.engine.mask_shape import part_areas, real_parts, scattered
from vossegcli.engine.presence import (
    OWNER_STRIDE, STATUS_NAMES, Assessment, Decisions, FrameDiagnostics, PresenceConfig, Status, after_frame,
    frame_descriptor, ownership_penalties, settle,
)
from vossegcli.engine.reid import mask_boxes, region_embeddings
from vossegcli.engine.state import VideoState
from vossegcli.engine.target_model import project_frame, score_projected_batched


def apply_ownership(state: VideoState, cfg: PresenceConfig, assessment: Assessment, logits: Tensor) -> Tensor:
    """Logits (N, H, W) less the ownership penalties (:func:`~vossegcli.engine.presence.ownership_penalties`)
    when two or more objects are tracked and their previous masks are known (an object not written
    on this frame owns nothing; its own logits are dropped by the caller)."""
    p = state.presence
    if cfg.ownership_penalty <= 0 or p.owner is None or p.owner.shape[0] != state.num_objects or state.num_objects < 2:
        return logits
    penalty = ownership_penalties(p.owner, p.velocity, assessment.written, cfg.ownership_reach)
    h, w = logits.shape[-2:]
    up = F.interpolate(penalty[:, None], scale_factor=OWNER_STRIDE, mode="bilinear", align_corners=False)[:, 0, :h, :w]
    return logits - cfg.ownership_penalty * up


def diagnose(state: VideoState, config: SegmenterConfig, assessment: Assessment, labels: Tensor,
             logits: Tensor) -> np.ndarray:
    """Per-object area, mean probability and parts of the written masks → ``state.diagnostics``
    (a written mask scattered over many separate parts is reported ``uncertain``, with the reason);
    then the presence state: the frame's decisions (:func:`~vossegcli.engine.presence.settle`),
    boxes and velocities (from the written masks), references and templates.
    Returns the label map (H, W) uint8 on the host: the frame's one read from the device, with the
    presence decisions and the diagnostics."""
    ids = state.objects.ids_tensor(labels.device)
    onehot = labels[None] == ids[:, None, None]  # (N, H, W)
    area = onehot.flatten(1).sum(dim=1)
    prob = (torch.sigmoid(logits) * onehot).flatten(1).sum(dim=1) / area.clamp_min(1)
    y0, y1 = _quantile_span(onehot.sum(dim=2))  # robust to a few stray pixels far away
    x0, x1 = _quantile_span(onehot.sum(dim=1))
    coverage = downsample_mask(onehot.float()[:, None], OWNER_STRIDE)[:, 0]  # (N, h8, w8)
    host, values, covered, rows, frame = to_host(
        labels.to(torch.uint8), torch.stack([area.float(), prob.float(), x0, y0, x1, y1], dim=1), coverage >= 0.5,
        *assessment.packed())
    p = state.presence
    decisions = settle(p, assessment, rows, frame)
    values = values.tolist()
    parts = part_areas(covered)  # (the parts are counted on the host's grid)
    if state.num_objects > 1 and config.presence.ownership_penalty > 0:
        p.owner = coverage
    previous = p.written_area
    areas, ratios, probs, boxes, counts = [], [], [], [], []
    status = [STATUS_NAMES[s] for s in decisions.status]
    reasons = [_reason(config.presence, decisions, i) for i in range(state.num_objects)]
    for i, (a, pr, bx0, by0, bx1, by1) in enumerate(values):
        boxes.append([v / FEATURE_STRIDE for v in (bx0, by0, bx1, by1)] if a > 0 else [])
        areas.append(int(a))
        prev = previous[i] if i < len(previous) else 0
        ratios.append(round(a / prev, 3) if prev > 0 and a > 0 else None)
        probs.append(round(pr, 4) if a > 0 else None)
        counts.append(real_parts(parts[i]) if a > 0 else None)
        if a > 0 and status[i] == "tracked" and scattered(parts[i]):  # reported; decisions unchanged
            status[i] = "uncertain"
            reasons[i] = (f"scattered: {counts[i]} separate parts, the largest {parts[i][0] / sum(parts[i]):.0%} "
                          "of the mask (look-alikes may be segmented with it)")
    p.written_area = areas
    state.diagnostics = (FrameDiagnostics(
        frame=state.frame_index, ids=list(state.objects.ids),
        status=status, area=areas, area_ratio=ratios,
        peak=[round(v, 4) for v in decisions.peak], mean_probability=probs,
        similarity=[round(v, 4) for v in decisions.similarity], refound=list(decisions.refound),
        scene_cut=decisions.scene_cut,
        frame_similarity=None if decisions.frame_similarity is None else round(decisions.frame_similarity, 4),
        parts=counts, reason=reasons,
    ))
    after_frame(p, config.presence, decisions, state.frame_index, boxes)
    return host


def start_presence(state: VideoState, config: PresenceConfig, x: Tensor, feats: BackboneFeatures, masks: Tensor,
                   w1: Tensor, w2: Tensor, new_ids: list[int], colour: Tensor | None) -> None:
    """Templates, boxes and peak references of objects starting on this frame, and their first
    diagnostics (the given mask)."""
    embeddings, boxes, peaks = _start_frame_signals(x, feats, masks, w1, w2)
    areas = masks.flatten(1).sum(dim=1).tolist()
    state.presence.add_objects(embeddings, boxes, peaks, areas, state.frame_index, config.template_capacity,
                               frame_descriptor(feats.s32[0]), colour)
    d = state.diagnostics
    if d is None or d.frame != state.frame_index:
        d = state.diagnostics = FrameDiagnostics(state.frame_index, [], [], [], [], [], [], [], [])
    n = len(new_ids)
    d.ids += new_ids
    d.status += ["tracked"] * n
    d.area += [int(a) for a in areas]
    state.presence.written_area += [int(a) for a in areas]
    d.area_ratio += [None] * n
    d.peak += [round(p, 4) for p in peaks]
    d.mean_probability += [1.0] * n
    d.similarity += [1.0] * n
    d.refound += [False] * n
    d.parts += [None] * n
    d.reason += [None] * n


def anchor_presence(state: VideoState, config: PresenceConfig, x: Tensor, feats: BackboneFeatures, given: Tensor,
                    colour: Tensor | None) -> None:
    """Presence and diagnostics of the objects already tracked on a frame whose mask is given again
    (an anchor, ``given`` (H, W) ids): an object in the mask is tracked there (box, area and peak
    reference from the mask and the re-fitted model, the mask's region a template); one not in
    it is absent there and searched for from the next frame on."""
    p = state.presence
    ids = state.objects.ids
    n = len(ids)
    onehot = given[None] == state.objects.ids_tensor(given.device)[:, None, None]  # (N, H, W)
    inside = [i for i in range(n) if ids[i] in set(torch.unique(given).tolist())]
    desc = frame_descriptor(feats.s32[0])
    areas = onehot.flatten(1).sum(dim=1).tolist()
    if inside:
        masks = onehot[inside].float()
        embeddings, boxes, peaks = _start_frame_signals(x, feats, masks, state.w1[inside], state.w2[inside])
        for j, i in enumerate(inside):
            p.boxes[i] = [float(v) for v in boxes[j].tolist()]
            p.peak_ref[i] = float(peaks[j])
            p.scene[i] = desc
            p.bank.expand(i, embeddings[j], state.frame_index, ANCHOR_TEMPLATE_NOVELTY)
    for i in range(n):
        p.status[i] = int(Status.TRACKED if i in inside else Status.ABSENT)
        p.velocity[i] = [0.0, 0.0]
        p.area[i] = float(areas[i])
        p.low_run[i] = 0 if i in inside else config.absent_after
        p.back[i] = 0
    p.written_area = [int(a) for a in areas]
    p.descriptor, p.colour = desc, colour
    if n > 1 and config.ownership_penalty > 0:
        p.owner = downsample_mask(onehot.float()[:, None], OWNER_STRIDE)[:, 0]
    state.diagnostics = FrameDiagnostics(
        frame=state.frame_index, ids=list(ids), status=["tracked" if i in inside else "absent" for i in range(n)],
        area=[int(a) for a in areas], area_ratio=[None] * n,
        peak=[round(p.peak_ref[i], 4) if i in inside else 0.0 for i in range(n)],
        mean_probability=[1.0 if i in inside else None for i in range(n)],
        similarity=[1.0 if i in inside else 0.0 for i in range(n)], refound=[False] * n,
        parts=[None] * n, reason=[None if i in inside else "not in the mask given for this frame" for i in range(n)],
    )


#: A given mask's region joins the object's templates unless one is this close to it already.
ANCHOR_TEMPLATE_NOVELTY = 0.99


#: Fraction of a mask's pixels left out on each side of its box (stray fragments do not widen it).
BOX_QUANTILE = 0.02


def _reason(cfg: PresenceConfig, assessment: Decisions, slot: int) -> str | None:
    """Why the presence decisions did not call ``slot`` tracked on this frame (None when they did)."""
    status, sim = assessment.status[slot], assessment.similarity[slot]
    if status == Status.TRACKED:
        return None
    if status == Status.ABSENT:
        return f"nothing in the frame resembles it (best similarity {sim:.2f})"
    if status == Status.LOST:
        return f"only weak resemblances in the frame (best similarity {sim:.2f} < {cfg.found_similarity:g})"
    if assessment.refound[slot]:
        return f"re-found on this frame (similarity {sim:.2f})"
    if assessment.scene_cut:
        return "kept through a scene cut"
    if sim < cfg.track_similarity:
        return f"weak match to its look (similarity {sim:.2f} < {cfg.track_similarity:g})"
    return "its area jumped or its score weakened against the previous frames"


def _quantile_span(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, L) pixel counts per row (or column) → (N,) float start and end (exclusive) of the span
    holding all but :data:`BOX_QUANTILE` of the pixels at each end."""
    cum = counts.float().cumsum(dim=1)
    total = cum[:, -1:]
    start = (cum <= BOX_QUANTILE * total).sum(dim=1).float()
    end = (cum < (1 - BOX_QUANTILE) * total).sum(dim=1).float() + 1
    return start, torch.maximum(end, start + 1)


def _start_frame_signals(x: torch.Tensor, feats: BackboneFeatures, masks: torch.Tensor, w1: torch.Tensor,
                         w2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Embeddings (n, D), boxes (n, 4) in cells and the target models' peak scores of n objects
    starting on a frame with masks (n, H, W)."""
    h, w = feats.s16.shape[-2:]
    pooled = downsample_mask(masks.float()[:, None], FEATURE_STRIDE)[:, 0, :h, :w]
    boxes = mask_boxes(pooled, 1e-3)
    embeddings = region_embeddings(feats.s16[0], feats.s32[0], boxes, pooled)
    scores = score_projected_batched(project_frame(x, w1), w2)  # (n, h, w)
    return embeddings, boxes, scores.flatten(1).amax(dim=1).tolist()
