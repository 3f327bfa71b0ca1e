"""The cut-out kit: objects cut out of saliency images with their masks, where they come from
(:class:`DutsPool`: DUTS-TR's held-out or training part, with look-alikes and thin objects), hard
pasting (scaled, rotated) into a frame, and a background taken from the part of an image its object
does not touch. :mod:`vossegcli.datasets.scenes` composites cut-outs softly over a panned
background, frame after frame (the rendered yardsticks)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from vossegcli.datasets.roots import duts_split


@dataclass
class Cutout:
    """An object cut out to its bounding box."""

    rgb: np.ndarray  #: (h, w, 3) uint8
    alpha: np.ndarray  #: (h, w) float32 coverage in 0..1 (0 or 1 for a mask's cut-out)

    @property
    def area(self) -> float:
        """The pixels the object covers."""
        return float(self.alpha.sum())


def load_cutout(image: Path, mask: Path, min_area: int = 400) -> Cutout | None:
    """The object of a saliency image cut out to its bounding box (None if under ``min_area`` px)."""
    with Image.open(image) as im, Image.open(mask) as m:
        rgb = np.asarray(im.convert("RGB"))
        alpha = np.asarray(m.convert("L")) > 127
    if alpha.sum() < min_area:
        return None
    ys, xs = np.nonzero(alpha)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return Cutout(np.ascontiguousarray(rgb[y0:y1, x0:x1]), alpha[y0:y1, x0:x1].astype(np.float32))


def mirrored(cut: Cutout) -> Cutout:
    """The cut-out flipped left-right (a look-alike twin)."""
    return Cutout(np.ascontiguousarray(cut.rgb[:, ::-1]), np.ascontiguousarray(cut.alpha[:, ::-1]))


def scale_for_share(cut: Cutout, share: float, size: tuple[int, int]) -> float:
    """The scale at which ``cut`` covers ``share`` of a frame of ``size`` (H, W)."""
    h, w = size
    return float(np.sqrt(share * h * w / max(cut.area, 1)))


def paste(canvas: np.ndarray, labels: np.ndarray, obj: Cutout, oid: int, cx: float, cy: float,
           scale: float, angle: float) -> None:
    """Warp ``obj`` (scale, rotation about its centre) and paste it centred at (cx, cy), hard-edged:
    ``canvas`` (H, W, 3) uint8 and ``labels`` (H, W) get the object where it covers half a pixel."""
    rgba = np.dstack([obj.rgb, (obj.alpha >= 0.5).astype(np.uint8) * 255])
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


class DutsPool:
    """DUTS-TR images and their object cut-outs, by id: the held-out part (every tenth image, for the
    rendered yardsticks) or the training part; which objects are thin, and which look alike."""

    def __init__(self, root: Path, part: str = "held-out") -> None:
        """``root``: the DUTS-TR folder (:func:`vossegcli.datasets.roots.duts_root`)."""
        self.root = Path(root)
        train, held = duts_split(self.root)
        self.ids = {"held-out": held, "train": train}[part]
        self._thin: list[str] | None = None
        self._descriptors: dict[str, np.ndarray] | None = None

    def image(self, key: str) -> Image.Image:
        with Image.open(self.root / "images" / f"{key}.jpg") as im:
            return im.convert("RGB")

    def mask(self, key: str) -> np.ndarray:
        with Image.open(self.root / "masks" / f"{key}.png") as im:
            return np.asarray(im.convert("L")) > 127

    def cutout(self, key: str) -> Cutout | None:
        """Image ``key``'s object (None when under 500 px)."""
        return load_cutout(self.root / "images" / f"{key}.jpg", self.root / "masks" / f"{key}.png", min_area=500)

    def descriptor(self, key: str) -> np.ndarray | None:
        """A look descriptor of the object: its normalized 4x4x4 RGB histogram inside the mask,
        then the log aspect ratio of its box (weighted like one histogram's worth); None when tiny."""
        mask = self.mask(key)
        if mask.sum() < 500:
            return None
        rgb = np.asarray(self.image(key))[mask] // 64
        hist = np.bincount((rgb[:, 0] * 16 + rgb[:, 1] * 4 + rgb[:, 2]).astype(np.int64), minlength=64).astype(np.float64)
        ys, xs = np.nonzero(mask)
        aspect = math.log((ys.max() - ys.min() + 1) / (xs.max() - xs.min() + 1))
        return np.concatenate([hist / hist.sum(), [aspect]])

    def lookalikes(self, key: str, count: int) -> list[str]:
        """The ``count`` objects of the pool (other than ``key``) nearest to ``key``'s descriptor."""
        if self._descriptors is None:
            self._descriptors = {k: d for k in self.ids if (d := self.descriptor(k)) is not None}
        ref = self._descriptors[key]
        dist = sorted((float(np.abs(d[:64] - ref[:64]).sum() + abs(d[64] - ref[64])), k)
                      for k, d in self._descriptors.items() if k != key)
        return [k for _, k in dist[:count]]

    def thin_ids(self) -> list[str]:
        """Ids whose object has much thin structure (3-px erosion removes > 30 %)."""
        if self._thin is None:
            thin = []
            for key in self.ids:
                mask = self.mask(key)
                area = mask.sum()
                if area < 1500 or area > 0.5 * mask.size:
                    continue
                eroded = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MinFilter(7))) > 127
                if eroded.sum() < 0.7 * area:
                    thin.append(key)
            self._thin = thin
        return self._thin
