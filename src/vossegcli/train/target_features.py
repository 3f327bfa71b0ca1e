"""Offline training of the target-model feature adapter (LWL stage 1 on our frozen backbone).

A training item is (clip, object, reference frame, test frames later in the clip). Exactly as at
inference, the object's target model D is fitted on the reference frame's adapted features by the
engine's Gauss–Newton–CG solver from a random start; each test frame is then scored by D, and
after each test frame but the last its features and D's own soft prediction enter a memory (the
reference sample anchored at ``anchor_weight``, the rest weighted by recency) and w2 takes one
GN step on it — the engine's update. The loss is the hinge-weighted BCE of D's probability
``sigmoid(k·(score − 0.5))`` on the test frames' label grid, and it is back-propagated through every
solver iteration into the adapter (:class:`~vossegcli.engine.target_features.TargetFeatures`).

Data: the refiner trainer's feature cache (``vosseg train`` builds it: every 2nd frame of the
davis16-train sequences, float16 backbone levels, and 3-frame synthetic clips), read by name.
Augmented copies of the reference frame are not used here (their features are not cached); the
engine still adds them at run time.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from vossegcli.engine.device import resolve_device
from vossegcli.engine.geometry import downsample_mask
from vossegcli.engine.optim import GaussNewtonCG
from vossegcli.engine.config import SegmenterConfig
from vossegcli.engine.target_features import TargetFeatures, TargetFeaturesConfig, save_target_features
from vossegcli.engine.target_model import (
    BatchedSamples,
    BatchedTargetProblem,
    TargetModel,
    UpsampleOperator,
    hinge_pixel_weights,
    score_projected_batched,
    to_batched_weights,
)
from vossegcli.errors import InputError
from vossegcli.datasets.roots import all_sequences, davis16_root, training_sequences
from vossegcli.train.trainer import CachedClip

LEVELS = ("s8", "s16", "s32")


@dataclass
class AdapterTrainConfig:
    steps: int = 600
    batch_size: int = 4  #: items per step
    lr: float = 5e-4
    lr_drop: float = 0.8  #: the learning rate is divided by 10 from this fraction of ``steps`` on
    weight_decay: float = 1e-5
    test_frames: int = 3  #: test frames per real item (synthetic clips have 3 frames: 2)
    gap: tuple[int, int] = (2, 6)  #: cached frames between test frames (cache: every 2nd frame)
    synthetic_ratio: float = 0.5
    anchor_weight: float = 0.5  #: the reference sample's least weight in the memory (engine's default)
    clip_grad: float = 1.0
    width: int = 128
    out_channels: int = 64
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def load_cached(cache: Path, names: list[str]) -> list[CachedClip]:
    """The refiner trainer's cached clips ``cache/NAME.pt`` (levels s8, s16, s32 kept)."""
    clips = []
    for name in names:
        path = Path(cache) / f"{name}.pt"
        if not path.is_file():
            raise InputError(f"{path}: no cached features; build the cache with "
                             f"`vosseg train --data DATA --cache {cache} --steps 0 --real all` first")
        blob = torch.load(path, map_location="cpu", weights_only=False)
        feats = [{k: f[k] for k in LEVELS} for f in blob["features"]]
        clips.append(CachedClip(name, feats, blob["labels"]))
    return clips


def synthetic_names(cache: Path) -> list[str]:
    # (not the refiner trainer's cached target models beside them, NAME.targets-SHA.pt)
    return sorted(p.stem for p in Path(cache).glob("synthetic-*.pt") if "." not in p.stem)


#: k of D's probability sigmoid(k·(score − 0.5)) in the training loss and the memory labels: the
#: engine's default until 2026-12-04 (8; now 32, docs/RESULTS.md), kept so the shipped adapters'
#: recorded commands still reproduce them.
ADAPTER_SCORE_SHARPNESS = 8.0


