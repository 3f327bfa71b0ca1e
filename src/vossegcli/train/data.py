"""Training clips for the refiner: real sequences (davis16-train) and synthetic ones (ECSSD).

A :class:`Clip` is a short list of RGB frames with per-frame id maps. Training samples are
(clip, object, reference frame, validation frames): the target model is trained on the
reference frame, the refiner learns to segment the object in the validation frames.

Synthetic clips follow the SynthVOS recipe (A-GAME): objects (ECSSD, and optionally DUTS-TR's
training part) are cut out with their masks and pasted onto another such image; over the clip each object moves (translation, scale,
rotation) and the background pans, and objects pasted later occlude earlier ones — so the
ground truth shows only what is visible.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
from PIL import Image

from vossegcli.datasets.clips import Clip
from vossegcli.datasets.cutouts import Cutout, load_cutout, paste
from vossegcli.errors import InputError
from vossegcli.io.palette import VOID_ID, read_label_png
from vossegcli.io.video import open_frames


def _read_clip(name: str, video: Path, masks: list[Path], stride: int = 1) -> Clip:
    frames, labels = [], []
    with open_frames(video) as reader:
        for frame in reader:
            if frame.index >= len(masks):
                break
            if frame.index % stride == 0:
                frames.append(frame.image)
                lab = read_label_png(masks[frame.index])
                labels.append(np.where(lab == VOID_ID, 0, lab).astype(np.uint8))
    return Clip(name, frames, labels)


def load_davis16(root: Path, split: str | list[str], frame_stride: int = 1) -> list[Clip]:
    """The sequences of one split of davis16-train (or the named sequences; mp4 decoded, masks
    read), every ``frame_stride``-th frame."""
    root = Path(root)
    if (root / "davis16-train").is_dir():
        root = root / "davis16-train"
    splits_file = root / "splits.json"
    if not splits_file.is_file():
        raise InputError(f"{root}: no davis16-train here (splits.json missing); pass data='../shared/data'")
    names = json.loads(splits_file.read_text())[split] if isinstance(split, str) else split
    return [
        _read_clip(n, root / "videos" / f"{n}.mp4", sorted((root / "masks" / n).glob("*.png")), frame_stride)
        for n in names
    ]


def load_sample_clip() -> Clip:
    """The bundled synthetic sample (for smoke tests of training)."""
    from vossegcli.sample import sample_paths

    paths = sample_paths()
    return _read_clip("sample", paths.video, sorted(paths.gt_dir.glob("*.png")))


# -- synthetic clips from ECSSD ------------------------------------------------------------------


class ObjectPool:
    """Images with one object mask each, for synthetic clips, loaded lazily: ECSSD (all 1000) and,
    with ``"duts"`` in ``sources``, the training part of DUTS-TR (6300 images; every tenth image is
    held out for the val-synth yardstick and never used here)."""

    SOURCES = ("ecssd", "duts")

    def __init__(self, root: Path, sources: tuple[str, ...] = ("ecssd",)) -> None:
        root = Path(root)
        unknown = [x for x in sources if x not in self.SOURCES]
        if unknown or not sources:
            raise ValueError(f"synthetic data sources must be among {self.SOURCES}, not {sources}")
        self.entries: list[tuple[Path, Path]] = []  # (image, mask)
        if "ecssd" in sources:
            ecssd = root / "ecssd" if (root / "ecssd").is_dir() else root
            images = sorted((ecssd / "images").glob("*.jpg"))
            if not images:
                raise InputError(f"{ecssd}: no ECSSD images (images/*.jpg); pass data='../shared/data'")
            self.entries += [(p, ecssd / "masks" / f"{p.stem}.png") for p in images]
        if "duts" in sources:
            from vossegcli.datasets.roots import duts_root, duts_split

            duts = duts_root(root)
            train_ids, _ = duts_split(duts)
            self.entries += [(duts / "images" / f"{i}.jpg", duts / "masks" / f"{i}.png") for i in train_ids]

    @property
    def images(self) -> list[Path]:
        return [image for image, _ in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def background(self, index: int, size: tuple[int, int]) -> np.ndarray:
        """Image ``index`` resized to cover (H + margin, W + margin) for panning."""
        h, w = size
        with Image.open(self.entries[index][0]) as im:
            im = im.convert("RGB")
            scale = max((h * 1.2) / im.height, (w * 1.2) / im.width)
            im = im.resize((math.ceil(im.width * scale), math.ceil(im.height * scale)), Image.BICUBIC)
            return np.asarray(im)

    def cutout(self, index: int) -> Cutout | None:
        return load_cutout(*self.entries[index])


def elastic_warp(obj: Cutout, rng: random.Random, strength: float) -> Cutout:
    """A smooth non-rigid deformation of the cut-out (a 4x4 grid of random displacements, bicubically
    interpolated; ``strength``: their size as a fraction of the object's size)."""
    import torch
    import torch.nn.functional as F

    h, w = obj.alpha.shape
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    coarse = (torch.rand((1, 2, 4, 4), generator=gen) * 2 - 1) * strength * 2
    flow = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    grid = torch.stack([xs, ys], dim=-1)[None] + flow
    rgba = torch.from_numpy(np.dstack([obj.rgb, (obj.alpha >= 0.5).astype(np.uint8) * 255])).permute(2, 0, 1)[None].float()
    out = F.grid_sample(rgba, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    out = out.permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
    return Cutout(np.ascontiguousarray(out[..., :3]), (out[..., 3] > 127).astype(np.float32))


def _motion_blur(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Blur ``image`` along (dx, dy) pixels: the average of copies shifted along the motion."""
    steps = int(min(max(abs(dx), abs(dy)), 24))
    if steps < 3:
        return image
    acc = np.zeros(image.shape, np.float32)
    for k in range(steps):
        f = k / (steps - 1) - 0.5
        acc += np.roll(image, (round(f * dy), round(f * dx)), axis=(0, 1))
    return (acc / steps).round().astype(np.uint8)


def synthetic_clip(pool: ObjectPool, rng: random.Random, num_frames: int = 3,
                   size: tuple[int, int] = (384, 512), max_objects: int = 2, name: str = "synthetic",
                   realistic: bool = False) -> Clip:
    """One synthetic clip: 1..max_objects pool objects moving over another pool image.

    ``realistic``: also what real video does to objects, so the refiner sees the target model's
    real failure modes - each object deforms smoothly frame to frame (non-rigid), may move fast
    with motion blur along its motion, and the lighting changes over the clip."""
    h, w = size
    bg = pool.background(rng.randrange(len(pool)), size)
    objects: list[Cutout] = []
    while len(objects) < rng.randint(1, max_objects):
        cut = pool.cutout(rng.randrange(len(pool)))
        if cut is not None:
            objects.append(cut)
    # Per object: start pose and per-frame motion (relative to the frame size).
    tracks = []
    for obj in objects:
        base = rng.uniform(0.25, 0.6) * min(h, w) / max(obj.rgb.shape[:2])
        fast = realistic and rng.random() < 0.3
        reach = 0.16 if fast else 0.08
        tracks.append({
            "c": (rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h),
            "v": (rng.uniform(-reach, reach) * w, rng.uniform(-reach, reach) * h),
            "s": base, "ds": rng.uniform(0.9, 1.1), "a": rng.uniform(-20, 20), "da": rng.uniform(-10, 10),
            "warp": rng.uniform(0.02, 0.06) if realistic else 0.0, "blur": fast,
        })
    pan = (rng.uniform(-0.04, 0.04) * w, rng.uniform(-0.04, 0.04) * h)
    gain0, gain1 = (rng.uniform(0.75, 1.25), rng.uniform(0.75, 1.25)) if realistic else (1.0, 1.0)
    frames, labels = [], []
    oy, ox = (bg.shape[0] - h) / 2, (bg.shape[1] - w) / 2
    for t in range(num_frames):
        y = int(np.clip(round(oy + pan[1] * t), 0, bg.shape[0] - h))
        x = int(np.clip(round(ox + pan[0] * t), 0, bg.shape[1] - w))
        canvas = bg[y:y + h, x:x + w].copy()
        lab = np.zeros((h, w), np.uint8)
        for oid, (obj, tr) in enumerate(zip(objects, tracks), start=1):
            shape = elastic_warp(obj, rng, tr["warp"]) if tr["warp"] and t > 0 else obj
            if tr["blur"] and t > 0:
                layer = np.zeros_like(canvas)
                layer_lab = np.zeros_like(lab)
                paste(layer, layer_lab, shape, 1, tr["c"][0] + tr["v"][0] * t, tr["c"][1] + tr["v"][1] * t,
                       tr["s"] * tr["ds"] ** t, tr["a"] + tr["da"] * t)
                cover = _motion_blur(layer_lab * 255, tr["v"][0], tr["v"][1]).astype(np.float32)[..., None] / 255
                colour = _motion_blur(layer, tr["v"][0], tr["v"][1]).astype(np.float32)
                mixed = canvas * (1 - cover) + colour  # premultiplied: the blurred layer over the canvas
                canvas = np.clip(mixed, 0, 255).round().astype(np.uint8)
                lab[cover[..., 0] >= 0.5] = oid
                continue
            paste(canvas, lab, shape, oid, tr["c"][0] + tr["v"][0] * t, tr["c"][1] + tr["v"][1] * t,
                   tr["s"] * tr["ds"] ** t, tr["a"] + tr["da"] * t)
        if realistic:
            gain = gain0 + (gain1 - gain0) * t / max(num_frames - 1, 1)
            canvas = np.clip(canvas.astype(np.float32) * gain, 0, 255).round().astype(np.uint8)
        frames.append(canvas)
        labels.append(lab)
    return Clip(name, frames, labels)
