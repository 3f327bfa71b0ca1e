"""Re-identification: appearance embeddings of regions and each object's template set (DyeNet's
Re-ID with template expansion, on the frozen backbone's features instead of a learned projection).

A *region* is a box on the stride-16 grid plus a soft weight map (the target model's scores, or a
given mask pooled to the grid). Its embedding is the weighted mean of the unit-normalized backbone
features inside the box, at stride 16 (120 channels, texture and colour) and stride 32 (352
channels, more semantic), each mean unit-normalized, concatenated and scaled by 1/√2 so the
embedding is a unit vector and the cosine of two embeddings is the mean of the two levels'
cosines. The pooling is ``torchvision.ops.roi_align`` over the weighted features and the weights
(both linear in the features, so their ratio is the weighted mean inside the box, with
sub-cell box edges).

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
from torchvision.ops import roi_align

#: roi_align output bins per side (the bins are summed: only the box and sub-cell edges matter).
BINS = 4


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
    boxes = boxes.float()
    index = torch.arange(k, device=boxes.device, dtype=torch.float32)[:, None]
    rois = torch.cat([index, boxes], dim=1)
    parts = []
    w16 = weights.float()
    for feats, scale in ((s16, 1.0), (s32, 0.5)):
        f = F.normalize(feats.float(), dim=0)
        w = w16 if scale == 1.0 else _pool_to(w16, tuple(f.shape[-2:]))
        stacked = torch.cat([f[None] * w[:, None], w[:, None]], dim=1)  # (K, C + 1, h, w)
        pooled = roi_align(stacked, rois, (BINS, BINS), spatial_scale=scale, sampling_ratio=2, aligned=True).sum(dim=(2, 3))
        mean = pooled[:, :-1] / pooled[:, -1:].clamp_min(1e-6)
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

    def similarity(self, slots: Tensor | list[int], embeddings: Tensor) -> Tensor:
        """(K,) slots and (K, D) embeddings → (K,) max cosine to each slot's templates."""
        slots = torch.as_tensor(slots, device=self.templates.device, dtype=torch.long)
        cos = torch.einsum("ktd,kd->kt", self.templates[slots], embeddings)
        valid = torch.arange(self.capacity, device=cos.device)[None] < torch.tensor(self.count, device=cos.device)[slots][:, None]
        return cos.masked_fill(~valid, -1.0).amax(dim=1)

    def expand(self, slot: int, embedding: Tensor, frame: int, max_similarity: float) -> bool:
        """Add ``embedding`` (D,) to ``slot`` unless a template already has cosine ≥ ``max_similarity``;
        the oldest expansion makes room when full. Returns whether it was added."""
        n = self.count[slot]
        if self.capacity == 1 or float((self.templates[slot, :n] @ embedding).max()) >= max_similarity:
            return False  # (capacity 1: the start frame's template only)
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