class AdapterTrainer:
    """Trains a :class:`TargetFeatures` through the engine's target-model fit; see the module docstring."""

    def __init__(self, config: AdapterTrainConfig, real: list[CachedClip], synthetic: list[CachedClip],
                 engine: SegmenterConfig | None = None, log: Callable[[str], None] = print,
                 device: torch.device | str = "cpu") -> None:
        self.cfg = config
        self.device = torch.device(device)
        # (the default: the engine's settings with the sharpness the shipped adapters were trained with)
        self.engine = engine or replace(SegmenterConfig(), score_sharpness=ADAPTER_SCORE_SHARPNESS)
        self.real, self.synthetic = real, synthetic
        self.log = log
        torch.manual_seed(config.seed)
        self.rng = random.Random(config.seed)
        self.adapter = TargetFeatures(TargetFeaturesConfig(config.width, config.out_channels, self.engine.feature_scale))
        self._set_statistics()
        self.adapter.to(self.device)
        self.optimizer = torch.optim.Adam(self.adapter.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.solver = GaussNewtonCG(preconditioner=self.engine.preconditioner)
        self.w2_solver = GaussNewtonCG(preconditioner=self.engine.preconditioner[1:])
        self.step = 0
        self.skipped = 0  #: steps whose gradient was not finite (not applied)
        self.history: list[dict] = []
        self._ops: dict[tuple, UpsampleOperator] = {}

    def _set_statistics(self) -> None:
        rng = random.Random(self.cfg.seed + 17)
        frames = [rng.choice(c.features) for c in rng.choices(self.real + self.synthetic, k=64)]
        stacked = torch.cat([TargetFeatures.gather(*(f[k][None] for k in LEVELS)).flatten(2) for f in frames], dim=2)
        self.adapter.set_statistics(stacked[..., None])

    # -- items ---------------------------------------------------------------------------------
    def sample_item(self, rng: random.Random | None = None) -> tuple[CachedClip, int, list[int], int]:
        """(clip, object id, reference frame, test frames)."""
        rng = rng or self.rng
        while True:
            synth = self.synthetic and (not self.real or rng.random() < self.cfg.synthetic_ratio)
            clip = rng.choice(self.synthetic if synth else self.real)
            n = len(clip.labels)
            if synth:
                ref, tests = 0, list(range(1, n))
            else:
                ref = rng.randrange(0, max(1, n - 2))
                tests, t = [], ref
                while len(tests) < self.cfg.test_frames:
                    t += rng.randint(*self.cfg.gap)
                    if t >= n:
                        break
                    tests.append(t)
            ids = [i for i in torch.unique(clip.labels[ref]).tolist() if 0 < i < 255
                   and int((clip.labels[ref] == i).sum()) >= 100]
            if ids and tests:
                return clip, rng.choice(ids), ref, tests

    def _op(self, grid: tuple[int, int], label_hw: tuple[int, int], dtype: torch.dtype) -> UpsampleOperator:
        key = (grid, label_hw, dtype)
        if key not in self._ops:
            self._ops[key] = UpsampleOperator(grid, label_hw, self.engine.label_stride, device=self.device, dtype=dtype)
        return self._ops[key]

    def item_loss(self, clip: CachedClip, obj: int, ref: int, tests: list[int], seed: int,
                  adapter: TargetFeatures | None = None) -> torch.Tensor:
        """The hinge-weighted BCE of D's probabilities on the test frames (mean over them)."""
        eng = self.engine
        adapter = adapter or self.adapter
        frames = [ref, *tests]
        dtype = adapter.mean.dtype  # float32 in training; a float64 adapter (gradient checks) runs in float64
        dev = self.device
        x = adapter.forward_levels(*(torch.stack([clip.features[i][k] for i in frames]).to(dev, dtype)
                                     for k in LEVELS))  # (T, h, w, C)
        s = eng.label_stride
        masks = torch.stack([(clip.labels[i] == obj) for i in frames])[:, None].to(dev, dtype)
        labels = downsample_mask(masks, s)[:, 0]  # (T, H', W')
        op = self._op(tuple(x.shape[1:3]), tuple(labels.shape[-2:]), dtype)
        init = TargetModel.initialize(x.shape[-1], eng.channels, torch.Generator().manual_seed(seed))
        w1, w2 = (w[None].to(dev, dtype) for w in to_batched_weights(init))
        one = torch.ones((1, 1), dtype=dtype, device=dev)
        problem = BatchedTargetProblem(BatchedSamples(x[None, :1], labels[None, :1], one, s, eng.hinge_fraction),
                                       eng.regularization, optimize_w1=True, upsample=op)
        w1, w2 = self.solver.run(problem, [w1, w2], eng.init_cg_iterations)
        projected = torch.matmul(x, w1[0])  # (T, h, w, c)
        mem_feats, mem_labels, weights = [projected[0]], [labels[0]], [1.0]
        losses = []
        for j in range(1, len(frames)):
            score = score_projected_batched(projected[j][None], w2)  # (1, h, w)
            logit = eng.score_sharpness * (op(score) - 0.5)  # (1, H', W')
            target = labels[j][None]
            v = hinge_pixel_weights(target[:, None], eng.hinge_fraction, pixel_area=float(s * s))[:, 0]
            bce = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
            losses.append((v * bce).sum() / v.sum())
            if j == len(frames) - 1:
                break
            mem_feats.append(projected[j])
            mem_labels.append(torch.sigmoid(logit[0]).detach())
            weights = _recency(weights, eng.memory_learning_rate, self.cfg.anchor_weight)
            gamma = torch.tensor(weights, dtype=dtype, device=dev)[None]
            upd = BatchedTargetProblem(BatchedSamples(torch.stack(mem_feats)[None], torch.stack(mem_labels)[None], gamma,
                                                      s, eng.hinge_fraction),
                                       eng.regularization, optimize_w1=False, upsample=op)
            (w2,) = self.w2_solver.run(upd, [w2], [eng.update_cg_iterations])
        return torch.stack(losses).mean()

    # -- training ------------------------------------------------------------------------------
    def learning_rate(self, step: int) -> float:
        return self.cfg.lr * (0.1 if step >= self.cfg.lr_drop * self.cfg.steps else 1.0)

    def train(self, progress: Callable[[int, float], None] | None = None,
              evaluate_every: int = 0, evaluate: Callable[[], dict] | None = None) -> None:
        cfg = self.cfg
        self.adapter.train()
        window: list[float] = []
        start = time.perf_counter()
        while self.step < cfg.steps:
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate(self.step)
            self.optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for b in range(cfg.batch_size):
                clip, obj, ref, tests = self.sample_item()
                loss = self.item_loss(clip, obj, ref, tests, seed=cfg.seed * 100003 + self.step * 31 + b)
                (loss / cfg.batch_size).backward()
                total += loss.item() / cfg.batch_size
            norm = torch.nn.utils.clip_grad_norm_(self.adapter.parameters(), cfg.clip_grad)
            if torch.isfinite(norm) and total == total:  # a rare unstable item must not poison the adapter
                self.optimizer.step()
            else:
                self.skipped += 1
            self.step += 1
            window.append(total)
            if progress:
                progress(self.step, total)
            if self.step % 50 == 0 or self.step == cfg.steps:
                row = {"step": self.step, "loss": sum(window) / len(window), "skipped": self.skipped,
                       "seconds": round(time.perf_counter() - start, 1)}
                if evaluate is not None and evaluate_every and (self.step % evaluate_every == 0 or self.step == cfg.steps):
                    row.update(evaluate())
                self.history.append(row)
                self.log(json.dumps(row))
                window = []

    @torch.no_grad()
    def fixed_loss(self, items: list[tuple[CachedClip, int, int, list[int]]], adapter: TargetFeatures | None = None) -> float:
        """Mean item loss over fixed items (seeded), for curves: ``adapter`` None = the current one."""
        adapter = adapter or self.adapter
        was = adapter.training
        adapter.eval()
        values = [self.item_loss(c, o, r, t, seed=1000 + i, adapter=adapter).item() for i, (c, o, r, t) in enumerate(items)]
        adapter.train(was)
        return sum(values) / len(values)

    def save(self, path: Path, meta: dict) -> None:
        save_target_features(self.adapter, path, {**meta, "train_config": self.cfg.as_dict(), "history": self.history})


def _recency(weights: list[float], eta: float, anchor: float) -> list[float]:
    """The memory's weights after one insertion (:class:`~vossegcli.engine.memory.SampleMemory`'s
    rule for one anchor sample): the new sample weighs 1/(1 − η) × the previous newest (η for the
    first), renormalized, the anchor (index 0) floored at ``anchor``."""
    if len(weights) == 1:
        new = [w / (1 - eta) for w in weights] + [eta]
    else:
        new = weights + [weights[-1] / (1 - eta)]
    total = sum(new)
    new = [w / total for w in new]
    if anchor > 0 and new[0] < anchor:
        rest = 1 - new[0]
        new = [anchor] + [w * (1 - anchor) / rest for w in new[1:]]
    return new


def baseline_adapter(trainer: AdapterTrainer) -> TargetFeatures:
    """An adapter whose learned channels are all zero: D sees the old features (plus zeros)."""
    base = TargetFeatures(trainer.adapter.config).to(trainer.device)
    base.load_state_dict(trainer.adapter.state_dict())
    with torch.no_grad():
        base.mix.weight.zero_()
        base.mix.bias.zero_()
    return base


def main(argv: list[str] | None = None) -> None:
    """``vosseg train-target-features``: the fold's (or all) cached clips, training, the file."""
    ap = argparse.ArgumentParser(prog="vosseg train-target-features")
    ap.add_argument("out", type=Path)
    ap.add_argument("--real", default="all")
    ap.add_argument("--cache", type=Path, default=Path("runs/cache"))
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--out-channels", type=int, default=64)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--synthetic-ratio", type=float, default=0.5)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    root = davis16_root(args.data)
    names = training_sequences(root, args.real)
    held = [n for n in all_sequences(root) if n not in names]
    t0 = time.perf_counter()
    real = load_cached(args.cache, names)
    synth = load_cached(args.cache, synthetic_names(args.cache)) if args.synthetic_ratio > 0 else []
    print(json.dumps({"loaded": len(real), "synthetic": len(synth), "held": held, "seconds": round(time.perf_counter() - t0)}), flush=True)
    cfg = AdapterTrainConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, width=args.width,
                             out_channels=args.out_channels, synthetic_ratio=args.synthetic_ratio, seed=args.seed)
    trainer = AdapterTrainer(cfg, real, synth, log=lambda s: print(s, flush=True), device=device)
    evaluate = None
    if held:
        held_clips = load_cached(args.cache, held)
        probe = AdapterTrainer(AdapterTrainConfig(synthetic_ratio=0.0, seed=99), held_clips, [], log=lambda s: None)  # sampling only
        rng = random.Random(5)
        items = [probe.sample_item(rng) for _ in range(48)]
        base = trainer.fixed_loss(items, baseline_adapter(trainer))
        print(json.dumps({"held_baseline_loss": round(base, 5)}), flush=True)
        evaluate = lambda: {"held_loss": round(trainer.fixed_loss(items), 5), "held_baseline_loss": round(base, 5)}
    trainer.train(evaluate_every=args.eval_every, evaluate=evaluate)
    trainer.save(args.out, {"real": args.real, "cache": str(args.cache), "held_out": held, "device": str(device),
                            "wall_seconds": round(time.perf_counter() - t0), "command": " ".join(["vosseg", *sys.argv[1:]] if sys.argv[0].endswith("vosseg") else sys.argv)})
    print(json.dumps({"saved": str(args.out), "seconds": round(time.perf_counter() - t0)}), flush=True)
