"""A second ``--auto`` yardstick, ``auto-synth``: which object is *primary* when a single frame cannot tell.

12 clips of 16 frames (320×240 PNG folders) built from DUTS-TR's held-out tenth only (never used in
training): one object (the target) moves, scales and turns across a background cut from another
held-out image (a side its own object does not touch); every 4 frames a *different* held-out object
(a distractor, as large as the target) appears somewhere else. Only the target recurs through the
clip, so it is the primary object: the ground truth is the target alone. A single-frame saliency
model sees two equally salient objects; co-attention with reference frames should suppress the
distractors. Scored like the DAVIS yardstick: J and F over every frame, mean per clip, then over clips.

Clips are generated once into ``<cache>/auto-synth-v1`` (deterministic in the seed).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from vossegcli.datasets.roots import duts_root, duts_split
from vossegcli.io.palette import davis_palette, write_label_png

CLIPS = 12
FRAMES = 16
SIZE = (240, 320)  # (H, W)
VERSION = "auto-synth-v1"


def build_clips(data: Path, cache: Path, seed: int = 0) -> Path:
    """Write the clips (``clip-XX/frames/*.png``, ``clip-XX/gt/*.png``) once; returns their folder."""
    from vossegcli.datasets.cutouts import clean_background, load_cutout, paste, scale_for_share

    root = Path(cache) / VERSION
    if (root / "done").is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    duts = duts_root(data)
    _, held = duts_split(duts)
    images = [(duts / "images" / f"{i}.jpg", duts / "masks" / f"{i}.png") for i in held]
    rng = random.Random(seed)
    h, w = SIZE
    palette = davis_palette()

    def cutout():
        while True:
            cut = load_cutout(*images[rng.randrange(len(images))])
            if cut is not None:
                return cut

    for c in range(CLIPS):
        clip = root / f"clip-{c:02d}"
        (clip / "frames").mkdir(parents=True)
        (clip / "gt").mkdir()
        bg = None
        while bg is None:
            bg = clean_background(*images[rng.randrange(len(images))], SIZE, rng)
        target = cutout()
        share = rng.uniform(0.05, 0.2)
        start = np.array([rng.uniform(0.25, 0.75) * w, rng.uniform(0.3, 0.7) * h])
        end = np.array([rng.uniform(0.25, 0.75) * w, rng.uniform(0.3, 0.7) * h])
        s0, s1 = scale_for_share(target, share, SIZE), scale_for_share(target, share, SIZE) * rng.uniform(0.8, 1.25)
        a0, a1 = rng.uniform(-10, 10), rng.uniform(-10, 10)
        pan = (rng.randrange(bg.shape[0] - h + 1), rng.randrange(bg.shape[1] - w + 1))
        distractor = None
        for t in range(FRAMES):
            u = t / (FRAMES - 1)
            if t % 4 == 0:
                d = cutout()
                distractor = (d, rng.uniform(0.15, 0.85) * w, rng.uniform(0.2, 0.8) * h,
                              scale_for_share(d, share * rng.uniform(0.8, 1.25), SIZE), rng.uniform(-15, 15))
            y = int(round(pan[0] * (1 - 0.3 * u)))
            x = int(round(pan[1] * (1 - 0.3 * u)))
            canvas = bg[y:y + h, x:x + w].copy()
            labels = np.zeros((h, w), np.uint8)
            d, dx, dy, ds, da = distractor
            paste(canvas, labels, d, 2, dx, dy, ds, da)
            cx, cy = start + (end - start) * u
            paste(canvas, labels, target, 1, cx, cy, s0 + (s1 - s0) * u, a0 + (a1 - a0) * u)
            Image.fromarray(canvas).save(clip / "frames" / f"{t:05d}.png")
            write_label_png(clip / "gt" / f"{t:05d}.png", (labels == 1).astype(np.uint8), palette)
    (root / "done").write_text("ok\n")
    return root


def run_clips(data: Path, cache: Path, out_root: Path, variants: dict, device: str = "cpu", log=print) -> list:
    """Each variant (name → AutoConfig) over every clip; AutoScore per variant (same fields as val)."""
    from vossegcli.eval.unsupervised import AutoScore, score_folder
    from vossegcli.run.auto import segment_auto

    root = build_clips(data, cache)
    results = []
    for name, cfg in variants.items():
        score = AutoScore(name, cfg.as_dict())
        for clip in sorted(p for p in root.iterdir() if p.is_dir()):
            out = Path(out_root) / name / clip.name
            run = segment_auto(clip / "frames", out, cfg, device=device, force=True)
            j, f, n = score_folder(out, clip / "gt")
            score.per_sequence[clip.name] = {"J": round(j, 4), "F": round(f, 4), "frames": n,
                                             "fps": round(run.fps, 3) if run.fps == run.fps else None}
            shutil.rmtree(out, ignore_errors=True)
        d = score.to_dict()
        log(f"auto-synth {name}: J {d['J']:.2f} F {d['F']:.2f} J&F {d['J&F']:.2f}")
        results.append(score)
    return results
