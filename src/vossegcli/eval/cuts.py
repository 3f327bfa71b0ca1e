"""The scene-cut yardstick: false cuts on continuous clips, misses on joined ones.

Per frame, what the engine's cut detector sees (:func:`clip_signals`: the global stride-32
descriptor from the engine's backbone at its precision, and the colour histogram); a joined clip
is shots of several sequences back to back (:func:`joined_clips`), so its consecutive-frame
signals are the shots' own plus one pair per join, and a rule is scored on stored signals
(:func:`score_rule`) without running the backbone again. ``tools/cut_yardstick.py`` runs it.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from vossegcli.engine.backbone import Backbone
from vossegcli.engine.device import cpu_has_native_bf16
from vossegcli.engine.presence import frame_descriptor
from vossegcli.engine.scene_cut import CutRule, colour_distance, colour_histogram, is_cut
from vossegcli.io.video import open_frames
from vossegcli.run.inputs import internal_size, resize_image


class CutDetector:
    """The engine's decision, frame by frame, over stored signals (``colour=False``: the descriptor alone)."""

    def __init__(self, rule: CutRule = CutRule(), colour: bool = True) -> None:
        self.rule, self.colour, self.prev = rule, colour, None

    def update(self, desc: torch.Tensor, hist: torch.Tensor) -> bool:
        prev, self.prev = self.prev, (desc, hist)
        if prev is None:
            return False
        sim = float(desc @ prev[0])
        if not self.colour:
            return sim < self.rule.descriptor_cut
        return is_cut(sim, float(colour_distance(hist, prev[1])), self.rule)


def frame_signals(images: Iterable[np.ndarray], backbone: Backbone) -> dict:
    """{'desc': (T, C) descriptors, 'hist': (T, B) colour histograms} of (H, W, 3) uint8 RGB frames at
    the engine's size, computed as the engine does (backbone in bf16 where the CPU has it natively)."""
    descs, hists = [], []
    dtype = torch.bfloat16 if cpu_has_native_bf16() else None
    with torch.inference_mode():
        for image in images:
            rgb = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
            with torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext():
                feats = backbone(rgb)
            descs.append(frame_descriptor(feats.s32[0]))
            hists.append(colour_histogram(rgb[0]))
    return {"desc": torch.stack(descs), "hist": torch.stack(hists)}


def clip_signals(path: Path, backbone: Backbone, max_size: int = 960) -> dict:
    """:func:`frame_signals` of one video or frame folder, scaled as ``vosseg segment --max-size`` does."""
    with open_frames(path) as reader:
        size = internal_size(reader.info.width, reader.info.height, max_size)
        images = (f.image if (f.image.shape[1], f.image.shape[0]) == size else resize_image(f.image, size)
                  for f in reader)
        return frame_signals(images, backbone)


def cuts_in(signals: dict, rule: CutRule = CutRule()) -> list[int]:
    """The frames of one clip the engine's rule calls scene cuts."""
    detector = CutDetector(rule)
    return [t for t in range(signals["desc"].shape[0]) if detector.update(signals["desc"][t], signals["hist"][t])]


def joined_clips(clips: dict[str, dict], count: int, seed: int = 0) -> list[list[tuple[str, int, int]]]:
    """``count`` joined clips: 3–7 shots of 15–80 frames from davis16-train sequences (a shot may
    return to a sequence used earlier in the clip, as edited footage does)."""
    rng = random.Random(seed)
    davis = [n for n in clips if n.startswith("davis/")]
    out = []
    for _ in range(count):
        shots = []
        for k in range(rng.randint(3, 7)):
            name = rng.choice(shots)[0] if shots and rng.random() < 0.2 else rng.choice(davis)
            if shots and name == shots[-1][0]:
                name = rng.choice([d for d in davis if d != name])
            total = clips[name]["desc"].shape[0]
            length = min(rng.randint(15, 80), total)
            start = rng.randint(0, total - length)
            shots.append((name, start, start + length))
        out.append(shots)
    return out


def score_rule(clips: dict[str, dict], joined, make_detector) -> dict:
    false_frames, false_clips, continuous = 0, [], 0
    for name, sig in clips.items():
        det = make_detector()
        cuts = [t for t in range(sig["desc"].shape[0]) if det.update(sig["desc"][t], sig["hist"][t])]
        continuous += 1
        if cuts:
            false_frames += len(cuts)
            false_clips.append(f"{name}@{','.join(map(str, cuts))}")
    joins = found = extra = 0
    for shots in joined:
        det = make_detector()
        first = True
        for name, a, b in shots:
            sig = clips[name]
            for t in range(a, b):
                cut = det.update(sig["desc"][t], sig["hist"][t])
                if t == a and not first:
                    joins += 1
                    found += int(cut)
                elif cut:
                    extra += 1
            first = False
    return {"false_cuts": false_frames, "clips_with_false_cuts": len(false_clips), "continuous_clips": continuous,
            "false_examples": false_clips[:12], "joins": joins, "joins_found": found,
            "joins_missed": joins - found, "false_cuts_in_joined": extra}
