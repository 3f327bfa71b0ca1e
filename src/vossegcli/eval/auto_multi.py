"""`auto-multi`: the yardstick of ``--auto`` with several objects (no mask given).

Clips (frame folders + palette-PNG ground truth, rendered once into a cache):

* ``multi-NN``: 2–5 held-out DUTS-TR objects (the tenth never used in training) moving over a
  panned held-out background, each with its own id: some cross and occlude each other, some enter
  the view part-way or leave it, and every third clip holds a look-alike pair (the nearest held-out
  object by colour and shape);
* ``pair-<a>-<b>``: two real objects in one video — davis16-train ``val`` sequence *a* with the
  object of sequence *b* cut out with its masks, scaled to 60 % and pasted in front (every
  ``val`` sequence with the next one).

Scored with the DAVIS-2017 **unsupervised** protocol (:func:`score_clip`): every predicted id is a
candidate for every ground-truth object; J and F are averaged over **all** frames for each pair;
the predicted ids are assigned one-to-one to the ground-truth objects by the Hungarian algorithm
maximizing J&F over the whole clip, and a ground-truth object left without a prediction scores 0.
Also reported: how many ground-truth objects each clip has and how many it was given predictions
for with J > 0.5 ("found").
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vossegcli.datasets.clips import Clip
from vossegcli.eval.assignment import best_assignment
from vossegcli.eval.metrics import boundary_measure, region_similarity
from vossegcli.datasets.cutouts import DutsPool
from vossegcli.datasets.roots import duts_root
from vossegcli.datasets.scenes import HEIGHT, WIDTH, Track, composite_frame, linear_path, panned_background
from vossegcli.eval.synth import default_cache as synth_cache
from vossegcli.files import atomic_write
from vossegcli.io.palette import VOID_ID, davis_palette, read_label_png, write_label_png

GENERATOR_VERSION = 1
SYNTH_CLIPS = 12
FRAMES = 24
PAIR_FRAMES = 40
PAIR_SIZE = (480, 270)  # (W, H): davis 854×480 halved, so the yardstick runs in minutes on a CPU


def _entering(start_x: float, end_x: float, y: float, frames: int, enter_at: int, margin: float) -> list[tuple[float, float]]:
    """Off the left or right edge until ``enter_at``, then walking in to ``end_x``."""
    side = -margin if start_x < WIDTH / 2 else WIDTH + margin
    path = [(side, y)] * enter_at
    return path + linear_path((side, y), (end_x, y), frames - enter_at)


def multi_clip(pool: DutsPool, index: int, frames: int = FRAMES) -> Clip:
    """Synthetic clip ``index``: 2–5 labelled held-out objects (deterministic in ``index``)."""
    rng = random.Random(104729 + index)
    for _attempt in range(50):
        n = rng.randint(2, 5)
        keys: list[str] = []
        while len(keys) < n:
            key = rng.choice(pool.ids)
            if key not in keys and pool.cutout(key) is not None:
                keys.append(key)
        if index % 3 == 2:  # a look-alike pair
            twin = next((k for k in pool.lookalikes(keys[0], 3) if k not in keys and pool.cutout(k) is not None), None)
            if twin is not None:
                keys[1] = twin
        tracks = []
        for i, key in enumerate(keys):
            h = HEIGHT * rng.uniform(0.22, 0.4)
            y = HEIGHT * rng.uniform(0.3, 0.7)
            a = (WIDTH * rng.uniform(0.1, 0.9), y)
            b = (WIDTH * rng.uniform(0.1, 0.9), HEIGHT * rng.uniform(0.3, 0.7))
            if i > 0 and rng.random() < 0.3:  # enters part-way
                path = _entering(a[0], b[0], y, frames, rng.randint(4, frames // 2), h)
            else:
                path = linear_path(a, b, frames)
            angles = [6 * math.sin(rng.uniform(0, 6.28) + 0.2 * t) for t in range(frames)]
            tracks.append(Track(pool.cutout(key), i + 1, path, [h] * frames, angles))
        background = panned_background(pool, rng.choice(pool.ids), frames, rng)
        images, labels = [], []
        for t in range(frames):
            canvas, label = composite_frame(background[t], tracks, t)
            images.append(np.clip(canvas, 0, 255).round().astype(np.uint8))
            labels.append(label)
        visible = [i for i in range(1, n + 1) if (labels[0] == i).sum() >= 400]
        if len(visible) >= 2:  # at least two objects in view from the start
            return Clip(f"multi-{index:02d}", images, labels)
    raise RuntimeError(f"auto-multi: no usable multi clip {index} in 50 draws")


def pair_clip(root: Path, a: str, b: str, frames: int = PAIR_FRAMES) -> Clip:
    """Sequence ``a`` (object 1) with sequence ``b``'s object cut out, scaled to 60 % and pasted in
    front (object 2), at :data:`PAIR_SIZE`; ``frames`` frames."""
    from vossegcli.io.video import open_frames

    def load(seq: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        imgs, labs = [], []
        masks = sorted((root / "masks" / seq).glob("*.png"))
        with open_frames(root / "videos" / f"{seq}.mp4") as reader:
            for t, frame in enumerate(reader):
                if t >= min(frames, len(masks)):
                    break
                imgs.append(frame.image)
                labs.append(read_label_png(masks[t]) > 0)
        return imgs, labs

    ia, la = load(a)
    ib, lb = load(b)
    n = min(len(ia), len(ib))
    out_frames, out_labels = [], []
    for t in range(n):
        base = np.asarray(Image.fromarray(ia[t]).resize(PAIR_SIZE, Image.Resampling.BILINEAR))
        mask_a = np.asarray(Image.fromarray(la[t].astype(np.uint8) * 255).resize(PAIR_SIZE, Image.Resampling.NEAREST)) > 127
        small = (round(PAIR_SIZE[0] * 0.6), round(PAIR_SIZE[1] * 0.6))
        obj = np.asarray(Image.fromarray(ib[t]).resize(small, Image.Resampling.BILINEAR))
        mask_b = np.asarray(Image.fromarray(lb[t].astype(np.uint8) * 255).resize(small, Image.Resampling.NEAREST)) > 127
        x0, y0 = PAIR_SIZE[0] - small[0], PAIR_SIZE[1] - small[1]  # pasted at the bottom-right corner
        frame = base.copy()
        region = frame[y0:y0 + small[1], x0:x0 + small[0]]
        region[mask_b] = obj[mask_b]
        label = mask_a.astype(np.uint8)
        label[y0:y0 + small[1], x0:x0 + small[0]][mask_b] = 2
        out_frames.append(frame)
        out_labels.append(label)
    return Clip(f"pair-{a}-{b}", out_frames, out_labels)


def default_cache() -> Path:
    return synth_cache().parent / f"auto-multi-v{GENERATOR_VERSION}"


def build_auto_multi(data: Path, cache: Path | None = None) -> tuple[Path, list[str]]:
    """Render (once) every auto-multi clip into ``cache``: ``frames/<clip>/NNNNN.png`` and palette
    ``masks/<clip>/NNNNN.png``. Returns the cache and the clip names."""
    from vossegcli.datasets.roots import davis16_root, split_sequences

    cache = Path(cache) if cache is not None else default_cache()
    root = davis16_root(data)
    val = split_sequences(root, "val")
    names = [f"multi-{i:02d}" for i in range(SYNTH_CLIPS)] + [f"pair-{a}-{b}" for a, b in zip(val, val[1:] + val[:1])]
    stamp = cache / "manifest.json"
    expected = {"generator_version": GENERATOR_VERSION, "clips": names}
    if stamp.is_file() and json.loads(stamp.read_text()) == expected:
        return cache, names
    pool = DutsPool(duts_root(data))
    palette = davis_palette()
    for name in names:
        if name.startswith("multi-"):
            clip = multi_clip(pool, int(name.split("-")[1]))
        else:
            a, b = _split_pair(name, val)
            clip = pair_clip(root, a, b)
        fdir, mdir = cache / "frames" / name, cache / "masks" / name
        fdir.mkdir(parents=True, exist_ok=True)
        mdir.mkdir(parents=True, exist_ok=True)
        for t, (image, label) in enumerate(zip(clip.frames, clip.labels)):
            Image.fromarray(image).save(fdir / f"{t:05d}.png")
            write_label_png(mdir / f"{t:05d}.png", label, palette)
    atomic_write(stamp, lambda handle: handle.write(json.dumps(expected, indent=1).encode()))
    return cache, names


def _split_pair(name: str, val: list[str]) -> tuple[str, str]:
    """``pair-<a>-<b>`` where sequence names contain dashes: the split that names two val sequences."""
    rest = name[len("pair-"):]
    for a in val:
        if rest.startswith(a + "-") and rest[len(a) + 1:] in val:
            return a, rest[len(a) + 1:]
    raise ValueError(f"{name}: not a pair of val sequences")


@dataclass
class ClipScore:
    """One clip under the unsupervised protocol (values in [0, 1])."""

    objects: int  #: ground-truth objects
    predicted: int  #: predicted ids
    found: int  #: ground-truth objects whose assigned prediction has J > 0.5
    j: list[float] = field(default_factory=list)  #: per ground-truth object, J of its assigned prediction (0: none)
    f: list[float] = field(default_factory=list)

    @property
    def jf(self) -> float:
        return float(np.mean([(a + b) / 2 for a, b in zip(self.j, self.f)])) if self.j else 0.0


def score_clip(pred_dir: Path, gt_dir: Path) -> ClipScore:
    """The DAVIS-2017 unsupervised protocol on one clip (see the module docstring)."""
    gt_paths = sorted(Path(gt_dir).glob("*.png"))
    gts = [read_label_png(p) for p in gt_paths]
    preds = []
    for p in gt_paths:
        q = Path(pred_dir) / p.name
        preds.append(read_label_png(q) if q.is_file() else np.zeros_like(gts[0]))
    gt_ids = sorted({int(i) for g in gts for i in np.unique(g) if i not in (0, VOID_ID)})
    pred_ids = sorted({int(i) for p in preds for i in np.unique(p) if i not in (0, VOID_ID)})
    j = np.zeros((len(gt_ids), len(pred_ids)))
    f = np.zeros((len(gt_ids), len(pred_ids)))
    for a, g in enumerate(gt_ids):
        for b, p in enumerate(pred_ids):
            js = [region_similarity(pr == p, gt == g) for pr, gt in zip(preds, gts)]
            fs = [boundary_measure(pr == p, gt == g) for pr, gt in zip(preds, gts)]
            j[a, b], f[a, b] = np.mean(js), np.mean(fs)
    pairs = best_assignment((j + f) / 2)
    jj, ff = [0.0] * len(gt_ids), [0.0] * len(gt_ids)
    for a, b in pairs:
        jj[a], ff[a] = float(j[a, b]), float(f[a, b])
    return ClipScore(len(gt_ids), len(pred_ids), sum(1 for v in jj if v > 0.5), jj, ff)


def summarize(scores: dict[str, ClipScore], fps: dict[str, float]) -> dict:
    """Means over clips (J, F, J&F in percent), objects found vs present, per clip."""
    js = [np.mean(s.j) for s in scores.values()]
    fs = [np.mean(s.f) for s in scores.values()]
    return {
        "J": round(100 * float(np.mean(js)), 2), "F": round(100 * float(np.mean(fs)), 2),
        "J&F": round(100 * float(np.mean([(a + b) / 2 for a, b in zip(js, fs)])), 2),
        "objects_present": sum(s.objects for s in scores.values()),
        "objects_found": sum(s.found for s in scores.values()),
        "ids_predicted": sum(s.predicted for s in scores.values()),
        "wall_fps_mean": round(float(np.mean(list(fps.values()))), 2) if fps else None,
        "per_clip": {k: {"J&F": round(100 * s.jf, 2), "objects": s.objects, "found": s.found, "predicted": s.predicted}
                     for k, s in scores.items()},
    }


def run_auto_multi(data: Path, out_root: Path, auto, *, objects: int | None = None, device: str = "cpu",
                   log=print) -> dict:
    """Segment every auto-multi clip with ``--auto`` (``objects``: at most that many objects; None:
    today's single primary object) into ``out_root/<clip>`` and score it."""
    from vossegcli.run.auto import segment_auto

    cache, names = build_auto_multi(data)
    scores, fps = {}, {}
    for name in names:
        t0 = time.perf_counter()
        kwargs = {"objects": objects} if objects is not None else {}
        run = segment_auto(cache / "frames" / name, Path(out_root) / name, auto, device=device, force=True, **kwargs)
        scores[name] = score_clip(Path(out_root) / name, cache / "masks" / name)
        fps[name] = run.frames / max(time.perf_counter() - t0, 1e-9)
        log(f"{name}: J&F {100 * scores[name].jf:.1f}, {scores[name].found}/{scores[name].objects} found, "
            f"{scores[name].predicted} id(s)")
    return summarize(scores, fps)
