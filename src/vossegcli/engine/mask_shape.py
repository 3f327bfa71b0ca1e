"""How a written mask is laid out: its parts (connected pieces) and how much of it the largest
holds. A mask scattered over many separate pieces — a look-alike crowd's faces and shoes instead
of one person — is what the diagnostics call ``scattered`` (see :func:`scattered`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: A part counts from this fraction of the mask's area (smaller specks are ignored) ...
PART_FRACTION = 0.03
#: ... and from this many cells of the grid it is measured on.
PART_MIN_CELLS = 2


def part_areas(masks: Tensor, threshold: float = 0.5, max_parts: int = 64) -> list[list[int]]:
    """(N, h, w) coverage maps in [0, 1] (a written mask area-averaged to a coarse grid) → per mask,
    the cell counts of its 8-connected parts (cells ≥ ``threshold``), largest first (at most
    ``max_parts``). Labels spread by 3×3 max-pooling until stable: no host loop over cells."""
    on = masks >= threshold
    n, h, w = on.shape
    index = torch.arange(1, h * w + 1, device=masks.device, dtype=torch.float32).reshape(1, h, w)
    labels = torch.where(on, index.expand(n, h, w), torch.zeros((), device=masks.device))
    for _ in range(h * w):
        grown = F.max_pool2d(labels[:, None], 3, stride=1, padding=1)[:, 0] * on
        if torch.equal(grown, labels):
            break
        labels = grown
    out = []
    for i in range(n):
        values = labels[i][on[i]]
        if values.numel() == 0:
            out.append([])
            continue
        counts = torch.unique(values, return_counts=True)[1]
        out.append(sorted(counts.tolist(), reverse=True)[:max_parts])
    return out


def real_parts(parts: list[int]) -> int:
    """How many of these parts (cells) have a real size: ≥ PART_FRACTION of the area and ≥ PART_MIN_CELLS."""
    total = sum(parts)
    return sum(1 for p in parts if p >= max(PART_MIN_CELLS, PART_FRACTION * total))


def scattered(parts: list[int], min_parts: int = 4, max_largest: float = 0.6) -> bool:
    """Whether a mask with these part sizes (cells, largest first) is scattered: at least
    ``min_parts`` parts of a real size and the largest holding less than ``max_largest`` of the area.
    On the davis16-train ground truth (2079 frames, at stride 8) 2 frames qualify (docs/RESULTS.md)."""
    total = sum(parts)
    return total > 0 and real_parts(parts) >= min_parts and parts[0] < max_largest * total
