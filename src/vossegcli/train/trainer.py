"""Offline training of the refiner R (FRTM-VOS section 3.3).

A training sample is (clip, object, reference frame, two validation frames). The target model D
is trained on the reference frame exactly as at inference (augmentation + Gauss–Newton, the
engine's own :func:`~vossegcli.engine.segmenter.fit_target_model`); then each validation frame
goes through backbone → D → R and R is trained with BCE against the ground truth.

What is expensive and deterministic is computed once and cached on disk under ``out/cache``:
the backbone features of every frame used (float16) and the target model of every
(clip, reference frame, object). A training step then only runs D's two small convolutions and
R — on random crops (aligned to the stride-32 grid) of full-resolution feature maps, so the
refiner sees the same scale as at inference while a CPU step stays cheap.

Checkpoints (refiner, optimizer, step, RNG state) are written every ``checkpoint_every`` steps
and at the end; ``resume=True`` continues from ``out/checkpoint.pt``.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from vossegcli.engine.backbone import Backbone, BackboneFeatures
from vossegcli.errors import VossegError
from vossegcli.engine.optim import GaussNewtonCG
from vossegcli.engine.refiner import Refiner, RefinerConfig, load_refiner, save_refiner
from vossegcli.engine.segmenter import Segmenter
from vossegcli.engine.target_fit import fit_target_model
from vossegcli.engine.config import SegmenterConfig, preset_config
from vossegcli.engine.target_features import TargetFeatures, load_target_features
from vossegcli.engine.weights import weights_file
from vossegcli.files import atomic_torch_save
from vossegcli.engine.target_model import TargetModel
from vossegcli.eval.metrics import boundary_measure, region_similarity
from vossegcli.datasets.clips import Clip
from vossegcli.train.data import ObjectPool, load_davis16, load_sample_clip, synthetic_clip
from vossegcli.train.losses import refiner_loss

LEVEL_STRIDES = {"s4": 4, "s8": 8, "s16": 16, "s32": 32}


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 8  #: samples per step; each contributes 2 validation frames
    lr: float = 1e-3
    lr_drop: float = 0.8  #: the learning rate is divided by 10 from this fraction of ``steps`` on
    weight_decay: float = 1e-5
    crop: int = 256  #: crop side in pixels (multiple of 32)
    synthetic_ratio: float = 0.5  #: probability that a sample comes from a synthetic clip
    object_windows: float = 0.5  #: share of crops centred on the object
    distractor_windows: float = 0.25  #: share of crops centred on D's strongest false positive
    synthetic_clips: int = 400
    synthetic_frames: int = 3
    #: where synthetic clips take their objects and backgrounds: "ecssd" or "ecssd+duts"
    synthetic_data: str = "ecssd+duts"
    #: "simple" (rigid motion) or "realistic" (+ non-rigid warps, fast motion with blur, lighting)
    synthetic_motion: str = "realistic"
    #: "bce", "bce+dice" or "bce+lovasz" (train/losses.py)
    loss: str = "bce"
    refs_per_sequence: int = 4  #: reference frames per real sequence (each gets a cached D)
    frame_stride: int = 2  #: use every n-th frame of the real sequences
    checkpoint_every: int = 100
    val_every: int = 0  #: validation J&F on the val split every n steps (0: only at the end)
    val_frames: int = 0  #: limit validation to the first n frames per sequence (0: all)
    refiner_width: int = 32
    #: a refiner weights file to start from (matching weights copied, new inputs start at zero)
    init: str = ""
    seed: int = 0
    data: str = ""  #: "sample" or the folder holding davis16-train/ and ecssd/
    #: the real sequences trained on: "train" (splits.json), "none", "all" or "fold:K" (real30's
    #: fold K held out, :mod:`vossegcli.eval.real30`); validation runs on sequences not trained on
    real: str = "train"
    cache: str = ""  #: feature/target-model cache folder (default: OUT/cache); runs may share one
    #: the learned target-model features D works on, as the engine's ``target_features``: "default"
    #: (the shipped adapter, what users run), an adapter file, or "none" (the scaled stride-16
    #: features alone). The refiner learns from the scores of that D.
    target_features: str = "default"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CachedClip:
    name: str
    features: list[dict[str, torch.Tensor]]  #: per frame: level → (C, h, w) float16
    labels: list[torch.Tensor]  #: per frame: (H, W) uint8
    targets: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  #: (ref, obj) → (w1, w2)


def d_features(levels: dict[str, torch.Tensor], adapter: TargetFeatures | None, scale: float) -> torch.Tensor:
    """(1, C, h16, w16) features D reads from one frame's cached levels (level → (C_l, h_l, w_l)):
    the adapter's output, or the scaled stride-16 level when there is none."""
    if adapter is None:
        return levels["s16"][None].float() * scale
    with torch.no_grad():
        x = adapter.forward_levels(levels["s8"][None].float(), levels["s16"][None].float(), levels["s32"][None].float())
    return x.permute(0, 3, 1, 2)


