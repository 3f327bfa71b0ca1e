"""The ``--auto`` yardstick: unsupervised VOS on a davis16-train split (DAVIS-2016 protocol).

No mask is given. Each sequence goes through :func:`vossegcli.run.auto.segment_auto` — the path of
``vosseg segment --auto`` — and the written PNGs are scored against the whole foreground of the
ground truth (everything non-zero is one object): J (region IoU) and F (boundary F-measure,
tolerance 0.008 of the diagonal) on **every** frame — the unsupervised protocol evaluates all
frames, unlike the semi-supervised one, which drops the first and the last. Means per sequence, then
over sequences (DAVIS's "mean"). FPS: frames / engine time per sequence, averaged over sequences; in
seed mode the proposal (reference pass and seed window) and the engine set-up are included, in cosnet
mode the reference pass (N backbone passes while the video is decoded once) is not.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vossegcli.engine.config import SegmenterConfig
from vossegcli.eval.metrics import boundary_measure, region_similarity
from vossegcli.datasets.roots import davis16_root, split_sequences
from vossegcli.io.palette import VOID_ID, read_label_png
from vossegcli.run.auto import AutoConfig, segment_auto


@dataclass
class AutoScore:
    variant: str
    config: dict
    per_sequence: dict[str, dict] = field(default_factory=dict)

    def mean(self, key: str) -> float:
        values = [s[key] for s in self.per_sequence.values() if s.get(key) is not None]
        return float(np.nanmean(values)) if values else float("nan")

    def to_dict(self) -> dict:
        return {
            "variant": self.variant, "J": round(100 * self.mean("J"), 2), "F": round(100 * self.mean("F"), 2),
            "J&F": round(100 * (self.mean("J") + self.mean("F")) / 2, 2),
            "fps_mean_over_sequences": round(self.mean("fps"), 3), "config": self.config,
            "per_sequence": self.per_sequence,
        }


def score_folder(pred_dir: Path, gt_dir: Path) -> tuple[float, float, int]:
    """Mean J and F over every ground-truth frame (foreground = any id but 0 and void)."""
    js, fs = [], []
    for gt_path in sorted(Path(gt_dir).glob("*.png")):
        gt = read_label_png(gt_path)
        gt = (gt > 0) & (gt != VOID_ID)
        pred_path = Path(pred_dir) / gt_path.name
        pred = read_label_png(pred_path) > 0 if pred_path.is_file() else np.zeros_like(gt)
        js.append(region_similarity(pred, gt))
        fs.append(boundary_measure(pred, gt))
    return float(np.mean(js)), float(np.mean(fs)), len(js)


def run_split(data: Path, out_root: Path, variants: dict[str, AutoConfig], *, split: str = "val",
              device: str = "cpu", sequences: list[str] | None = None, keep: bool = False,
              log: Callable[[str], None] = print, config: SegmenterConfig | None = None) -> list[AutoScore]:
    """Run each ``--auto`` variant on the split's sequences (``config``: the engine's settings,
    default :class:`SegmenterConfig`) and score every frame."""
    root = davis16_root(data)
    names = sequences or split_sequences(root, split)
    results = []
    for variant, cfg in variants.items():
        score = AutoScore(variant, cfg.as_dict())
        for name in names:
            out = Path(out_root) / variant / name
            t0 = time.perf_counter()
            run = segment_auto(root / "videos" / f"{name}.mp4", out, cfg, device=device, force=True, config=config)
            wall = time.perf_counter() - t0
            j, f, n = score_folder(out, root / "masks" / name)
            seconds = run.engine_seconds + (run.auto or {}).get("seconds", 0.0) if cfg.mode == "seed" else run.engine_seconds
            score.per_sequence[name] = {
                "J": round(j, 4), "F": round(f, 4), "frames": n, "fps": round(run.frames / seconds, 3) if seconds else None,
                "wall_s": round(wall, 2), **({k: run.auto[k] for k in ("seed_frame", "confidence", "references")
                                            if k in run.auto} if run.auto else {}),
            }
            log(f"{variant} {name}: J {100 * j:.1f} F {100 * f:.1f} ({n} frames, {wall:.0f} s)")
            if not keep:
                shutil.rmtree(out, ignore_errors=True)
        d = score.to_dict()
        log(f"{variant}: J {d['J']:.2f} F {d['F']:.2f} J&F {d['J&F']:.2f}")
        results.append(score)
    return results
