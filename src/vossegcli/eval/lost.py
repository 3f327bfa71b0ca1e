"""`val-lost`: clips where objects leave, vanish behind something, cut away or have a twin — the
yardstick of the presence decisions, re-identification and ``--bidirectional``.

Scenarios (each clip a frame folder + palette-PNG ground truth, rendered once into a cache):

* ``cut-<seq>``: a davis16-train sequence, then :data:`CUT_FRAMES` frames of another sequence of
  the same split (the object is absent: empty ground truth), then the first sequence again — as the
  independently measured scene-cut set. Built from the ``val`` split for measuring and from the
  ``train`` split (``calibration=True``) for choosing thresholds.
* ``exit-NN``: a synthetic object walks out of the frame, stays out, and comes back in from the
  other side.
* ``occlude-NN``: an opaque panel slides over the object, hides it completely for a while, and
  slides away.
* ``twins-NN``: two labelled objects cut from the same image (one mirrored) pass close by each
  other; in odd clips the second object is given only at frame :data:`LATE_START` (its ground
  truth starts there), as a user adding an object part-way would.

Synthetic clips use only held-out DUTS-TR images (as ``val-synth``). :func:`absence_stats` scores
what J&F does not: the fraction of frames where a started object is absent from the ground truth
and predicted empty, and the re-identification delay after each return.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vossegcli.datasets.cutouts import Cutout, DutsPool, mirrored
from vossegcli.datasets.scenes import HEIGHT, WIDTH, Track, composite_frame, panned_background
from vossegcli.datasets.clips import Clip as BaseClip
from vossegcli.datasets.roots import duts_root
from vossegcli.files import atomic_write
from vossegcli.io.palette import write_label_png
from vossegcli.io.video import FrameReader

GENERATOR_VERSION = 1
SYNTH_SCENARIOS = ("exit", "occlude", "twins")
CLIPS_PER_SCENARIO = 6
SYNTH_FRAMES = 40
#: Frames of the other scene inserted by a cut clip, and the original frames kept before and after.
CUT_FRAMES, CUT_BEFORE, CUT_AFTER = 20, 30, 30
#: The frame where the second twin is given in odd ``twins`` clips.
LATE_START = 8


@dataclass
class Clip(BaseClip):
    #: frame → ids given there (the masks the engine receives are the ground truth of those ids)
    starts: dict[int, list[int]] = field(default_factory=dict)


def _davis_frames(root: Path, seq: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    reader = FrameReader(root / "videos" / f"{seq}.mp4")
    try:
        frames = [f.image for f in reader.frames()]
    finally:
        reader.close()
    masks = sorted((root / "masks" / seq).glob("*.png"))
    labels = [(np.asarray(Image.open(m)) > 0).astype(np.uint8) for m in masks]
    n = min(len(frames), len(labels))
    return frames[:n], labels[:n]


def cut_clips(davis_root: Path, split: str) -> list[Clip]:
    """One cut clip per sequence of ``split``: its first :data:`CUT_BEFORE` frames, the middle
    :data:`CUT_FRAMES` frames of the next sequence (cyclically), then :data:`CUT_AFTER` more."""
    seqs = json.loads((davis_root / "splits.json").read_text())[split]
    clips = []
    for k, seq in enumerate(seqs):
        frames, labels = _davis_frames(davis_root, seq)
        other, _ = _davis_frames(davis_root, seqs[(k + 1) % len(seqs)])
        before = min(CUT_BEFORE, len(frames) // 2)
        after = min(CUT_AFTER, len(frames) - before)
        mid = max(0, len(other) // 2 - CUT_FRAMES // 2)
        h, w = frames[0].shape[:2]
        inserted = [np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.BILINEAR)) if f.shape[:2] != (h, w) else f
                    for f in other[mid:mid + CUT_FRAMES]]
        empty = np.zeros((h, w), np.uint8)
        clips.append(Clip(
            f"cut-{seq}",
            frames[:before] + inserted + frames[before:before + after],
            labels[:before] + [empty] * len(inserted) + labels[before:before + after],
            {0: [1]},
        ))
    return clips


def _panel(pool: DutsPool, rng: random.Random, w: int, h: int) -> Cutout:
    """An opaque rectangle cut from a held-out image."""
    im = pool.image(rng.choice(pool.ids))
    scale = max(w / im.width, h / im.height) * 1.05
    im = im.resize((math.ceil(im.width * scale), math.ceil(im.height * scale)), Image.Resampling.BILINEAR)
    rgb = np.ascontiguousarray(np.asarray(im)[:h, :w])
    return Cutout(rgb, np.ones(rgb.shape[:2], np.float32))


def _cut_of(pool: DutsPool, rng: random.Random) -> Cutout:
    while True:
        c = pool.cutout(rng.choice(pool.ids))
        if c is not None and 0.4 < c.rgb.shape[1] / c.rgb.shape[0] < 2.5:
            return c


def synthetic_clip(pool: DutsPool, scenario: str, index: int) -> Clip:
    """Clip ``index`` of ``scenario`` (deterministic)."""
    n = SYNTH_FRAMES
    rng = random.Random(104729 * (SYNTH_SCENARIOS.index(scenario) + 1) + index)
    background = panned_background(pool, rng.choice(pool.ids), n, rng)
    h0 = HEIGHT * rng.uniform(0.32, 0.45)
    cut = _cut_of(pool, rng)
    width = h0 * cut.rgb.shape[1] / cut.rgb.shape[0]
    y = HEIGHT * rng.uniform(0.4, 0.6)
    starts: dict[int, list[int]] = {0: [1]}
    if scenario == "exit":
        # Out through the left edge by frame ~10, out of view for ~14 frames, back from the right.
        speed = (0.35 * WIDTH + width) / 10
        xs = [0.35 * WIDTH - speed * t for t in range(11)]
        xs += [-width] * 13
        xs += [WIDTH + width / 2 - speed * (t + 1) for t in range(n - len(xs))]
        tracks = [Track(cut, 1, [(x, y) for x in xs], [h0] * n, [0.0] * n)]
    elif scenario == "occlude":
        path = [(WIDTH * (0.4 + 0.2 * t / (n - 1)), y) for t in range(n)]
        obj = Track(cut, 1, path, [h0] * n, [0.0] * n)
        pw, ph = int(width * 1.6 + 60), int(min(HEIGHT, h0 * 1.6 + 40))
        panel = _panel(pool, rng, pw, ph)
        # Slides in from the right over 8 frames, covers the object for ~14, slides out to the left.
        px = [WIDTH + pw / 2 - (WIDTH + pw / 2 - path[min(t, n - 1)][0]) * min(t / 8, 1.0) for t in range(22)]
        px += [path[21][0] - (path[21][0] + pw / 2 + 10) * min((t + 1) / 8, 1.0) for t in range(n - 22)]
        tracks = [obj, Track(panel, 0, [(x, y) for x in px], [float(ph)] * n, [0.0] * n)]
    elif scenario == "twins":
        twin = mirrored(cut)
        a = [(WIDTH * (0.2 + 0.45 * t / (n - 1)), y - 10) for t in range(n)]
        b = [(WIDTH * (0.8 - 0.45 * t / (n - 1)), y + 10) for t in range(n)]
        tracks = [Track(cut, 1, a, [h0] * n, [0.0] * n), Track(twin, 2, b, [h0 * 0.95] * n, [0.0] * n)]
        starts = {0: [1, 2]} if index % 2 == 0 else {0: [1], LATE_START: [2]}
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    frames, labels = [], []
    for t in range(n):
        canvas, label = composite_frame(background[t], tracks, t)
        if scenario == "twins" and index % 2 == 1 and t < LATE_START:
            label[label == 2] = 0  # not given yet: not scored yet
        frames.append(np.clip(canvas, 0, 255).round().astype(np.uint8))
        labels.append(label)
    return Clip(f"{scenario}-{index:02d}", frames, labels, starts)


def default_cache(calibration: bool = False) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vosseg" / f"val-lost{'-calib' if calibration else ''}-v{GENERATOR_VERSION}"


def build_val_lost(data: Path, cache: Path | None = None, calibration: bool = False) -> tuple[Path, dict[str, dict]]:
    """Render (once) every clip into ``cache`` (``frames/<clip>/NNNNN.jpg``, ``masks/<clip>/NNNNN.png``)
    and return (cache, {clip: {"starts": {frame: [ids]}}}). ``calibration``: cut clips from the
    ``train`` split and synthetic clips with other seeds, for choosing thresholds."""
    from vossegcli.datasets.roots import davis16_root

    cache = Path(cache) if cache is not None else default_cache(calibration)
    stamp = cache / "manifest.json"
    if stamp.is_file():
        blob = json.loads(stamp.read_text())
        if blob.get("generator_version") == GENERATOR_VERSION:
            return cache, blob["clips"]
    pool = DutsPool(duts_root(data))
    clips: dict[str, dict] = {}
    davis = davis16_root(data)
    rendered = cut_clips(davis, "train" if calibration else "val")
    offset = 1000 if calibration else 0
    for scenario in SYNTH_SCENARIOS:
        rendered += [synthetic_clip(pool, scenario, offset + i) for i in range(CLIPS_PER_SCENARIO)]
    for clip in rendered:
        fdir, mdir = cache / "frames" / clip.name, cache / "masks" / clip.name
        fdir.mkdir(parents=True, exist_ok=True)
        mdir.mkdir(parents=True, exist_ok=True)
        for t, (image, label) in enumerate(zip(clip.frames, clip.labels)):
            Image.fromarray(image).save(fdir / f"{t:05d}.jpg", quality=95)
            write_label_png(mdir / f"{t:05d}.png", label, None)
        starts = {}
        for frame, ids in clip.starts.items():
            given = np.where(np.isin(clip.labels[frame], ids), clip.labels[frame], 0).astype(np.uint8)
            path = cache / "starts" / clip.name / f"{frame:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_label_png(path, given, None)
            starts[str(frame)] = ids
        clips[clip.name] = {"starts": starts, "frames": len(clip.frames)}
    atomic_write(stamp, lambda handle: handle.write(json.dumps(
        {"generator_version": GENERATOR_VERSION, "calibration": calibration, "clips": clips}, indent=1).encode()))
    return cache, clips


def absence_stats(pred_dir: Path, gt_dir: Path, starts: dict[str, list[int]]) -> dict:
    """Per clip: frames where a started object is absent from the ground truth (``absent``) and of
    those predicted empty (``empty``), frames where it is present and the prediction has none of it
    (``missed``), and per return after an absence the frames until IoU ≥ 0.5 (``delays``; None when
    never within the clip)."""
    first = {i: int(f) for f, ids in starts.items() for i in ids}
    gts = sorted(Path(gt_dir).glob("*.png"))
    absent = empty = missed = present = 0
    delays: list[int | None] = []
    waiting: dict[int, int] = {}  # id → frame the object came back, while not yet re-found
    was_absent: dict[int, bool] = {}
    for t, gt_path in enumerate(gts):
        gt = np.asarray(Image.open(gt_path))
        pred = np.asarray(Image.open(Path(pred_dir) / gt_path.name))
        for obj, start in first.items():
            if t <= start:
                continue
            g, p = gt == obj, pred == obj
            if not g.any():
                absent += 1
                empty += int(not p.any())
                was_absent[obj] = True
                if obj in waiting:
                    delays.append(None)
                    del waiting[obj]
                continue
            present += 1
            missed += int(not p.any())
            if was_absent.pop(obj, False):
                waiting[obj] = t
            if obj in waiting:
                iou = (g & p).sum() / max((g | p).sum(), 1)
                if iou >= 0.5:
                    delays.append(t - waiting.pop(obj))
    delays += [None] * len(waiting)
    return {"absent": absent, "empty": empty, "present": present, "missed": missed, "delays": delays}


def run_val_lost(data: Path, config, out_root: Path, *, calibration: bool = False, device: str = "cpu",
                 bidirectional: bool = False, scenarios: tuple[str, ...] | None = None, progress=None) -> dict:
    """Segment every val-lost clip (as ``vosseg segment`` does, given masks at their start frames)
    into ``out_root/<clip>`` and score it: J&F (all objects, scored from their first frame) overall
    and per scenario, the fraction of absent frames predicted empty, re-identification delays,
    and engine FPS. ``scenarios``: only the clips of these scenarios (e.g. ("twins",))."""
    from vossegcli.eval.davis import evaluate
    from vossegcli.run.segment import segment

    cache, clips = build_val_lost(data, calibration=calibration)
    if scenarios:
        clips = {k: v for k, v in clips.items() if k.split("-", 1)[0] in scenarios}
    fps: dict[str, float] = {}
    stats: dict[str, dict] = {}
    for name, meta in clips.items():
        masks = [f"{f}:{cache / 'starts' / name / f'{int(f):05d}.png'}" for f in meta["starts"]]
        run = segment(cache / "frames" / name, masks, Path(out_root) / name, device=device, config=config, force=True,
                      bidirectional=bidirectional)
        fps[name] = run.fps
        stats[name] = absence_stats(Path(out_root) / name, cache / "masks" / name, meta["starts"])
        if progress:
            progress(name)
    scores = evaluate(Path(out_root), cache / "masks", sequences=list(clips), objects="all")
    per = scores.per_sequence()
    by: dict[str, list[float]] = {}
    for name, (_, _, jf) in per.items():
        by.setdefault(name.split("-", 1)[0], []).append(jf)
    absent = sum(s["absent"] for s in stats.values())
    delays = [d for s in stats.values() for d in s["delays"]]
    found = [d for d in delays if d is not None]
    return {
        "J&F": round(100 * scores.jf_mean, 2),
        "by_scenario": {k: round(100 * sum(v) / len(v), 2) for k, v in by.items()},
        "absent_frames": absent,
        "absent_predicted_empty": round(100 * sum(s["empty"] for s in stats.values()) / max(absent, 1), 1),
        "present_frames_missed": round(100 * sum(s["missed"] for s in stats.values())
                                       / max(sum(s["present"] for s in stats.values()), 1), 1),
        "returns": len(delays),
        "refound": len(found),
        "mean_refind_delay": round(sum(found) / len(found), 2) if found else None,
        "fps_mean": round(sum(fps.values()) / len(fps), 2),
        "per_clip": {k: {"J&F": round(100 * v[2], 2), **stats[k]} for k, v in per.items()},
    }
