"""Re-identification: appearance embeddings of regions and each object's template set (DyeNet's
Re-ID with template expansion, on the frozen backbone's features instead of a learned projection).

A *region* is a box on the stride-16 grid plus a soft weight map (the target model's scores, or a
given mask pooled to the grid). Its embedding is the weighted mean of the unit-normalized backbone
features inside the box, at stride 16 (120 channels, texture and colour) and stride 32 (352
channels, more semantic), each mean unit-normalized, concatenated and scaled by 1/√2 so the
embedding is a unit vector and the cosine of two embeddings is the mean of the two levels'
cosines. The pooling is RoIAlign's (``torchvision.ops.roi_align`` with ``aligned=True``, 4×4 bins,
2×2 samples per bin, bins summed) written as what it is for summed bins: a separable weight map per
box — the bilinear weights of an 8×8 grid of sample points — applied to the weighted features and
to the weights; their ratio is the weighted mean inside the box, with sub-cell box edges. Computing
the map directly needs no torchvision (whose CPU and CUDA builds must match torch's) and no
(K, C, h, w) stack of per-box features; it equals torchvision's result (tested).

Templates (:class:`TemplateBank`): per object, the start frame's embedding (never replaced) and up
to ``capacity − 1`` expansion templates from confidently tracked frames, added when they differ
enough from the ones held (the oldest expansion is replaced when full). The similarity of a region
to an object is the maximum cosine over its templates.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
#: RoIAlign bins per side and samples per bin side (the bins are summed: only the sample grid matters).
BINS = 4
SAMPLES_PER_BIN = 2


def _axis_weights(start: Tensor, end: Tensor, size: int, samples: int) -> Tensor:
    """(K,) box starts/ends in cell units (already scaled and shifted by −0.5) → (K, size) summed
    bilinear weights of ``samples`` evenly spaced points per box along one axis, with RoIAlign's
    edge rules: a point beyond −1 or ``size`` contributes nothing; one in [−1, 0] reads cell 0; one
    at or past ``size − 1`` reads the last cell."""
    step = (end - start) / samples
    pos = start[:, None] + (torch.arange(samples, device=start.device, dtype=start.dtype)[None] + 0.5) * step[:, None]
    inside = (pos >= -1.0) & (pos <= size)
    pos = pos.clamp_min(0.0)
    low = pos.floor().clamp_max(size - 1)
    last = low >= size - 1
    frac = torch.where(last, torch.zeros_like(pos), pos - low)
    high = torch.where(last, low, low + 1)
    out = start.new_zeros((start.shape[0], size))
    keep = inside.to(pos.dtype)
    out.scatter_add_(1, low.long(), (1.0 - frac) * keep)
    out.scatter_add_(1, high.long(), frac * keep)
    return out


def roi_weight_maps(boxes: Tensor, scale: float, hw: tuple[int, int]) -> Tensor:
    """(K, 4) boxes (x0, y0, x1, y1) in input units → (K, h, w) RoIAlign weights on a grid ``scale``
    times the input's, such that ``einsum("khw,chw->kc", maps, f)`` equals
    ``roi_align(f[None].expand(K, …), rois, (BINS, BINS), scale, SAMPLES_PER_BIN, aligned=True)
    .sum((2, 3))`` (each bin averages its SAMPLES_PER_BIN² points; the bins are summed)."""
    n = BINS * SAMPLES_PER_BIN
    b = boxes.float() * scale - 0.5
    wy = _axis_weights(b[:, 1], b[:, 3], hw[0], n)  # (K, h)
    wx = _axis_weights(b[:, 0], b[:, 2], hw[1], n)  # (K, w)
    return wy[:, :, None] * wx[:, None, :] / SAMPLES_PER_BIN**2


def region_embeddings(s16: Tensor, s32: Tensor, boxes: Tensor, weights: Tensor) -> Tensor:
    """Unit embeddings of K regions of one frame.

    Args:
        s16: (C16, h, w) stride-16 features; s32: (C32, h2, w2) stride-32 features.
        boxes: (K, 4) float (x0, y0, x1, y1) on the stride-16 grid, in cells (x1, y1 exclusive).
        weights: (K, h, w) non-negative weights on the stride-16 grid.
    Returns:
        (K, C16 + C32) float32 unit vectors (zero weight everywhere in a box gives a zero vector).
    """
    k = boxes.shape[0]
    if k == 0:
        return s16.new_zeros((0, s16.shape[0] + s32.shape[0]), dtype=torch.float32)
    parts = []
    w16 = weights.float()
    for feats, scale in ((s16, 1.0), (s32, 0.5)):
        f = F.normalize(feats.float(), dim=0)
        hw = tuple(f.shape[-2:])
        w = w16 if scale == 1.0 else _pool_to(w16, hw)
        m = roi_weight_maps(boxes, scale, hw) * w  # (K, h, w): sample weights × region weights
        mean = torch.einsum("khw,chw->kc", m, f) / m.sum(dim=(1, 2))[:, None].clamp_min(1e-6)
        parts.append(F.normalize(mean, dim=1))
    return torch.cat(parts, dim=1) / math.sqrt(2.0)


def _pool_to(weights: Tensor, hw: tuple[int, int]) -> Tensor:
    """(K, h, w) → (K, h2, w2) area averages (stride 16 → stride 32; an odd edge is padded)."""
    h, w = weights.shape[-2:]
    padded = F.pad(weights, (0, 2 * hw[1] - w, 0, 2 * hw[0] - h))
    return F.avg_pool2d(padded[:, None], 2)[:, 0]


def mask_boxes(weights: Tensor, threshold: float = 0.5) -> Tensor:
    """(K, h, w) weights → (K, 4) float boxes (x0, y0, x1, y1) of the cells ≥ ``threshold``
    (the whole grid where none is)."""
    k, h, w = weights.shape
    on = weights >= threshold
    rows, cols = on.any(dim=2), on.any(dim=1)  # (K, h), (K, w)
    ar_h = torch.arange(h, device=weights.device)
    ar_w = torch.arange(w, device=weights.device)
    big = 10**6
    y0 = torch.where(rows, ar_h, big).amin(dim=1)
    y1 = torch.where(rows, ar_h, -1).amax(dim=1) + 1
    x0 = torch.where(cols, ar_w, big).amin(dim=1)
    x1 = torch.where(cols, ar_w, -1).amax(dim=1) + 1
    empty = y1 <= 0
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    whole = torch.tensor([0.0, 0.0, float(w), float(h)], device=weights.device)
    return torch.where(empty[:, None], whole, boxes)


class TemplateBank:
    """Per object, up to ``capacity`` unit embeddings: slot 0 the start frame, then expansions.

    Tensors: ``templates`` (N, T, D) float32, ``count`` (N,) host ints, ``added`` (N,) the frame of
    each object's latest template (host ints).
    """

    def __init__(self, capacity: int = 8, dim: int = 0, device: torch.device | str = "cpu") -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.templates = torch.zeros((0, capacity, dim), device=device)
        self.count: list[int] = []
        self.added: list[int] = []

    def __len__(self) -> int:
        return len(self.count)

    def add_objects(self, embeddings: Tensor, frame: int) -> None:
        """(n, D) start-frame embeddings of n new objects."""
        if self.templates.shape[-1] != embeddings.shape[1]:
            if len(self):
                raise ValueError("embedding size differs from the bank's")
            self.templates = embeddings.new_zeros((0, self.capacity, embeddings.shape[1]))
        new = embeddings.new_zeros((embeddings.shape[0], self.capacity, embeddings.shape[1]))
        new[:, 0] = embeddings
        self.templates = torch.cat([self.templates, new])
        self.count += [1] * embeddings.shape[0]
        self.added += [frame] * embeddings.shape[0]

    def select(self, slots: list[int]) -> None:
        """Keep only the objects in ``slots``, in that order."""
        self.templates = self.templates[torch.tensor(slots, dtype=torch.long, device=self.templates.device)]
        self.count = [self.count[i] for i in slots]
        self.added = [self.added[i] for i in slots]

    def adopt(self, other: "TemplateBank", slots: list[int]) -> None:
        """Take ``other``'s templates of ``slots`` as this bank's (slot k ← ``slots[k]``), keeping the
        frames this bank last expanded them at (the backward pass judges by the forward templates)."""
        index = torch.tensor(slots, dtype=torch.long, device=other.templates.device)
        self.templates = other.templates[index].clone()
        self.count = [other.count[i] for i in slots]

    def similarity(self, slots: Tensor | list[int], embeddings: Tensor) -> Tensor:
        """(K,) slots and (K, D) embeddings → (K,) max cosine to each slot's templates."""
        slots = torch.as_tensor(slots, device=self.templates.device, dtype=torch.long)
        cos = torch.einsum("ktd,kd->kt", self.templates[slots], embeddings)
        valid = torch.arange(self.capacity, device=cos.device)[None] < torch.tensor(self.count, device=cos.device)[slots][:, None]
        return cos.masked_fill(~valid, -1.0).amax(dim=1)

    def expand(self, slot: int, embedding: Tensor, frame: int, max_similarity: float,
               similarity: float | None = None) -> bool:
        """Add ``embedding`` (D,) to ``slot`` unless a template already has cosine ≥ ``max_similarity``;
        the oldest expansion makes room when full. Returns whether it was added. ``similarity``: that
        best cosine when the caller has it already (:meth:`similarity`, read with the frame's other
        signals), so the decision needs no read from the device."""
        n = self.count[slot]
        if self.capacity == 1:
            return False  # (the start frame's template only)
        if similarity is None:
            similarity = float((self.templates[slot, :n] @ embedding).max())
        if similarity >= max_similarity:
            return False
        if n < self.capacity:
            index = n
            self.count[slot] = n + 1
        else:  # slots 1..T-1 hold expansions oldest first: shift them and append
            self.templates[slot, 1:-1] = self.templates[slot, 2:].clone()
            index = self.capacity - 1
        self.templates[slot, index] = embedding
        self.added[slot] = frame
        return True

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "templates": self.templates.detach().cpu().clone(),
                "count": list(self.count), "added": list(self.added)}

    @classmethod
    def from_state_dict(cls, blob: dict, device: torch.device | str = "cpu") -> "TemplateBank":
        bank = cls(int(blob["capacity"]), 0, device)
        bank.templates = blob["templates"].to(device)
        bank.count = [int(c) for c in blob["count"]]
        bank.added = [int(a) for a in blob["added"]]
        return bank
