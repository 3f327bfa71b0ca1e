"""`val-synth`: a fixed set of synthetic validation clips built from held-out DUTS-TR images.

The 6-sequence davis16-train `val` split over-estimated the held-out DAVIS-2016 score by 6.6 J&F,
so settings are chosen on the mean of `val` and this second yardstick, which covers what the
held-out set punishes. Six scenarios, :data:`CLIPS_PER_SCENARIO` clips each:

* ``occlusion``: two to four objects on crossing paths; objects pasted later hide earlier ones;
* ``distractor``: the object and an unlabelled look-alike (a second, flipped copy of the same
  cut-out) moving close by and crossing it;
* ``scale``: the object grows or shrinks about threefold over the clip;
* ``fast``: large displacements per frame, bouncing off the frame edges, with motion blur (each
  frame averages sub-frame renders, the mask is where the blurred object covers half a pixel);
* ``thin``: objects with much thin structure (eroding their masks by 3 px removes more than 30 %
  of their area);
* ``crowd``: the object among four *different* unlabelled objects of its kind — the held-out
  cut-outs nearest to it in colour and shape (:meth:`_Pool.lookalikes`) — at about its size,
  walking their own paths around it, some in front of it and some behind (a dancer before spectators).

Every clip also pans its background and, every other clip, ramps the lighting. Objects and
backgrounds come only from :func:`duts_split`'s held-out part (every tenth image), which the
training data must never use. Clips are rendered deterministically (seeded per clip) and cached as
frame folders (JPEG, quality 95) with palette-PNG ground truth, so every run scores the same frames.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from vossegcli.datasets.roots import HOLDOUT_EVERY, duts_root, duts_split
from vossegcli.files import atomic_write
from vossegcli.io.palette import write_label_png

#: Bump when the rendering changes: cached clips of another version are rebuilt.
GENERATOR_VERSION = 2  # 2: + crowd (the other scenarios' clips are unchanged)
SCENARIOS = ("occlusion", "distractor", "scale", "fast", "thin", "crowd")
CLIPS_PER_SCENARIO = 12
FRAMES = 24
WIDTH, HEIGHT = 480, 272
#: A labelled object must cover this many pixels in frame 0 (it is the given mask).
MIN_START_AREA = 600


@dataclass
class Cutout:
    rgb: np.ndarray  # (h, w, 3) uint8: the object's bounding box
    alpha: np.ndarray  # (h, w) float32 in 0..1


class _Pool:
    """Held-out DUTS images, their object cut-outs and which of them are thin."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        _, self.ids = duts_split(self.root)
        self._thin: list[str] | None = None
        self._descriptors: dict[str, np.ndarray] | None = None

    def image(self, key: str) -> Image.Image:
        with Image.open(self.root / "images" / f"{key}.jpg") as im:
            return im.convert("RGB")

    def mask(self, key: str) -> np.ndarray:
        with Image.open(self.root / "masks" / f"{key}.png") as im:
            return np.asarray(im.convert("L")) > 127

    def cutout(self, key: str) -> Cutout | None:
        mask = self.mask(key)
        if mask.sum() < 500:
            return None
        ys, xs = np.nonzero(mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        rgb = np.asarray(self.image(key))[y0:y1, x0:x1]
        return Cutout(np.ascontiguousarray(rgb), mask[y0:y1, x0:x1].astype(np.float32))

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
        """The ``count`` held-out objects (other than ``key``) nearest to ``key``'s descriptor."""
        if self._descriptors is None:
            self._descriptors = {k: d for k in self.ids if (d := self.descriptor(k)) is not None}
        ref = self._descriptors[key]
        dist = sorted((float(np.abs(d[:64] - ref[:64]).sum() + abs(d[64] - ref[64])), k)
                      for k, d in self._descriptors.items() if k != key)
        return [k for _, k in dist[:count]]

    def thin_ids(self) -> list[str]:
        """Held-out ids whose object has much thin structure (3-px erosion removes > 30 %)."""
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


@dataclass
class _Track:
    """One pasted object over the clip: its cut-out, id (0 = unlabelled distractor) and, per
    frame, centre (x, y), height in pixels and rotation in degrees."""

    cut: Cutout
    label: int
    centres: list[tuple[float, float]]
    heights: list[float]
    angles: list[float]
    blur_steps: int = 1


def _render_object(cut: Cutout, height: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The cut-out scaled to ``height`` px and rotated: (h, w, 3) float32 RGB, (h, w) float32 alpha."""
    scale = max(height, 4.0) / cut.rgb.shape[0]
    size = (max(2, round(cut.rgb.shape[1] * scale)), max(2, round(cut.rgb.shape[0] * scale)))
    rgb = Image.fromarray(cut.rgb).resize(size, Image.Resampling.BILINEAR)
    alpha = Image.fromarray((cut.alpha * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    if angle:
        rgb = rgb.rotate(angle, Image.Resampling.BILINEAR, expand=True)
        alpha = alpha.rotate(angle, Image.Resampling.BILINEAR, expand=True)
    return np.asarray(rgb, np.float32), np.asarray(alpha, np.float32) / 255.0


def _layer(track: _Track, t: int) -> tuple[np.ndarray, np.ndarray]:
    """The object of ``track`` at frame ``t`` on a full canvas: premultiplied RGB and coverage,
    averaged over ``blur_steps`` sub-frame positions between frames t-1 and t (motion blur)."""
    colour = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    cover = np.zeros((HEIGHT, WIDTH), np.float32)
    steps = track.blur_steps if t > 0 else 1
    rgb, alpha = _render_object(track.cut, track.heights[t], track.angles[t])
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


def _background(pool: _Pool, key: str, frames: int, rng: random.Random) -> list[np.ndarray]:
    """A held-out image scaled to cover the canvas with a margin, panned linearly over the clip."""
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


def _linear(a: tuple[float, float], b: tuple[float, float], frames: int) -> list[tuple[float, float]]:
    return [(a[0] + (b[0] - a[0]) * t / (frames - 1), a[1] + (b[1] - a[1]) * t / (frames - 1)) for t in range(frames)]


def _bouncing(start: tuple[float, float], velocity: tuple[float, float], frames: int, margin: float) -> list[tuple[float, float]]:
    x, y = start
    vx, vy = velocity
    path = []
    for _ in range(frames):
        path.append((x, y))
        x, y = x + vx, y + vy
        if not margin <= x <= WIDTH - margin:
            vx, x = -vx, min(max(x, margin), WIDTH - margin)
        if not margin <= y <= HEIGHT - margin:
            vy, y = -vy, min(max(y, margin), HEIGHT - margin)
    return path


def _tracks(scenario: str, pool: _Pool, rng: random.Random, frames: int) -> list[_Track]:
    """The pasted objects of one clip of ``scenario`` (in paste order: later ones occlude)."""

    def cut_from(ids: list[str]) -> Cutout:
        while True:
            c = pool.cutout(rng.choice(ids))
            if c is not None:
                return c

    def wobble(n: int, amplitude: float) -> list[float]:
        phase, speed = rng.uniform(0, 6.28), rng.uniform(0.1, 0.3)
        return [amplitude * math.sin(phase + speed * t) for t in range(n)]

    h0 = HEIGHT * rng.uniform(0.35, 0.5)
    if scenario == "occlusion":
        n = rng.randint(2, 4)
        tracks = []
        for i in range(n):
            side = 1 if i % 2 else -1
            a = (WIDTH / 2 - side * rng.uniform(0.2, 0.4) * WIDTH, rng.uniform(0.3, 0.7) * HEIGHT)
            b = (WIDTH / 2 + side * rng.uniform(0.2, 0.4) * WIDTH, rng.uniform(0.3, 0.7) * HEIGHT)
            h = HEIGHT * rng.uniform(0.3, 0.45)
            tracks.append(_Track(cut_from(pool.ids), i + 1, _linear(a, b, frames), [h] * frames, wobble(frames, 8)))
        return tracks
    if scenario == "distractor":
        cut = cut_from(pool.ids)
        twin = Cutout(np.ascontiguousarray(cut.rgb[:, ::-1]), np.ascontiguousarray(cut.alpha[:, ::-1]))
        a = (WIDTH * 0.3, HEIGHT * rng.uniform(0.4, 0.6))
        b = (WIDTH * 0.7, HEIGHT * rng.uniform(0.4, 0.6))
        real = _Track(cut, 1, _linear(a, b, frames), [h0] * frames, wobble(frames, 6))
        fake = _Track(twin, 0, _linear((b[0], a[1] + 20), (a[0], b[1] - 20), frames), [h0 * rng.uniform(0.85, 1.1)] * frames,
                      wobble(frames, 6))
        return [real, fake] if rng.random() < 0.5 else [fake, real]
    if scenario == "scale":
        small, large = HEIGHT * 0.22, HEIGHT * 0.66
        grow = rng.random() < 0.5
        heights = [small * (large / small) ** (t / (frames - 1)) for t in range(frames)]
        heights = heights if grow else heights[::-1]
        a = (WIDTH * rng.uniform(0.35, 0.65), HEIGHT * 0.5)
        b = (WIDTH * rng.uniform(0.35, 0.65), HEIGHT * 0.5)
        return [_Track(cut_from(pool.ids), 1, _linear(a, b, frames), heights, wobble(frames, 10))]
    if scenario == "fast":
        h = HEIGHT * rng.uniform(0.3, 0.4)
        speed = rng.uniform(18, 32)
        angle = rng.uniform(0, 2 * math.pi)
        path = _bouncing((WIDTH / 2, HEIGHT / 2), (speed * math.cos(angle), speed * math.sin(angle) * 0.6), frames, h / 2)
        return [_Track(cut_from(pool.ids), 1, path, [h] * frames, wobble(frames, 15), blur_steps=6)]
    if scenario == "thin":
        thin = pool.thin_ids() or pool.ids
        a = (WIDTH * rng.uniform(0.3, 0.5), HEIGHT * rng.uniform(0.4, 0.6))
        b = (WIDTH * rng.uniform(0.5, 0.7), HEIGHT * rng.uniform(0.4, 0.6))
        return [_Track(cut_from(thin), 1, _linear(a, b, frames), [HEIGHT * rng.uniform(0.55, 0.7)] * frames, wobble(frames, 8))]
    if scenario == "crowd":
        while (key := rng.choice(pool.ids)) and pool.cutout(key) is None:
            pass
        a = (WIDTH * rng.uniform(0.3, 0.45), HEIGHT * rng.uniform(0.45, 0.55))
        b = (WIDTH * rng.uniform(0.55, 0.7), HEIGHT * rng.uniform(0.45, 0.55))
        target = _Track(pool.cutout(key), 1, _linear(a, b, frames), [h0] * frames, wobble(frames, 8))
        others = []
        for k, other in enumerate(pool.lookalikes(key, 4)):
            cut = pool.cutout(other)
            start = (WIDTH * (0.12 + 0.25 * k) + rng.uniform(-20, 20), HEIGHT * rng.uniform(0.3, 0.7))
            end = (start[0] + rng.uniform(-0.2, 0.2) * WIDTH, HEIGHT * rng.uniform(0.3, 0.7))
            others.append(_Track(cut, 0, _linear(start, end, frames), [h0 * rng.uniform(0.8, 1.1)] * frames,
                                 wobble(frames, 10)))
        behind = rng.randint(1, 3)  # some pass behind the object, the rest in front of it
        return others[:behind] + [target] + others[behind:]
    raise ValueError(f"unknown scenario {scenario!r}")


def composite_frame(background: np.ndarray, tracks: list[_Track], t: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``t`` of ``tracks`` pasted in order over ``background``: (H, W, 3) float32 RGB and the
    (H, W) uint8 labels (a track labelled 0 hides what it covers)."""
    canvas = background.copy()
    label = np.zeros((HEIGHT, WIDTH), np.uint8)
    for track in tracks:
        colour, cover = _layer(track, t)
        canvas = canvas * (1 - cover[..., None]) + colour
        label[cover >= 0.5] = track.label
    return canvas, label


def render_clip(pool: _Pool, scenario: str, index: int, frames: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Clip ``index`` of ``scenario``: (frames (H, W, 3) uint8, labels (H, W) uint8), deterministic.

    Re-draws until every labelled object covers :data:`MIN_START_AREA` px of frame 0."""
    frames = frames or FRAMES
    seed = 7919 * (SCENARIOS.index(scenario) + 1) + index
    for attempt in range(50):
        rng = random.Random(seed * 100 + attempt)
        background = _background(pool, rng.choice(pool.ids), frames, rng)
        tracks = _tracks(scenario, pool, rng, frames)
        gains = ([1.0 + 0.35 * math.sin(math.pi * t / (frames - 1)) * (1 if rng.random() < 0.5 else -0.6)
                  for t in range(frames)] if index % 2 else [1.0] * frames)
        images, labels = [], []
        for t in range(frames):
            canvas, label = composite_frame(background[t], tracks, t)
            images.append(np.clip(canvas * gains[t], 0, 255).round().astype(np.uint8))
            labels.append(label)
        ids = {tr.label for tr in tracks if tr.label}
        if all((labels[0] == i).sum() >= MIN_START_AREA for i in ids):
            return images, labels
    raise RuntimeError(f"val-synth: no usable {scenario} clip {index} in 50 draws")


def clip_names() -> list[str]:
    return [f"{s}-{i:02d}" for s in SCENARIOS for i in range(CLIPS_PER_SCENARIO)]


def default_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vosseg" / f"val-synth-v{GENERATOR_VERSION}"


def build_val_synth(data: Path, cache: Path | None = None, progress=None) -> Path:
    """Render (once) every val-synth clip into ``cache``: ``frames/<clip>/NNNNN.jpg`` and palette
    ``masks/<clip>/NNNNN.png``; returns ``cache``. A complete cache of this version is reused."""
    root = duts_root(data)
    cache = Path(cache) if cache is not None else default_cache()
    stamp = cache / "manifest.json"
    expected = {"generator_version": GENERATOR_VERSION, "clips": clip_names(), "frames": FRAMES,
                "size": [WIDTH, HEIGHT], "holdout_every": HOLDOUT_EVERY, "source": str(root)}
    if stamp.is_file() and json.loads(stamp.read_text()) == expected:
        return cache
    pool = _Pool(root)
    names = clip_names()
    for n, name in enumerate(names):
        scenario, index = name.rsplit("-", 1)
        images, labels = render_clip(pool, scenario, int(index), frames=FRAMES)
        fdir, mdir = cache / "frames" / name, cache / "masks" / name
        fdir.mkdir(parents=True, exist_ok=True)
        mdir.mkdir(parents=True, exist_ok=True)
        for t, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(image).save(fdir / f"{t:05d}.jpg", quality=95)
            write_label_png(mdir / f"{t:05d}.png", label, None)
        if progress:
            progress(name, n + 1, len(names))
    atomic_write(stamp, lambda handle: handle.write(json.dumps(expected, indent=1).encode()))
    return cache
