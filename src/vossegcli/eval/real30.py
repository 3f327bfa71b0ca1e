"""`real30`: all 30 davis16-train sequences, each segmented with a refiner that never saw it.

The shipped refiner trained on the 24 sequences of the `train` split, so only the 6 `val` ones are
unseen by it — and settings chosen on those six over-estimated held-out DAVIS-2016 val by 8.7
points. `real30` scores the whole engine on all 30 real sequences under one of two recipes for the
refiner (docs/RESULTS.md says which estimates held-out video better):

* ``folds``: the 30 sequences in :data:`FOLDS` folds; fold k's sequences are segmented with a
  refiner trained on the other 24 (plus synthetic clips) — ``vosseg train --real fold:k``;
* ``synthetic``: one refiner trained on synthetic clips only (``vosseg train --real none``), used
  for all 30.

Reported per sequence: J, F, J&F, and J per quarter of the clip (drift shows as a falling J over the
quarters). Aggregates weigh every sequence equally, as the DAVIS protocol does (one object each).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from vossegcli.engine.backbone import Backbone
from vossegcli.engine.segmenter import Segmenter
from vossegcli.engine.config import SegmenterConfig
from vossegcli.errors import InputError
from vossegcli.datasets.roots import all_sequences, fold_of
from vossegcli.eval.davis import EvalResult, evaluate

QUARTERS = 4




def quarter_means(values: np.ndarray | tuple[float, ...], parts: int = QUARTERS) -> list[float]:
    """Means of ``values`` over ``parts`` consecutive, near-equal stretches (fewer values than
    parts: one stretch per value)."""
    values = np.asarray(values, dtype=float)
    chunks = [c for c in np.array_split(values, min(parts, len(values))) if len(c)]
    return [float(c.mean()) for c in chunks]


@dataclass
class Real30Result:
    """Scores of one engine configuration on real30 (all fractions in [0, 1])."""

    recipe: str
    scores: EvalResult
    fps: dict[str, float] = field(default_factory=dict)

    def per_sequence(self) -> dict[str, dict]:
        rows = {}
        for obj in self.scores.objects:
            row = rows.setdefault(obj.sequence, {"J": [], "F": [], "quarters": []})
            row["J"].append(obj.j_mean)
            row["F"].append(obj.f_mean)
            row["quarters"].append(quarter_means(obj.j_per_frame))
        out = {}
        for name, row in sorted(rows.items()):
            j, f = float(np.mean(row["J"])), float(np.mean(row["F"]))
            quarters = np.mean(np.array([q for q in row["quarters"] if len(q) == QUARTERS]), axis=0).tolist() \
                if any(len(q) == QUARTERS for q in row["quarters"]) else row["quarters"][0]
            out[name] = {"J": j, "F": f, "J&F": (j + f) / 2, "J_quarters": quarters, "fps": self.fps.get(name)}
        return out

    def summary(self) -> dict:
        seqs = self.per_sequence()
        quarters = np.mean([s["J_quarters"] for s in seqs.values() if len(s["J_quarters"]) == QUARTERS], axis=0)
        pct = lambda v: round(100 * float(v), 2)  # noqa: E731
        return {
            "recipe": self.recipe,
            "J&F": pct(np.mean([s["J&F"] for s in seqs.values()])),
            "J": pct(np.mean([s["J"] for s in seqs.values()])),
            "F": pct(np.mean([s["F"] for s in seqs.values()])),
            "J_quarters": [pct(q) for q in quarters],
            "fps_mean_over_sequences": round(float(np.mean(list(self.fps.values()))), 2) if self.fps else None,
            "sequences": len(seqs),
            "per_sequence": {n: {"J": pct(s["J"]), "F": pct(s["F"]), "J&F": pct(s["J&F"]),
                                 "J_quarters": [pct(q) for q in s["J_quarters"]]} for n, s in seqs.items()},
        }


def refiners_for(recipe: str, refiners: Path, sequences: list[str]) -> dict[str, str]:
    """Sequence → the refiner file that never saw it. ``refiners``: for ``folds`` a folder holding
    fold0.pt … fold4.pt; for ``synthetic`` one file (or a folder holding synthetic.pt)."""
    refiners = Path(refiners)
    if recipe == "synthetic":
        path = refiners / "synthetic.pt" if refiners.is_dir() else refiners
        if not path.is_file():
            raise InputError(f"{path}: no synthetic-only refiner; train one with `vosseg train --real none`")
        return {name: str(path) for name in sequences}
    if recipe != "folds":
        raise InputError(f"recipe {recipe!r}: choose folds or synthetic")
    out = {}
    for name in sequences:
        path = refiners / f"fold{fold_of(sequences, name)}.pt"
        if not path.is_file():
            raise InputError(f"{path}: fold refiner missing; train it with `vosseg train --real fold:K`")
        out[name] = str(path)
    return out


#: Which ground-truth masks a run is given (issue: "several annotated frames"): the first frame;
#: also the middle one; also those at 25 %, 50 % and 75 % of the clip.
ANCHOR_MODES = ("first", "mid", "quarters")


def anchor_frames(mode: str, frames: int) -> list[int]:
    """The frames whose ground truth is given under ``mode`` for a clip of ``frames`` frames."""
    if mode not in ANCHOR_MODES:
        raise ValueError(f"anchors={mode!r}: choose one of {', '.join(ANCHOR_MODES)}")
    return {"first": [0], "mid": [0, frames // 2], "quarters": [0, frames // 4, frames // 2, 3 * frames // 4]}[mode]


def run_real30(
    data: Path,
    recipe: str,
    refiners: Path,
    out_root: Path,
    config: SegmenterConfig,
    *,
    device: str = "cpu",
    sequences: list[str] | None = None,
    backbone: Backbone | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    target_features: Path | None = None,
    anchors: str = "first",
    bidirectional: bool = False,
) -> Real30Result:
    """Segment every real30 sequence (first-frame mask, same path as ``vosseg segment``) with its
    unseen refiner into ``out_root/<seq>`` and score them. ``config.refiner`` is replaced per
    sequence unless it is None (the no-refiner engine). ``backbone``: one to share between the
    engines (one engine per refiner file); default: one loaded here. ``target_features``: a folder
    of fold0.pt … fold4.pt target-feature adapters, each sequence segmented with the one that never
    saw it (default: ``config.target_features`` for all). ``anchors``: the ground-truth masks given,
    :data:`ANCHOR_MODES` (``first``: the first frame only, the protocol). ``bidirectional``: as
    ``vosseg segment --bidirectional`` (a backward pass over the stretches where an object was lost)."""
    from vossegcli.datasets.roots import davis16_root
    from vossegcli.run.segment import segment

    root = davis16_root(data)
    names = all_sequences(root)
    chosen = sequences or names
    files: Mapping[str, str] = refiners_for(recipe, refiners, names) if config.refiner is not None else {}
    backbone = backbone or Backbone()
    engines: dict[tuple, Segmenter] = {}
    fps = {}
    for i, seq in enumerate(chosen):
        cfg = replace(config, refiner=files[seq]) if config.refiner is not None else config
        if target_features is not None:
            path = Path(target_features) / f"fold{fold_of(names, seq)}.pt"
            if not path.is_file():
                raise InputError(f"{path}: fold adapter missing; train it with tools/train_target_features.py --real fold:K")
            cfg = replace(cfg, target_features=str(path))
        key = (cfg.refiner, cfg.target_features)
        if key not in engines:
            engines[key] = Segmenter(cfg, device=device, backbone=backbone)  # (segment() configures the process)
        count = len(list((root / "masks" / seq).glob("*.png")))
        masks = [f"{f}:{root / 'masks' / seq / f'{f:05d}.png'}" for f in anchor_frames(anchors, count)]
        result = segment(root / "videos" / f"{seq}.mp4", masks, Path(out_root) / seq,
                         device=device, config=cfg, force=True, segmenter=engines[key],
                         bidirectional=bidirectional)
        fps[seq] = result.fps
        if progress:
            progress(seq, i + 1, len(chosen))
    scores = evaluate(Path(out_root), root / "masks", sequences=chosen)
    return Real30Result(recipe if config.refiner is not None else "no refiner", scores, fps)
