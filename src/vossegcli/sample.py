"""The bundled sample clip, rendered by our own code (no third-party footage).

``generate_sample(out_dir, seed)`` writes

* ``sample.mp4`` - 320x240, 24 fps, 72 frames (3 s), H.264 yuv420p, crf 18;
* ``mask.png``   - the first-frame annotation: a DAVIS palette PNG with objects 1 and 2;
* ``gt/00000.png`` ... ``gt/00071.png`` - ground-truth palette masks for every frame.

The scene: a softly textured background (smooth colour noise and faint diagonal stripes)
panning slowly, a red spotted ellipse (object 1) and a teal/blue striped rounded pentagon
(object 2) moving along smooth paths while scaling and rotating a little. Object 1 is always
in front; in the middle of the clip it passes over part of object 2, and the ground truth
shows object 2 only where it is visible. The image is rendered with 2x2 supersampling
(anti-aliased edges); the ground truth is evaluated at pixel centres, so its ids are crisp.
Everything is a pure function of ``seed``.

The committed copy lives in ``vossegcli/data/sample`` (see :func:`sample_paths`); regenerate
it with ``python -m vossegcli.sample OUT_DIR [--seed N]``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vossegcli.errors import InputError
from vossegcli.io.overlay import encode_mp4
from vossegcli.files import PendingFile
from vossegcli.io.palette import davis_palette, write_label_png

WIDTH, HEIGHT = 320, 240
FPS = 24
NUM_FRAMES = 72
CRF = 18
SUPERSAMPLE = 2  # per axis: 2x2 samples per pixel
_FILE_MODE = 0o644  # mkstemp creates 0600 files; the sample is meant to be shared
SAMPLE_DIR = Path(__file__).resolve().parent / "data" / "sample"


@dataclass(frozen=True)
class SamplePaths:
    video: Path
    mask: Path
    gt_dir: Path

    @property
    def root(self) -> Path:
        return self.video.parent


def sample_paths() -> SamplePaths:
    """The sample installed with the package (video, first-frame mask, ground-truth folder)."""
    paths = SamplePaths(
        video=SAMPLE_DIR / "sample.mp4", mask=SAMPLE_DIR / "mask.png", gt_dir=SAMPLE_DIR / "gt"
    )
    if not (paths.video.is_file() and paths.mask.is_file() and paths.gt_dir.is_dir()):
        raise InputError(
            f"{SAMPLE_DIR}: the bundled sample is missing from this installation; reinstall vosseg "
            "or regenerate it with `python -m vossegcli.sample DIR`"
        )
    return paths


# --------------------------------------------------------------------------- scene


@dataclass(frozen=True)
class _Pose:
    cx: float
    cy: float
    angle: float  # radians
    scale: float


class _Scene:
    """Deterministic scene description drawn from ``seed``."""

    def __init__(self, seed: int):
        rng = np.random.default_rng(seed)
        self.rng = rng
        # Background: colour noise at two scales on a canvas larger than the frame (for panning).
        self.pan = (48.0, 14.0)  # total pan over the clip, px (x, y)
        ss = SUPERSAMPLE
        self.bg_w = (WIDTH + 64) * ss
        self.bg_h = (HEIGHT + 32) * ss
        self.background = self._background(rng)
        # Object 1: ellipse with spots (in unit-disk coordinates).
        self.ell_axes = (40.0, 27.0)
        n_spots = 11
        radius = np.sqrt(rng.uniform(0.0, 0.75, n_spots))
        theta = rng.uniform(0.0, 2 * math.pi, n_spots)
        self.spots = np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)
        self.spot_r = rng.uniform(0.10, 0.19, n_spots)
        self.spot_kind = rng.integers(0, 2, n_spots)  # 0 dark, 1 yellow
        # Object 2: rounded pentagon (polygon radius + rounding radius), stripes.
        self.pent_r = 27.0
        self.pent_round = 8.0
        self.stripe_period = 9.0 + rng.uniform(-0.5, 0.5)
        self.phase = rng.uniform(0.0, 2 * math.pi, 4)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        h, w = self.bg_h, self.bg_w

        def noise(cells_y: int, cells_x: int, channels: int) -> np.ndarray:
            grid = rng.uniform(-1.0, 1.0, (cells_y, cells_x, channels)).astype(np.float32)
            planes = [
                np.asarray(Image.fromarray(grid[..., c], mode="F").resize((w, h), Image.BICUBIC))
                for c in range(channels)
            ]
            return np.stack(planes, axis=2)

        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / SUPERSAMPLE
        light = 26.0 * noise(4, 6, 1) + 12.0 * noise(22, 30, 1)
        light += 7.0 * np.sin((xx * 0.8 + yy * 0.6) * (2 * math.pi / 21.0))[..., None]  # soft stripes
        chroma = noise(3, 5, 3) * np.array([14.0, 10.0, 12.0], dtype=np.float32)
        base = np.array([146.0, 142.0, 116.0], dtype=np.float32)  # muted sand / olive
        gradient = (yy / (h / SUPERSAMPLE))[..., None] * np.array([-22.0, -14.0, -4.0], dtype=np.float32)
        return np.clip(base + light + chroma + gradient, 0, 255)

    def poses(self, t: int) -> tuple[_Pose, _Pose]:
        u = t / (NUM_FRAMES - 1)  # 0..1
        p = self.phase

        def wobble(amplitude: float, phase: float) -> float:
            # seed-dependent variation that vanishes mid-clip, so the occlusion always happens
            return amplitude * (math.sin(2 * math.pi * u + phase) - math.sin(math.pi + phase))

        one = _Pose(
            cx=48.0 + 224.0 * u,
            cy=70.0 + 92.0 * u + wobble(8.0, p[0]),
            angle=0.35 * math.sin(2 * math.pi * 0.8 * u + p[1]) + 0.3 * u,
            scale=1.0 + 0.12 * math.sin(2 * math.pi * u),
        )
        two = _Pose(
            cx=268.0 - 170.0 * u,
            cy=152.0 - 4.0 * math.sin(math.pi * u) + wobble(6.0, p[2]),
            angle=-0.9 * u + 0.15 * math.sin(2 * math.pi * u + p[3]),
            scale=1.0 - 0.1 * math.sin(math.pi * u),
        )
        return one, two

    def extent(self, which: int, pose: _Pose) -> float:
        """Radius of a circle around the object's centre that contains it."""
        r = max(self.ell_axes) if which == 1 else self.pent_r + self.pent_round
        return r * pose.scale + 2.0


