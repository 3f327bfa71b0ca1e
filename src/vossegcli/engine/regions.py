"""Far-region filter: parts of an object's mask far from its track that its templates do not confirm.

A look-alike crowd makes the mask of one person spill onto the faces, arms and shoes of others far
away. Each written mask is split into connected parts on a coarse grid (:data:`REGION_STRIDE`); a
part that does not reach the object's predicted box (its previous written box moved by its
velocity, grown by ``margin`` of its size on each side) is *far*. A far part stays only if its own
appearance embedding (:func:`~vossegcli.engine.reid.region_embeddings`) matches the object's
templates at ``similarity`` or more — an object that really moved fast, or a part the box missed,
still looks like the object. When no part reaches the predicted box, nothing is removed (the object
moved further than predicted; presence decides about it).

Removed parts become background in the written mask and zero in the label the object's memory
learns from, so the target model is not taught that the crowd is the object.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vossegcli.engine.reid import TemplateBank, mask_boxes, region_embeddings

REGION_STRIDE = 8  #: grid of the connected parts, in frame pixels
MAX_FAR_PARTS = 8  #: far parts checked per object (the largest); smaller far parts are removed


def connected_parts(mask: Tensor) -> Tensor:
    """(N, h, w) bool → (N, h, w) int64 labels of the 8-connected parts of each map (0: off; a part's
    label is the largest 1-based flat index inside it)."""
    n, h, w = mask.shape
    index = torch.arange(1, h * w + 1, device=mask.device, dtype=torch.float32).view(1, h, w)
    labels = torch.where(mask, index, torch.zeros((), device=mask.device))[:, None]
    on = mask[:, None]
    for _ in range(h * w):
        previous = labels
        for _ in range(8):  # check for convergence every 8 propagation steps
            labels = torch.where(on, F.max_pool2d(labels, 3, stride=1, padding=1), labels)
        if torch.equal(labels, previous):
            break
    return labels[:, 0].long()


def predicted_boxes(boxes: list[list[float]], velocity: list[list[float]], margin: float, scale: float) -> list[list[float]]:
    """Previous boxes (x0, y0, x1, y1) and velocities (cells of the stride-16 grid) → boxes moved by
    the velocity, grown by ``margin`` of their size per side, in cells of a grid ``scale`` times finer."""
    out = []
    for (x0, y0, x1, y1), (dx, dy) in zip(boxes, velocity):
        gx, gy = margin * max(x1 - x0, 1.0) + abs(dx), margin * max(y1 - y0, 1.0) + abs(dy)
        out.append([scale * (x0 + dx - gx), scale * (y0 + dy - gy), scale * (x1 + dx + gx), scale * (y1 + dy + gy)])
    return out


def far_parts_to_remove(
    onehot: Tensor,
    slots: list[int],
    boxes: list[list[float]],
    s16: Tensor,
    s32: Tensor,
    bank: TemplateBank,
    similarity: float,
) -> Tensor:
    """Which cells of the written masks to remove.

    Args:
        onehot: (N, H, W) bool written masks of all objects.
        slots: the objects to filter (written ones with a previous box).
        boxes: per slot in ``slots``, the predicted box on the :data:`REGION_STRIDE` grid.
        s16, s32: (C, h, w) backbone features of the frame (for the parts' embeddings).
        bank: the objects' templates; similarity: a far part matching at least this stays.
    Returns:
        (N, h8, w8) bool, True on the cells to remove.
    """
    n, height, width = onehot.shape
    s = REGION_STRIDE
    h8, w8 = -(-height // s), -(-width // s)
    remove = torch.zeros((n, h8, w8), dtype=torch.bool, device=onehot.device)
    if not slots:
        return remove
    coarse = F.max_pool2d(onehot[slots].float()[:, None], s, ceil_mode=True)[:, 0] > 0
    parts = connected_parts(coarse)
    candidates: list[tuple[int, int, Tensor]] = []  # (row in slots, part label, its cells)
    for row, (slot, box) in enumerate(zip(slots, boxes)):
        labels = parts[row]
        ids = torch.unique(labels)
        ids = ids[ids > 0]
        if len(ids) < 2:
            continue
        x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
        x1, y1 = min(int(box[2]) + 1, w8), min(int(box[3]) + 1, h8)
        near = torch.unique(labels[y0:y1, x0:x1]) if x1 > x0 and y1 > y0 else ids[:0]
        near = near[near > 0]
        if len(near) == 0:
            continue
        far = ids[~torch.isin(ids, near)]
        if len(far) == 0:
            continue
        cells = labels[None] == far[:, None, None]  # (k, h8, w8)
        order = torch.argsort(cells.flatten(1).sum(dim=1), descending=True).tolist()
        for rank, k in enumerate(order):
            if rank < MAX_FAR_PARTS:
                candidates.append((row, slot, cells[k]))
            else:
                remove[slot] |= cells[k]
    if not candidates:
        return remove
    h16, w16 = s16.shape[-2:]
    weights = torch.stack([F.max_pool2d(c.float()[None, None], 2, ceil_mode=True)[0, 0, :h16, :w16] for _, _, c in candidates])
    emb = region_embeddings(s16, s32, mask_boxes(weights), weights)
    sims = bank.similarity([slot for _, slot, _ in candidates], emb).tolist()
    for (_, slot, cells), sim in zip(candidates, sims):
        if sim < similarity:
            remove[slot] |= cells
    return remove
