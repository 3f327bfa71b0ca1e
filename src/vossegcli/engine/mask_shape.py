"""How a written mask is laid out: its parts (connected pieces) and how much of it the largest
holds. A mask scattered over many separate pieces — a look-alike crowd's faces and shoes instead
of one person — is what the diagnostics call ``scattered`` (see :func:`scattered`)."""

from __future__ import annotations

import numpy as np
from torch import Tensor

#: A part counts from this fraction of the mask's area (smaller specks are ignored) ...
PART_FRACTION = 0.03
#: ... and from this many cells of the grid it is measured on.
PART_MIN_CELLS = 2


def label_parts(on: np.ndarray) -> np.ndarray:
    """(h, w) bool → (h, w) int64 labels of its 8-connected parts (0 off; a part's label is its
    largest cell index + 1). Each cell takes the largest label among its neighbours, then jumps to
    the label of the cell its label names (pointer jumping), until stable: a few numpy passes."""
    h, w = on.shape
    labels = np.where(on, np.arange(1, h * w + 1, dtype=np.int64).reshape(h, w), 0)
    if not on.any():
        return labels
    while True:
        grown = labels.copy()  # 3×3 maximum, separable: rows, then columns
        np.maximum(grown[:, 1:], labels[:, :-1], out=grown[:, 1:])
        np.maximum(grown[:, :-1], labels[:, 1:], out=grown[:, :-1])
        rows = grown.copy()
        np.maximum(grown[1:], rows[:-1], out=grown[1:])
        np.maximum(grown[:-1], rows[1:], out=grown[:-1])
        grown = np.where(on, grown, 0)
        grown = np.concatenate([[0], grown.ravel()])[grown]  # jump: the label of the cell my label names
        if np.array_equal(grown, labels):
            return labels
        labels = grown


def part_areas(masks: Tensor | np.ndarray, threshold: float = 0.5, max_parts: int = 64) -> list[list[int]]:
    """(N, h, w) coverage maps in [0, 1] (a written mask area-averaged to a coarse grid; a tensor, or
    a host array) → per mask, the cell counts of its 8-connected parts (cells ≥ ``threshold``),
    largest first (at most ``max_parts``), by :func:`label_parts` on the host (a 480p frame's
    stride-8 grid: ~1 ms)."""
    on_cells = masks >= threshold
    out = []
    for on in (on_cells.cpu().numpy() if isinstance(on_cells, Tensor) else np.asarray(on_cells)):
        labels = label_parts(on)
        counts = np.unique(labels[on], return_counts=True)[1] if on.any() else np.zeros(0, np.int64)
        out.append(sorted(counts.tolist(), reverse=True)[:max_parts])
    return out


def split_objects(mask: np.ndarray, max_objects: int, min_area: int) -> np.ndarray:
    """(h, w) bool foreground → (h, w) uint8 ids 1..k of its separate parts of at least ``min_area``
    pixels, largest first, at most ``max_objects`` (0: no limit, up to 254); the rest is background."""
    labels = label_parts(mask)
    values, counts = np.unique(labels[mask], return_counts=True) if mask.any() else (np.zeros(0), np.zeros(0))
    order = [int(v) for c, v in sorted(zip(counts.tolist(), values.tolist()), reverse=True) if c >= min_area]
    order = order[: max_objects or 254]
    out = np.zeros(mask.shape, np.uint8)
    for k, v in enumerate(order, 1):
        out[labels == v] = k
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
