"""Training losses for the refiner: binary cross-entropy, optionally plus a region loss.

* ``"bce"``: per-pixel binary cross-entropy on the logits (what the shipped weights used);
* ``"bce+dice"``: plus the soft Dice loss 1 − (2 Σ p·y + 1) / (Σ p + Σ y + 1) per image;
* ``"bce+lovasz"``: plus the Lovász hinge (Berman et al., CVPR 2018), a convex surrogate of the
  per-image Jaccard loss: the hinge errors 1 − s·(2y − 1) sorted in decreasing order, weighted by
  the increments of the Jaccard loss along that order.

A region loss scores the mask as a whole, so small objects and thin parts count as much as their
share of the object rather than of the crop; the issue asks to measure it against BCE alone.
All take logits (B, 1, H, W) and labels (B, 1, H, W) in {0, 1}, and return a scalar.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES = ("bce", "bce+dice", "bce+lovasz")


def dice_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean over images of 1 − soft Dice between sigmoid(logits) and labels (+1 smoothing)."""
    p = torch.sigmoid(logits).flatten(1)
    y = labels.flatten(1)
    return (1 - (2 * (p * y).sum(1) + 1) / (p.sum(1) + y.sum(1) + 1)).mean()


def _jaccard_increments(sorted_labels: Tensor) -> Tensor:
    """(N,) labels in the order of decreasing error → the Jaccard loss's increment at each position."""
    total = sorted_labels.sum()
    intersection = total - sorted_labels.cumsum(0)
    union = total + (1 - sorted_labels).cumsum(0)
    jaccard = 1 - intersection / union
    if sorted_labels.numel() > 1:
        jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return jaccard


def lovasz_hinge(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean over images of the Lovász hinge of the logits (B, 1, H, W) against labels (B, 1, H, W)."""
    losses = []
    for s, y in zip(logits.flatten(1), labels.flatten(1)):
        signs = 2 * y - 1
        errors = 1 - s * signs
        errors_sorted, order = torch.sort(errors, descending=True)
        weights = _jaccard_increments(y[order])
        losses.append(torch.dot(F.relu(errors_sorted), weights))
    return torch.stack(losses).mean()


def refiner_loss(logits: Tensor, labels: Tensor, kind: str = "bce") -> Tensor:
    """The training loss ``kind`` (one of :data:`LOSSES`)."""
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {kind!r}")
    loss = F.binary_cross_entropy_with_logits(logits, labels)
    if kind == "bce+dice":
        loss = loss + dice_loss(logits, labels)
    elif kind == "bce+lovasz":
        loss = loss + lovasz_hinge(logits, labels)
    return loss
