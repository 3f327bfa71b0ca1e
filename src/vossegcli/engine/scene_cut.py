"""Scene cuts: has the frame stopped showing the scene of the frame before?

Two signals of consecutive frames, both cheap:

* the cosine of the global descriptors (the mean of the unit-normalized stride-32 backbone
  features, :func:`~vossegcli.engine.presence.frame_descriptor`): what the frame shows;
* the colour distance: half the L1 distance of the two frames' colour histograms (8 levels per
  RGB channel, every 4th pixel), in [0, 1].

A cut needs the descriptor to change (cosine below ``descriptor_cut``) *and* the colours to change
(distance at least ``colour_cut``), unless the descriptor change alone is beyond doubt (cosine
below ``sure_cut``). Fast motion, a camera pan, a bird taking off change what the backbone sees but
hardly the colours of the scene: on the 30 continuous davis16-train sequences consecutive colour
distances stay ≤ 0.18, while 786 joins of two different sequences have cosines below 0.78 in 99 %
(the rest between look-alike scenes: tennis and hockey courts) — ``tools/cut_yardstick.py``,
docs/RESULTS.md. The descriptor alone (the earlier rule) cut a continuous shot where a duck takes off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: Colour histogram: levels per RGB channel, and the pixel step of the subsampling.
LEVELS = 8
STEP = 4


@dataclass(frozen=True)
class CutRule:
    descriptor_cut: float = 0.78  #: descriptor cosine below this: the content changed
    colour_cut: float = 0.2  #: ... and colour distance from this: a cut
    sure_cut: float = 0.5  #: descriptor cosine below this: a cut whatever the colours


def colour_histogram(rgb: Tensor) -> Tensor:
    """(3, H, W) uint8 RGB → (LEVELS³,) float32 normalized colour histogram of every STEP-th pixel."""
    q = (rgb[:, ::STEP, ::STEP].to(torch.int64) * LEVELS) // 256  # (3, h, w) levels
    index = (q[0] * LEVELS + q[1]) * LEVELS + q[2]
    hist = torch.bincount(index.flatten(), minlength=LEVELS**3).to(torch.float32)
    return hist / hist.sum().clamp_min(1.0)


def colour_distance(a: Tensor, b: Tensor) -> Tensor:
    """Half the L1 distance of two normalized histograms: 0 same colours, 1 none in common (a 0-d tensor)."""
    return 0.5 * (a - b).abs().sum()


def is_cut(similarity: float, colour: float, rule: CutRule) -> bool:
    """Whether consecutive frames with this descriptor cosine and colour distance are a scene cut."""
    return similarity < rule.sure_cut or (similarity < rule.descriptor_cut and colour >= rule.colour_cut)
