"""Merging per-object probabilities into one label map: soft aggregation.

Each object's model gives an independent foreground probability p_i per pixel; they can overlap
and do not sum to one. We use the soft aggregation of RGMP (Oh et al., CVPR 2018), which the
FRTM-VOS paper cites for its multi-object merge:

    p_0 = Π_i (1 − p_i)                      (background: no object is there)
    l_i = log(p_i / (1 − p_i)),  i = 0..N    (log-odds, p clamped to [1e-7, 1 − 1e-7])
    q   = softmax(l_0, …, l_N)               (a proper distribution over background + objects)

Why this formula: with one object it reduces exactly to thresholding p at 0.5, so single-object
results do not depend on it; with several, an object wins a pixel only when it is both likely
and more likely than its rivals, and q stays a calibrated soft value that can be fed back as a
soft training label. The reference code's variant (background = min_i(1 − p_i) and a softmax over
odds rather than log-odds) is nearly winner-takes-all and throws that calibration away.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-7


def soft_aggregate(probs: Tensor) -> Tensor:
    """(N, H, W) per-object probabilities → (N + 1, H, W) merged distribution; index 0 = background."""
    if probs.dim() != 3:
        raise ValueError(f"expected (N, H, W) probabilities, got shape {tuple(probs.shape)}")
    p = probs.clamp(EPS, 1 - EPS)
    background = torch.prod(1 - p, dim=0, keepdim=True).clamp(EPS, 1 - EPS)
    p = torch.cat([background, p], dim=0)
    return torch.softmax(torch.log(p) - torch.log1p(-p), dim=0)


def label_map(merged: Tensor, object_ids: Tensor) -> Tensor:
    """(N + 1, H, W) merged distribution → (H, W) int64 map of object ids (0 = background).

    ``object_ids``: (N,) the id of each object channel, in channel order.
    """
    lookup = torch.cat([torch.zeros(1, dtype=torch.long, device=object_ids.device), object_ids.long()])
    return lookup[merged.argmax(dim=0)]


def winner_labels(merged: Tensor) -> Tensor:
    """(N + 1, H, W) merged distribution → (N, H, W) per-object soft labels for the target models.

    Object i's label is its merged probability where it wins the argmax and 0 elsewhere, so
    pixels won by the background or by another object are negatives for object i.
    """
    # A running maximum (argmax over a short leading dimension is slow on CPU); ">" keeps the first.
    best, winner = merged[0], torch.zeros(merged.shape[1:], dtype=torch.long, device=merged.device)
    for i in range(1, merged.shape[0]):
        winner = torch.where(merged[i] > best, i, winner)
        best = torch.maximum(best, merged[i])
    index = torch.arange(merged.shape[0], device=merged.device).view(-1, 1, 1)
    return (merged * (winner[None] == index))[1:]


#: Log-odds of the clamped probabilities: log((1 − EPS) / EPS).
LOGIT_LIMIT = math.log((1 - EPS) / EPS)


def label_map_from_logits(logits: Tensor, object_ids: Tensor) -> Tensor:
    """(N, H, W) per-object logits → (H, W) int64 id map; the same decision as
    ``label_map(soft_aggregate(sigmoid(logits)), ids)`` without forming the distribution.

    The softmax of log-odds is monotone in them, so the winner is the argmax over the objects'
    logits and the background's log-odds ``a − log(1 − eᵃ)``, with ``a = log Π(1 − p_i)
    = −Σ softplus(l_i)``; everything stays in log space (cheap, and exact for tiny p).
    """
    lim = LOGIT_LIMIT
    l = logits.clamp(-lim, lim)
    a = -F.softplus(l).sum(dim=0)
    best = (a - torch.log(-torch.expm1(a).clamp(max=-EPS))).clamp(-lim, lim)  # the background's log-odds
    # A running maximum over the few objects (argmax over a short leading dimension is slow on CPU);
    # strict ">" keeps the first of equal values, as argmax does.
    ids = torch.zeros(best.shape, dtype=torch.long, device=logits.device)
    for i in range(l.shape[0]):
        better = l[i] > best
        ids = torch.where(better, object_ids[i].to(ids), ids)
        best = torch.maximum(best, l[i])
    return ids
