"""Run the engine over a davis16-train split and score it: the measurement behind docs/RESULTS.md.

Each sequence goes through the same path as ``vosseg segment`` (mp4 decoded and streamed, the
first-frame mask, palette PNGs written), then the folder is scored with :mod:`vossegcli.eval.davis`.
FPS follows the paper: engine time per sequence (decoding and PNG writing excluded, first-frame
set-up included), averaged over sequences without weighting.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from vossegcli.engine.config import SegmenterConfig, preset_config
from vossegcli.datasets.roots import davis16_root, split_sequences
from vossegcli.eval.davis import EvalResult, evaluate
from vossegcli.engine.weights import weights_file
from vossegcli.run.segment import segment


@dataclass
class SplitRun:
    name: str
    config: dict
    scores: EvalResult
    fps: dict[str, float] = field(default_factory=dict)
    sample_memory_mb: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def mean_fps(self) -> float:
        return sum(self.fps.values()) / max(len(self.fps), 1)

    def to_dict(self) -> dict:
        return {
            "variant": self.name,
            "J&F": self.scores.jf_mean,
            "J": self.scores.j_mean,
            "F": self.scores.f_mean,
            "fps_mean_over_sequences": self.mean_fps,
            "fps": self.fps,
            "sample_memory_mb_per_object": self.sample_memory_mb,
            "peak_rss_mb": self.peak_rss_mb,
            "per_sequence": {k: {"J": v[0], "F": v[1], "J&F": v[2]} for k, v in self.scores.per_sequence().items()},
            "config": self.config,
        }


def run_split(
    data: Path,
    split: str,
    out_root: Path,
    config: SegmenterConfig,
    *,
    name: str = "run",
    device: str = "auto",
    progress: Callable[[str, int, int | None], None] | None = None,
) -> SplitRun:
    """Segment every sequence of ``split`` into ``out_root/<seq>`` and score the folder.

    ``split``: a split of davis16-train's splits.json (mp4 inputs), or ``val-synth`` (the
    synthetic clips of :mod:`vossegcli.eval.synth`, rendered once into its cache)."""
    if split == "val-synth":
        from vossegcli.eval.synth import build_val_synth, clip_names

        root = build_val_synth(data)
        sequences = clip_names()
        inputs = {seq: root / "frames" / seq for seq in sequences}
    else:
        root = davis16_root(data)
        sequences = split_sequences(root, split)
        inputs = {seq: root / "videos" / f"{seq}.mp4" for seq in sequences}
    fps: dict[str, float] = {}
    memory, rss = 0.0, 0.0
    for seq in sequences:
        run = segment(
            inputs[seq],
            [str(root / "masks" / seq / "00000.png")],
            Path(out_root) / seq,
            device=device,
            config=config,
            force=True,
            progress=(lambda done, total, seq=seq: progress(seq, done, total)) if progress else None,
        )
        fps[seq] = run.fps
        memory = max(memory, run.memory.get("sample_memory_mb", 0.0) / max(len(run.objects), 1))
        rss = max(rss, run.memory["peak_rss_mb"])
    scores = evaluate(Path(out_root), root / "masks", sequences=sequences)
    return SplitRun(name, config.as_dict(), scores, fps, memory, rss)


def ablation_variants(seed: int = 0) -> dict[str, SegmenterConfig]:
    """The paper's Table-1-style ablation, for both presets."""
    variants = {}
    for preset in ("default", "fast"):
        full = preset_config(preset, seed=seed, refiner=None)
        first_only = replace(full, augment=replace(full.augment, num_samples=0), update_interval=0)
        variants[f"{preset}: first frame only"] = first_only
        variants[f"{preset}: + augmentation"] = replace(full, update_interval=0)
        variants[f"{preset}: + memory updates"] = full
        if weights_file("refiner", "default")[0] is not None:
            variants[f"{preset}: + refiner"] = replace(full, refiner="default")
    return variants


def score_yardsticks(data: Path, config: SegmenterConfig, out: Path, device: str = "cpu",
                     splits: tuple[str, ...] = ("val", "val-synth")) -> dict:
    """The small yardsticks for one engine configuration: J&F (and J, F, FPS) on `val` and on
    `val-synth` (with its per-scenario means), and the mean of the two J&F, in percent."""
    row: dict = {}
    for split in splits:
        run = run_split(data, split, Path(out) / split, config, device=device)
        row[split] = round(100 * run.scores.jf_mean, 2)
        row[f"{split}_J"] = round(100 * run.scores.j_mean, 2)
        row[f"{split}_F"] = round(100 * run.scores.f_mean, 2)
        row[f"{split}_fps"] = round(run.mean_fps, 2)
        if split == "val-synth":
            by: dict[str, list[float]] = {}
            for name, (_, _, jf) in run.scores.per_sequence().items():
                by.setdefault(name.rsplit("-", 1)[0], []).append(jf)
            row["val-synth_by_scenario"] = {k: round(100 * sum(v) / len(v), 1) for k, v in by.items()}
    if "val" in row and "val-synth" in row:
        row["mean"] = round((row["val"] + row["val-synth"]) / 2, 2)
    return row
