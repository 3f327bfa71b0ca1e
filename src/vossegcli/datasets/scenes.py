"""Rendered scenes: cut-outs (:mod:`vossegcli.datasets.cutouts`) moving over a panned background,
composited softly frame by frame — each object's coverage blended over what lies behind it, with
motion blur as the average of sub-frame positions — and labelled where an object covers half a
pixel. The synthetic clips of the rendered yardsticks (`val-synth`, `val-lost`, `auto-multi`) and
of the instance decoder's training are drawn on this canvas."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vossegcli.datasets.cutouts import Cutout, DutsPool

WIDTH, HEIGHT = 480, 272  #: the canvas


@dataclass
class Track:
    """One pasted object over the clip: its cut-out, id (0 = unlabelled distractor) and, per
    frame, centre (x, y), height in pixels and rotation in degrees."""

    cut: Cutout
    label: int
    centres: list[tuple[float, float]]
    heights: list[float]
    angles: list[float]
    blur_steps: int = 1


def render_object(cut: Cutout, height: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The cut-out scaled to ``height`` px and rotated: (h, w, 3) float32 RGB, (h, w) float32 alpha."""
    scale = max(height, 4.0) / cut.rgb.shape[0]
    size = (max(2, round(cut.rgb.shape[1] * scale)), max(2, round(cut.rgb.shape[0] * scale)))
    rgb = Image.fromarray(cut.rgb).resize(size, Image.Resampling.BILINEAR)
    alpha = Image.fromarray((cut.alpha * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    if angle:
        rgb = rgb.rotate(angle, Image.Resampling.BILINEAR, expand=True)
        alpha = alpha.rotate(angle, Image.Resampling.BILINEAR, expand=True)
    return np.asarray(rgb, np.float32), np.asarray(alpha, np.float32) / 255.0


def layer(track: Track, t: int) -> tuple[np.ndarray, np.ndarray]:
    """The object of ``track`` at frame ``t`` on a full canvas: premultiplied RGB (H, W, 3) and
    coverage (H, W), averaged over ``blur_steps`` sub-frame positions between frames t-1 and t."""
    colour = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    cover = np.zeros((HEIGHT, WIDTH), np.float32)
    steps = track.blur_steps if t > 0 else 1
    rgb, alpha = render_object(track.cut, track.heights[t], track.angles[t])
    h, w = alpha.shape
    prev = track.centres[t - 1] if t > 0 else track.centres[t]
    for k in range(steps):
        f = (k + 1) / steps if steps > 1 else 1.0
        cx = prev[0] + f * (track.centres[t][0] - prev[0])
        cy = prev[1] + f * (track.centres[t][1] - prev[1])
        x0, y0 = round(cx - w / 2), round(cy - h / 2)
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, WIDTH), min(y0 + h, HEIGHT)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        a = alpha[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        colour[cy0:cy1, cx0:cx1] += rgb[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] * a[..., None] / steps
        cover[cy0:cy1, cx0:cx1] += a / steps
    return colour, cover


def composite_frame(background: np.ndarray, tracks: list[Track], t: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``t`` of ``tracks`` pasted in order over ``background``: (H, W, 3) float32 RGB and the
    (H, W) uint8 labels (a track labelled 0 hides what it covers)."""
    canvas = background.copy()
    label = np.zeros((HEIGHT, WIDTH), np.uint8)
    for track in tracks:
        colour, cover = layer(track, t)
        canvas = canvas * (1 - cover[..., None]) + colour
        label[cover >= 0.5] = track.label
    return canvas, label


def panned_background(pool: DutsPool, key: str, frames: int, rng: random.Random) -> list[np.ndarray]:
    """Image ``key`` scaled to cover the canvas with a margin, panned linearly over the clip:
    ``frames`` (H, W, 3) float32 views."""
    im = pool.image(key)
    scale = max(WIDTH * 1.3 / im.width, HEIGHT * 1.3 / im.height)
    im = im.resize((math.ceil(im.width * scale), math.ceil(im.height * scale)), Image.Resampling.BICUBIC)
    big = np.asarray(im, np.float32)
    mx, my = big.shape[1] - WIDTH, big.shape[0] - HEIGHT
    x0, y0, x1, y1 = rng.uniform(0, mx), rng.uniform(0, my), rng.uniform(0, mx), rng.uniform(0, my)
    out = []
    for t in range(frames):
        f = t / max(frames - 1, 1)
        x, y = round(x0 + f * (x1 - x0)), round(y0 + f * (y1 - y0))
        out.append(big[y:y + HEIGHT, x:x + WIDTH])
    return out


def linear_path(a: tuple[float, float], b: tuple[float, float], frames: int) -> list[tuple[float, float]]:
    """``frames`` centres evenly from ``a`` to ``b``."""
    return [(a[0] + (b[0] - a[0]) * t / (frames - 1), a[1] + (b[1] - a[1]) * t / (frames - 1)) for t in range(frames)]