class FeatureCache:
    """Backbone features and target models for training clips, cached under ``root``.

    ``root/NAME.pt`` holds a clip's backbone levels and labels, and the target models fitted on the
    scaled stride-16 features alone; target models fitted on an adapter's features live beside it in
    ``root/NAME.targets-SHA.pt`` (SHA: the adapter file's sha256, first 12 digits), so runs with
    different adapters share the features.
    """

    def __init__(self, root: Path, backbone: Backbone, engine: SegmenterConfig, device: torch.device,
                 adapter: TargetFeatures | None = None, adapter_sha: str | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.backbone = backbone
        self.engine = engine
        self.device = device
        self.adapter = adapter
        self.tag = adapter_sha[:12] if adapter is not None and adapter_sha else None
        if adapter is not None and self.tag is None:
            raise ValueError("an adapter's target models are cached under its sha256; pass adapter_sha")
        self.solver = GaussNewtonCG(preconditioner=engine.preconditioner)

    def _features_fn(self, images: torch.Tensor) -> torch.Tensor:
        f = self.backbone(images)
        if self.adapter is None:
            return f.s16.float() * self.engine.feature_scale
        with torch.no_grad():
            return self.adapter(f).permute(0, 3, 1, 2)

    def build(self, clip: Clip, refs: list[int], seed: int) -> CachedClip:
        path = self.root / f"{clip.name}.pt"
        targets_path = self.root / f"{clip.name}.targets-{self.tag}.pt" if self.tag else path
        if path.is_file():
            blob = torch.load(path, map_location="cpu", weights_only=False)
            feats, labels = blob["features"], blob["labels"]
            if targets_path.is_file():
                targets = blob["targets"] if targets_path == path else \
                    torch.load(targets_path, map_location="cpu", weights_only=False)["targets"]
                if targets is not None:  # (None: features cached by a run with an adapter)
                    return CachedClip(clip.name, feats, labels, targets)
        else:
            feats, labels = [], []
            for image, lab in zip(clip.frames, clip.labels):
                rgb = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)
                f = self.backbone(rgb[None])
                feats.append({lvl: getattr(f, lvl)[0].half().cpu() for lvl in LEVEL_STRIDES})
                labels.append(torch.from_numpy(lab.copy()))
        targets = {}
        for ref in refs:
            lab = torch.from_numpy(clip.labels[ref]).to(self.device)
            rgb = torch.from_numpy(np.ascontiguousarray(clip.frames[ref])).to(self.device).permute(2, 0, 1)
            levels = {k: v.to(self.device) for k, v in feats[ref].items()}
            x = d_features(levels, self.adapter, self.engine.feature_scale)
            for obj in torch.unique(lab).tolist():
                if obj == 0 or int((lab == obj).sum()) < 100:
                    continue
                model = fit_target_model(
                    x, rgb, (lab == obj).float(), self.engine, self._features_fn, self.solver, seed=seed + 7919 * ref + obj
                )
                targets[(ref, obj)] = (model.w1.detach().cpu(), model.w2.detach().cpu())
        if self.tag is None:
            atomic_torch_save({"features": feats, "labels": labels, "targets": targets}, path)
        else:
            if not path.is_file():
                atomic_torch_save({"features": feats, "labels": labels, "targets": None}, path)
            atomic_torch_save({"targets": targets}, targets_path)
        return CachedClip(clip.name, feats, labels, targets)


def _real_clips(data: Path, real: str, frame_stride: int) -> tuple[list[Clip], list[Clip]]:
    """(training clips every ``frame_stride``-th frame, validation clips every frame) for ``--real``:
    "train" validates on `val`; "fold:K" on fold K; "none" and "all" on `val` (seen by "all")."""
    from vossegcli.datasets.roots import all_sequences, training_sequences
    from vossegcli.datasets.roots import davis16_root

    root = davis16_root(data)
    names = training_sequences(root, real)
    held = [n for n in all_sequences(root) if n not in names] if real.startswith("fold:") else \
        json.loads((root / "splits.json").read_text())["val"]
    return load_davis16(root, names, frame_stride), load_davis16(root, held, 1)


