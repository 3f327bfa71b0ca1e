"""The cut-out kit: an object cut out of a saliency image with its mask, pasted (scaled, rotated)
into a frame, and a background taken from the part of an image its object does not touch."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class Cutout:
    rgb: np.ndarray  # (h, w, 3) uint8, the object's bounding box
    alpha: np.ndarray  # (h, w) bool


def load_cutout(image: Path, mask: Path) -> Cutout | None:
    """The object of a saliency image cut out to its bounding box (None if under 400 px)."""
    with Image.open(image) as im, Image.open(mask) as m:
        rgb = np.asarray(im.convert("RGB"))
        alpha = np.asarray(m.convert("L")) > 127
    if alpha.sum() < 400:
        return None
    ys, xs = np.nonzero(alpha)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return Cutout(rgb[y0:y1, x0:x1].copy(), alpha[y0:y1, x0:x1].copy())


def paste(canvas: np.ndarray, labels: np.ndarray, obj: Cutout, oid: int, cx: float, cy: float,
           scale: float, angle: float) -> None:
    """Warp ``obj`` (scale, rotation about its centre) and paste it centred at (cx, cy)."""
    rgba = np.dstack([obj.rgb, obj.alpha.astype(np.uint8) * 255])
    im = Image.fromarray(rgba, "RGBA")
    w = max(1, int(round(im.width * scale)))
    h = max(1, int(round(im.height * scale)))
    im = im.resize((w, h), Image.BICUBIC).rotate(angle, resample=Image.BICUBIC, expand=True)
    warped = np.asarray(im)
    alpha = warped[..., 3] > 127
    H, W = labels.shape
    top, left = int(round(cy - warped.shape[0] / 2)), int(round(cx - warped.shape[1] / 2))
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + warped.shape[0], H), min(left + warped.shape[1], W)
    if y1 <= y0 or x1 <= x0:
        return
    a = alpha[y0 - top:y1 - top, x0 - left:x1 - left]
    canvas[y0:y1, x0:x1][a] = warped[y0 - top:y1 - top, x0 - left:x1 - left, :3][a]
    labels[y0:y1, x0:x1][a] = oid


def clean_background(image: Path, mask: Path, size: tuple[int, int], rng: random.Random) -> np.ndarray | None:
    """The largest side of a saliency image that its object does not touch (left, right, above or
    below the object's box), scaled to cover ``size`` + 10 % for panning; None if too small."""
    with Image.open(image) as im, Image.open(mask) as m:
        rgb = im.convert("RGB")
        alpha = np.asarray(m.convert("L").resize(rgb.size, Image.Resampling.NEAREST)) > 127
    if not alpha.any():
        return None
    ys, xs = np.nonzero(alpha)
    W, H = rgb.size
    boxes = [(0, 0, int(xs.min()), H), (int(xs.max()) + 1, 0, W, H), (0, 0, W, int(ys.min())), (0, int(ys.max()) + 1, W, H)]
    x0, y0, x1, y1 = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    if (x1 - x0) < 64 or (y1 - y0) < 64:
        return None
    h, w = size
    crop = rgb.crop((x0, y0, x1, y1))
    scale = max(1.1 * h / crop.height, 1.1 * w / crop.width)
    crop = crop.resize((int(np.ceil(crop.width * scale)), int(np.ceil(crop.height * scale))), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(crop)
