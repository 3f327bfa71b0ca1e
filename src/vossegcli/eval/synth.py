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
  cut-outs nearest to it in colour and shape (:meth:`DutsPool.lookalikes`) — at about its size,
  walking their own paths around it, some in front of it and some behind (a dancer before spectators).

Every clip also pans its background and, every other clip, ramps the lighting. Objects and
backgrounds come only from :func:`vossegcli.datasets.roots.duts_split`'s held-out part (every tenth image), which the
training data must never use. Clips are rendered deterministically (seeded per clip) and cached as
frame folders (JPEG, quality 95) with palette-PNG ground truth, so every run scores the same frames.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import numpy as np
from PIL import Image

from vossegcli.datasets.cutouts import Cutout, DutsPool, mirrored
from vossegcli.datasets.roots import HOLDOUT_EVERY, duts_root
from vossegcli.datasets.scenes import HEIGHT, WIDTH, Track, composite_frame, linear_path, panned_background
from vossegcli.files import atomic_write
from vossegcli.io.palette import write_label_png

#: Bump when the rendering changes: cached clips of another version are rebuilt.
GENERATOR_VERSION = 2  # 2: + crowd (the other scenarios' clips are unchanged)
SCENARIOS = ("occlusion", "distractor", "scale", "fast", "thin", "crowd")
CLIPS_PER_SCENARIO = 12
FRAMES = 24
#: A labelled object must cover this many pixels in frame 0 (it is the given mask).
MIN_START_AREA = 600


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


def _tracks(scenario: str, pool: DutsPool, rng: random.Random, frames: int) -> list[Track]:
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
            tracks.append(Track(cut_from(pool.ids), i + 1, linear_path(a, b, frames), [h] * frames, wobble(frames, 8)))
        return tracks
    if scenario == "distractor":
        cut = cut_from(pool.ids)
        twin = mirrored(cut)
        a = (WIDTH * 0.3, HEIGHT * rng.uniform(0.4, 0.6))
        b = (WIDTH * 0.7, HEIGHT * rng.uniform(0.4, 0.6))
        real = Track(cut, 1, linear_path(a, b, frames), [h0] * frames, wobble(frames, 6))
        fake = Track(twin, 0, linear_path((b[0], a[1] + 20), (a[0], b[1] - 20), frames), [h0 * rng.uniform(0.85, 1.1)] * frames,
                      wobble(frames, 6))
        return [real, fake] if rng.random() < 0.5 else [fake, real]
    if scenario == "scale":
        small, large = HEIGHT * 0.22, HEIGHT * 0.66
        grow = rng.random() < 0.5
        heights = [small * (large / small) ** (t / (frames - 1)) for t in range(frames)]
        heights = heights if grow else heights[::-1]
        a = (WIDTH * rng.uniform(0.35, 0.65), HEIGHT * 0.5)
        b = (WIDTH * rng.uniform(0.35, 0.65), HEIGHT * 0.5)
        return [Track(cut_from(pool.ids), 1, linear_path(a, b, frames), heights, wobble(frames, 10))]
    if scenario == "fast":
        h = HEIGHT * rng.uniform(0.3, 0.4)
        speed = rng.uniform(18, 32)
        angle = rng.uniform(0, 2 * math.pi)
        path = _bouncing((WIDTH / 2, HEIGHT / 2), (speed * math.cos(angle), speed * math.sin(angle) * 0.6), frames, h / 2)
        return [Track(cut_from(pool.ids), 1, path, [h] * frames, wobble(frames, 15), blur_steps=6)]
    if scenario == "thin":
        thin = pool.thin_ids() or pool.ids
        a = (WIDTH * rng.uniform(0.3, 0.5), HEIGHT * rng.uniform(0.4, 0.6))
        b = (WIDTH * rng.uniform(0.5, 0.7), HEIGHT * rng.uniform(0.4, 0.6))
        return [Track(cut_from(thin), 1, linear_path(a, b, frames), [HEIGHT * rng.uniform(0.55, 0.7)] * frames, wobble(frames, 8))]
    if scenario == "crowd":
        while (key := rng.choice(pool.ids)) and pool.cutout(key) is None:
            pass
        a = (WIDTH * rng.uniform(0.3, 0.45), HEIGHT * rng.uniform(0.45, 0.55))
        b = (WIDTH * rng.uniform(0.55, 0.7), HEIGHT * rng.uniform(0.45, 0.55))
        target = Track(pool.cutout(key), 1, linear_path(a, b, frames), [h0] * frames, wobble(frames, 8))
        others = []
        for k, other in enumerate(pool.lookalikes(key, 4)):
            cut = pool.cutout(other)
            start = (WIDTH * (0.12 + 0.25 * k) + rng.uniform(-20, 20), HEIGHT * rng.uniform(0.3, 0.7))
            end = (start[0] + rng.uniform(-0.2, 0.2) * WIDTH, HEIGHT * rng.uniform(0.3, 0.7))
            others.append(Track(cut, 0, linear_path(start, end, frames), [h0 * rng.uniform(0.8, 1.1)] * frames,
                                 wobble(frames, 10)))
        behind = rng.randint(1, 3)  # some pass behind the object, the rest in front of it
        return others[:behind] + [target] + others[behind:]
    raise ValueError(f"unknown scenario {scenario!r}")


def render_clip(pool: DutsPool, scenario: str, index: int, frames: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Clip ``index`` of ``scenario``: (frames (H, W, 3) uint8, labels (H, W) uint8), deterministic.

    Re-draws until every labelled object covers :data:`MIN_START_AREA` px of frame 0."""
    frames = frames or FRAMES
    seed = 7919 * (SCENARIOS.index(scenario) + 1) + index
    for attempt in range(50):
        rng = random.Random(seed * 100 + attempt)
        background = panned_background(pool, rng.choice(pool.ids), frames, rng)
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
    pool = DutsPool(root)
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
