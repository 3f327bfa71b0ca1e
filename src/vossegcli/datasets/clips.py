"""A clip in memory: frames and their id maps (0 = background), as the trainers and the yardsticks
build them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vossegcli.io.palette import VOID_ID


@dataclass
class Clip:
    """frames: list of (H, W, 3) uint8; labels: list of (H, W) uint8 id maps; 0 = background."""

    name: str
    frames: list[np.ndarray]
    labels: list[np.ndarray]

    def object_ids(self) -> list[int]:
        ids: set[int] = set()
        for lab in self.labels:
            ids.update(int(v) for v in np.unique(lab) if 0 < v < VOID_ID)
        return sorted(ids)
