"""Appearance evidence beside the target model's scores (issue 11, item 4): global directional
matching (GDM) of the DAVIS-2020 guided-feature paper.

For every pixel of the current frame, the highest cosine similarity of its stride-16 feature to
the reference frame's *target* pixels and, separately, to its *background* pixels: two maps in
[-1, 1] that say "looks like some part of the object" and "looks like some part of the
background". Matching against the start frame is robust to drift; against the previous frame's
mask it follows appearance change (matching-based VOS does both). At stride 16 a 480p frame has
~1600 pixels, so one reference costs one (hw × hw') matrix product.

Not yet an input of the shipped refiner: the refiner must be retrained to use these maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: The value of a map whose reference has no pixel of that kind (no target or no background).
NO_MATCH = -1.0


def directional_matching(current: Tensor, reference: Tensor, reference_mask: Tensor) -> Tensor:
    """GDM maps of ``current`` against one reference frame.

    Args:
        current: (C, h, w) features of the current frame.
        reference: (C, h', w') features of the reference frame.
        reference_mask: (h', w') target probability (or 0/1 mask) of the reference frame;
            pixels > 0.5 are target, the others background.
    Returns:
        (2, h, w) float32: [max cosine similarity to target pixels, to background pixels];
        :data:`NO_MATCH` where the reference has no pixel of that kind.
    """
    c, h, w = current.shape
    cur = F.normalize(current.float().reshape(c, h * w), dim=0)
    ref = F.normalize(reference.float().reshape(c, -1), dim=0)
    target = (reference_mask.reshape(-1) > 0.5)
    sims = cur.t() @ ref  # (hw, h'w')
    maps = []
    for chosen in (target, ~target):
        if bool(chosen.any()):
            maps.append(sims[:, chosen].amax(dim=1))
        else:
            maps.append(torch.full((h * w,), NO_MATCH, device=current.device))
    return torch.stack(maps).reshape(2, h, w)