def _local(x: np.ndarray, y: np.ndarray, pose: _Pose) -> tuple[np.ndarray, np.ndarray]:
    """Frame coordinates -> object coordinates (unrotated, unscaled)."""
    c, s = math.cos(pose.angle), math.sin(pose.angle)
    dx, dy = x - pose.cx, y - pose.cy
    return (c * dx + s * dy) / pose.scale, (-s * dx + c * dy) / pose.scale


def _ellipse_inside(lx, ly, scene: _Scene) -> np.ndarray:
    a, b = scene.ell_axes
    return (lx / a) ** 2 + (ly / b) ** 2 <= 1.0


def _pentagon_distance(lx, ly, scene: _Scene) -> np.ndarray:
    """Distance from a regular pentagon of radius ``pent_r`` (0 inside)."""
    r = scene.pent_r
    angles = [math.pi / 2 + 2 * math.pi * k / 5 for k in range(5)]
    verts = [(r * math.cos(a), -r * math.sin(a)) for a in angles]
    inside = np.ones(lx.shape, dtype=bool)
    dist = np.full(lx.shape, np.inf, dtype=np.float64)
    for k in range(5):
        (x0, y0), (x1, y1) = verts[k], verts[(k + 1) % 5]
        ex, ey = x1 - x0, y1 - y0
        # vertices go clockwise in image coordinates; inside is left of each edge there
        cross = ex * (ly - y0) - ey * (lx - x0)
        inside &= cross <= 0
        tproj = np.clip(((lx - x0) * ex + (ly - y0) * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        dist = np.minimum(dist, np.hypot(lx - (x0 + tproj * ex), ly - (y0 + tproj * ey)))
    return np.where(inside, 0.0, dist)


def _pentagon_inside(lx, ly, scene: _Scene) -> np.ndarray:
    return _pentagon_distance(lx, ly, scene) <= scene.pent_round


def _labels(t: int, scene: _Scene) -> np.ndarray:
    """Crisp ground truth at pixel centres; object 1 in front of object 2."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64) + 0.5
    one, two = scene.poses(t)
    labels = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    labels[_pentagon_inside(*_local(xx, yy, two), scene)] = 2
    labels[_ellipse_inside(*_local(xx, yy, one), scene)] = 1
    return labels


def _box(pose: _Pose, radius: float) -> tuple[slice, slice]:
    """Supersampled-grid (rows, cols) window around an object, clipped to the frame."""
    ss = SUPERSAMPLE
    x0 = max(0, int(math.floor(pose.cx - radius)) * ss)
    x1 = min(WIDTH * ss, int(math.ceil(pose.cx + radius)) * ss)
    y0 = max(0, int(math.floor(pose.cy - radius)) * ss)
    y1 = min(HEIGHT * ss, int(math.ceil(pose.cy + radius)) * ss)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def _grid(rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[rows, cols].astype(np.float64)
    return (xx + 0.5) / SUPERSAMPLE, (yy + 0.5) / SUPERSAMPLE


def _paint_pentagon(img: np.ndarray, pose: _Pose, scene: _Scene) -> None:
    """Teal / blue stripes, darker rim, soft shading."""
    rows, cols = _box(pose, scene.extent(2, pose))
    lx, ly = _local(*_grid(rows, cols), pose)
    dist = _pentagon_distance(lx, ly, scene)
    inside = dist <= scene.pent_round
    stripe = 0.5 + 0.5 * np.tanh(3.0 * np.sin(2 * math.pi * (lx * 0.9 + ly * 0.45) / scene.stripe_period))
    teal = np.array([40.0, 178.0, 160.0])
    blue = np.array([28.0, 76.0, 178.0])
    colour = teal * stripe[..., None] + blue * (1 - stripe[..., None])
    rim = np.clip((dist - (scene.pent_round - 3.0)) / 3.0, 0.0, 1.0)
    radial = np.hypot(lx, ly) / (scene.pent_r + scene.pent_round)
    colour *= ((1.0 - 0.35 * rim) * (1.05 - 0.2 * radial ** 2))[..., None]
    window = img[rows, cols]
    window[inside] = colour[inside]


def _paint_ellipse(img: np.ndarray, pose: _Pose, scene: _Scene) -> None:
    """Red with dark and yellow spots, a highlight and shading."""
    rows, cols = _box(pose, scene.extent(1, pose))
    lx, ly = _local(*_grid(rows, cols), pose)
    inside = _ellipse_inside(lx, ly, scene)
    a, b = scene.ell_axes
    nx, ny = lx / a, ly / b
    r2 = nx ** 2 + ny ** 2
    colour = np.empty(lx.shape + (3,))
    colour[:] = np.array([206.0, 52.0, 44.0])
    for (sx, sy), sr, kind in zip(scene.spots, scene.spot_r, scene.spot_kind):
        d = np.hypot(nx - sx, ny - sy) / sr
        weight = np.clip(1.5 - 1.5 * d, 0.0, 1.0)[..., None]  # soft-edged spots
        spot = np.array([92.0, 14.0, 22.0]) if kind == 0 else np.array([246.0, 196.0, 64.0])
        colour = colour * (1 - weight) + spot * weight
    highlight = np.exp(-(((nx + 0.35) ** 2 + (ny + 0.4) ** 2) / 0.08))[..., None]
    colour = colour * (1.0 - 0.3 * r2)[..., None] + 70.0 * highlight
    window = img[rows, cols]
    window[inside] = colour[inside]


def _render(t: int, scene: _Scene) -> np.ndarray:
    """(H, W, 3) uint8 frame: background, object 2, object 1 on top; 2x2 supersampled."""
    ss = SUPERSAMPLE
    h, w = HEIGHT * ss, WIDTH * ss
    u = t / (NUM_FRAMES - 1)
    ox = int(round(scene.pan[0] * u * ss))
    oy = int(round(scene.pan[1] * (0.5 - 0.5 * math.cos(math.pi * u)) * ss))
    img = scene.background[oy:oy + h, ox:ox + w].astype(np.float64)
    one, two = scene.poses(t)
    _paint_pentagon(img, two, scene)
    _paint_ellipse(img, one, scene)
    img = img.reshape(HEIGHT, ss, WIDTH, ss, 3).mean(axis=(1, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- writing


def _write_video(path: Path, frames) -> None:
    pending = PendingFile(path, suffix=".mp4")
    try:
        encode_mp4(pending.tmp, ((f, None) for f in frames), (WIDTH, HEIGHT), FPS, crf=CRF, preset="slow")
        pending.commit(_FILE_MODE)
    finally:
        pending.discard()


def generate_sample(out_dir: Path, seed: int = 0) -> SamplePaths:
    """Render the sample clip, first-frame mask and ground truth into ``out_dir``."""
    out_dir = Path(out_dir)
    gt_dir = out_dir / "gt"
    gt_dir.mkdir(parents=True, exist_ok=True)
    scene = _Scene(seed)
    palette = davis_palette()
    for t in range(NUM_FRAMES):
        write_label_png(gt_dir / f"{t:05d}.png", _labels(t, scene), palette, mode=_FILE_MODE)
    write_label_png(out_dir / "mask.png", _labels(0, scene), palette, mode=_FILE_MODE)
    _write_video(out_dir / "sample.mp4", (_render(t, scene) for t in range(NUM_FRAMES)))
    return SamplePaths(video=out_dir / "sample.mp4", mask=out_dir / "mask.png", gt_dir=gt_dir)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m vossegcli.sample", description="Render the vosseg sample clip, mask and ground truth."
    )
    parser.add_argument("out_dir", type=Path, help="folder to write sample.mp4, mask.png and gt/ into")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0, the committed sample)")
    args = parser.parse_args(argv)
    paths = generate_sample(args.out_dir, seed=args.seed)
    size = paths.video.stat().st_size
    print(f"wrote {paths.video} ({size / 1024:.0f} KB), {paths.mask}, {paths.gt_dir}/ ({NUM_FRAMES} masks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
