"""Helpers the test modules share: one CLI runner, and the IoU of two masks."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from vossegcli.cli import app

runner = CliRunner()


def run_cli(*args, env: dict | None = None):
    """``vosseg ARGS`` in-process; every argument is passed as ``str``. Returns click's Result."""
    return runner.invoke(app, [str(a) for a in args], env=env)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def look_change_clip(frames: int = 30, change: int = 12, size: tuple[int, int] = (192, 320)):
    """A generated clip where the object changes its look: a textured ellipse moving right turns from
    red to green-blue at frame ``change``, and from then on a red copy of its old look moves on the
    other side of the frame. Returns (RGB frames (H, W, 3) uint8, label maps (H, W) uint8, id 1)."""
    h, w = size
    rng = np.random.default_rng(0)
    background = np.clip(rng.normal(110, 25, (h, w + frames * 2, 3)), 0, 255)
    oh, ow = 56, 72
    yy, xx = np.mgrid[:oh, :ow]
    shape = ((yy - oh / 2 + 0.5) / (oh / 2)) ** 2 + ((xx - ow / 2 + 0.5) / (ow / 2)) ** 2 <= 1

    def texture(base):
        noise = rng.normal(0, 18, (oh, ow, 3))
        stripes = np.sin(np.arange(ow)[None, :, None] / 3.0) * 25
        return np.clip(np.array(base)[None, None] + noise + stripes, 0, 255)

    red, green = texture((200, 50, 40)), texture((40, 170, 160))
    images, labels = [], []
    for t in range(frames):
        image = background[:, t * 2: t * 2 + w].copy()
        label = np.zeros((h, w), np.uint8)
        x, y = 30 + 6 * t, 40
        image[y:y + oh, x:x + ow][shape] = (red if t < change else green)[shape]
        label[y:y + oh, x:x + ow][shape] = 1
        if t >= change:
            dx, dy = 200 - 3 * (t - change), 110
            image[dy:dy + oh, dx:dx + ow][shape] = red[shape]
        images.append(image.astype(np.uint8))
        labels.append(label)
    return images, labels