def _pick_refs(clip: Clip, n: int) -> list[int]:
    """n reference frames spread over the clip, among frames where some object is visible."""
    visible = [i for i, lab in enumerate(clip.labels) if (lab > 0).sum() >= 100]
    if not visible:
        return []
    if len(visible) <= n:
        return visible
    return [visible[round(k * (len(visible) - 1) / (n - 1))] if n > 1 else visible[0] for k in range(n)]


def _distractor(scores: torch.Tensor, label: torch.Tensor, obj: int, threshold: float = 0.2) -> tuple[int, int] | None:
    """Pixel (y, x) of D's strongest response away from the object, or None if all are weak.

    scores: (1, h16, w16) raw target-model scores of the full frame; label: (H, W) ids. Cells within
    one cell of an object pixel do not count, so this finds false positives, not object borders.
    """
    h, w = scores.shape[-2:]
    on_object = (label == obj).float()[None, None]
    cells = F.adaptive_max_pool2d(on_object, (h, w))
    near = F.max_pool2d(cells, 3, stride=1, padding=1)[0, 0] > 0
    away = scores[0].detach().float().cpu().masked_fill(near.cpu(), float("-inf"))
    best = int(torch.argmax(away))
    if float(away.flatten()[best]) < threshold:
        return None
    cy, cx = divmod(best, w)
    return (cy * label.shape[0] // h + label.shape[0] // (2 * h), cx * label.shape[1] // w + label.shape[1] // (2 * w))


def _crop_window(label: torch.Tensor, obj: int, crop: int, rng: random.Random, object_share: float = 0.8,
                 distractor: tuple[int, int] | None = None, distractor_share: float = 0.0) -> tuple[int, int, int]:
    """Top-left (y, x) aligned to 32 px and the crop side. The window is centred on a random object
    pixel with probability ``object_share``, on D's strongest false positive (``distractor``, when
    there is one) with probability ``distractor_share``, and anywhere otherwise."""
    h, w = label.shape
    side = min(crop, (h // 32) * 32, (w // 32) * 32)
    ys, xs = torch.nonzero(label == obj, as_tuple=True)
    r = rng.random()
    if len(ys) and r < object_share:
        i = rng.randrange(len(ys))
        cy, cx = int(ys[i]), int(xs[i])
    elif distractor is not None and r < object_share + distractor_share:
        cy, cx = distractor
    else:
        cy, cx = rng.randrange(h), rng.randrange(w)
    y = min(max(cy - side // 2, 0), (h // 32) * 32 - side)
    x = min(max(cx - side // 2, 0), (w // 32) * 32 - side)
    return (y // 32) * 32, (x // 32) * 32, side


def _crop_features(feats: dict[str, torch.Tensor], y: int, x: int, side: int) -> dict[str, torch.Tensor]:
    return {lvl: f[:, y // s:(y + side) // s, x // s:(x + side) // s] for lvl, (s, f) in
            ((lvl, (LEVEL_STRIDES[lvl], feats[lvl])) for lvl in LEVEL_STRIDES)}


@dataclass
class Batch:
    features: BackboneFeatures  #: crops, (B, C_d, side/s, side/s) per level
    scores: torch.Tensor  #: (B, 1, side/16, side/16)
    labels: torch.Tensor  #: (B, 1, side, side)
    side: int


class RefinerTrainer:
    """Builds the caches, then trains R; see the module docstring."""

    def __init__(self, config: TrainConfig, out: Path, device: torch.device,
                 log: Callable[[str], None] = print) -> None:
        self.cfg = config
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = device
        self.log = log
        spec = None if config.target_features in ("", "none") else config.target_features
        # (validation scores the refiner as trained: no test-time tuning, as every recorded curve was made)
        self.engine = replace(preset_config("default", seed=config.seed), target_features=spec, refiner_tuning_steps=0)
        self.adapter_path, self.adapter_sha = weights_file("target_features", spec)
        if spec is not None and (self.adapter_path is None or not self.adapter_path.is_file()):
            raise VossegError(f"{self.adapter_path or spec}: target-feature weights not found; "
                              "pass an existing file to --target-features, or 'none'")
        self.adapter = load_target_features(self.adapter_path, device) if self.adapter_path else None
        self.backbone = Backbone().to(device)
        torch.manual_seed(config.seed)
        self.refiner = Refiner(RefinerConfig(width=config.refiner_width)).to(device)
        if config.init:
            try:
                start = load_refiner(Path(config.init))
            except ValueError as error:
                raise VossegError(str(error)) from None
            if start.config != self.refiner.config:
                raise VossegError(f"{config.init}: a refiner of width {start.config.width} (score skip "
                                  f"{start.config.score_skip}); train with --width {start.config.width} to start from it")
            self.refiner.load_state_dict(start.state_dict())
        self.optimizer = torch.optim.Adam(self.refiner.parameters(), lr=config.lr,
                                          weight_decay=config.weight_decay, amsgrad=True)
        self.step = 0
        self.rng = random.Random(config.seed)
        self.history: list[dict] = []
        self.real: list[CachedClip] = []
        self.synthetic: list[CachedClip] = []
        self.val_clips: list[Clip] = []

    # -- data ----------------------------------------------------------------------------------
    def prepare(self, progress: Callable[[str, int, int], None] | None = None) -> None:
        cfg = self.cfg
        cache = FeatureCache(Path(cfg.cache) if cfg.cache else self.out / "cache", self.backbone, self.engine, self.device,
                             self.adapter, self.adapter_sha)
        if cfg.data == "sample":
            real_clips, self.val_clips, pool = [load_sample_clip()], [load_sample_clip()], None
        else:
            real_clips, self.val_clips = _real_clips(Path(cfg.data), cfg.real, cfg.frame_stride)
            pool = (ObjectPool(Path(cfg.data), tuple(cfg.synthetic_data.split("+")))
                    if cfg.synthetic_ratio > 0 else None)
        total = len(real_clips) + (cfg.synthetic_clips if pool else 0)
        for i, clip in enumerate(real_clips):
            self.real.append(cache.build(clip, _pick_refs(clip, cfg.refs_per_sequence), cfg.seed))
            if progress:
                progress("caching features", i + 1, total)
        if pool is not None:
            srng = random.Random(cfg.seed + 1)
            for i in range(cfg.synthetic_clips):
                kind = "" if (cfg.synthetic_data, cfg.synthetic_motion) == ("ecssd", "simple") else \
                    f"{cfg.synthetic_data}-{cfg.synthetic_motion}-"  # (cached features are found by name)
                clip = synthetic_clip(pool, srng, cfg.synthetic_frames, name=f"synthetic-{kind}{cfg.seed}-{i:04d}",
                                      realistic=cfg.synthetic_motion == "realistic")
                self.synthetic.append(cache.build(clip, [0], cfg.seed))
                if progress:
                    progress("caching features", len(real_clips) + i + 1, total)
        for clips in (self.real, self.synthetic):
            clips[:] = [c for c in clips if c.targets]

    # -- training ------------------------------------------------------------------------------
    def _sample(self) -> tuple[CachedClip, int, int]:
        use_synth = self.synthetic and (not self.real or self.rng.random() < self.cfg.synthetic_ratio)
        clip = self.rng.choice(self.synthetic if use_synth else self.real)
        ref, obj = self.rng.choice(sorted(clip.targets))
        return clip, ref, obj

    def _batch(self) -> "Batch":
        """One step's crops. Per sample: D from the reference frame, then two other frames of the
        clip scored by it and cropped (on the object, on D's strongest false positive, or anywhere)."""
        items = []
        for _ in range(self.cfg.batch_size):
            clip, ref, obj = self._sample()
            w1, w2 = clip.targets[(ref, obj)]
            model = TargetModel(w1.to(self.device), w2.to(self.device))
            others = [i for i in range(len(clip.labels)) if i != ref] or [ref]
            frames = self.rng.sample(others, min(2, len(others)))
            for frame in frames:
                f = {k: v.to(self.device).float() for k, v in clip.features[frame].items()}
                s = model(d_features(f, self.adapter, self.engine.feature_scale))[0]  # (1, h16, w16), full frame
                label = clip.labels[frame]
                distractor = _distractor(s, label, obj) if self.cfg.distractor_windows > 0 else None
                y, x, side = _crop_window(label, obj, self.cfg.crop, self.rng, self.cfg.object_windows,
                                          distractor, self.cfg.distractor_windows)
                cells = (slice(None), slice(y // 16, (y + side) // 16), slice(x // 16, (x + side) // 16))
                items.append({
                    "features": _crop_features(f, y, x, side), "scores": s[cells],
                    "label": (label[y:y + side, x:x + side] == obj).float(), "side": side,
                })
        side = min(it["side"] for it in items)
        items = [it for it in items if it["side"] == side and tuple(it["label"].shape) == (side, side)]
        feats = BackboneFeatures(**{lvl: torch.stack([it["features"][lvl] for it in items]) for lvl in LEVEL_STRIDES})
        return Batch(
            feats, torch.stack([it["scores"] for it in items]),
            torch.stack([it["label"] for it in items])[:, None].to(self.device), side,
        )

    def learning_rate(self, step: int) -> float:
        """Step schedule (as the reference's StepLR, scaled to our run length): ``lr`` until
        ``lr_drop · steps``, then ``lr / 10``."""
        return self.cfg.lr * (0.1 if step >= int(self.cfg.lr_drop * self.cfg.steps) else 1.0)

    def train(self, progress: Callable[[int, float], None] | None = None) -> None:
        cfg = self.cfg
        self.refiner.train()
        start = time.time()
        while self.step < cfg.steps:
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate(self.step)
            batch = self._batch()
            logits = self.refiner(batch.features, batch.scores, (batch.side, batch.side))
            labels = batch.labels
            loss = refiner_loss(logits, labels, cfg.loss)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            self.history.append({"step": self.step, "loss": loss.item(), "seconds": round(time.time() - start, 2)})
            if progress:
                progress(self.step, loss.item())
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save_checkpoint()
            if cfg.val_every and self.step % cfg.val_every == 0 and self.step < cfg.steps:
                self.validate()
                self.refiner.train()

    # -- validation ----------------------------------------------------------------------------
    def validate(self, use_refiner: bool = True) -> dict:
        """J&F of the full engine (with this refiner) on the validation clips (object-weighted)."""
        self.refiner.eval()
        segmenter = Segmenter(self.engine, device=self.device, backbone=self.backbone,
                              refiner=self.refiner if use_refiner else None)
        js, fs, per_seq = [], [], {}
        for clip in self.val_clips:
            n = len(clip.frames) if not self.cfg.val_frames else min(self.cfg.val_frames, len(clip.frames))
            first = {0: clip.labels[0]}
            obj_scores: dict[int, tuple[list, list]] = {o: ([], []) for o in np.unique(clip.labels[0]) if o}
            for result in segmenter.run(iter(clip.frames[:n]), first):
                if 1 <= result.index < n - 1:
                    for o, (oj, of) in obj_scores.items():
                        p, g = result.labels == o, clip.labels[result.index] == o
                        oj.append(region_similarity(p, g))
                        of.append(boundary_measure(p, g))
            for o, (oj, of) in obj_scores.items():
                js.append(float(np.mean(oj)))
                fs.append(float(np.mean(of)))
            per_seq[clip.name] = (float(np.mean(js[-len(obj_scores):])), float(np.mean(fs[-len(obj_scores):])))
        result = {"step": self.step, "J": float(np.mean(js)), "F": float(np.mean(fs)),
                  "J&F": float((np.mean(js) + np.mean(fs)) / 2), "per_sequence": per_seq, "refiner": use_refiner}
        self.log(f"validation at step {self.step}: J&F {100 * result['J&F']:.1f} (J {100 * result['J']:.1f}, F {100 * result['F']:.1f})")
        with open(self.out / "validation.jsonl", "a") as handle:
            handle.write(json.dumps(result) + "\n")
        return result

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        blob = {
            "step": self.step, "config": self.cfg.as_dict(), "refiner": self.refiner.state_dict(),
            "refiner_config": self.refiner.config.as_dict(), "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.getstate(), "torch_rng": torch.get_rng_state(), "history": self.history,
        }
        atomic_torch_save(blob, self.out / "checkpoint.pt")
        save_refiner(self.refiner, self.out / "refiner.pt", meta={"step": self.step, "train_config": self.cfg.as_dict()})

    def load_checkpoint(self) -> bool:
        path = self.out / "checkpoint.pt"
        if not path.is_file():
            return False
        blob = torch.load(path, map_location="cpu", weights_only=False)
        self.refiner.load_state_dict(blob["refiner"])
        self.optimizer.load_state_dict(blob["optimizer"])
        self.rng.setstate(blob["rng"])
        torch.set_rng_state(blob["torch_rng"])
        self.step = blob["step"]
        self.history = blob["history"]
        return True
