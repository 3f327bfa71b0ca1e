"""Training RVOS's recurrent instance decoder (:mod:`vossegcli.engine.rvos`), zero-shot.

Data (rendered once, backbone levels cached in float16 beside per-frame id maps):

* ``multi-*``: 2–5 DUTS-TR *training* objects (never the held-out tenth that auto-multi and
  val-synth use) moving over a panned training background, crossing, occluding, entering part-way;
  every third clip with a look-alike pair (auto-multi's generator, other images and seeds);
* ``pair-*``: a davis16-train ``train`` sequence with another one's object pasted in front (the
  two-object scenes users have; auto-multi's pairs use the ``val`` sequences);
* ``single-*``: the davis16-train ``train`` sequences themselves (one object).

A training item is a window of ``window`` consecutive frames of one clip. The decoder runs over it
with its own recurrence (RVOS's "+" training); the clip's objects are assigned to slots by the
Hungarian algorithm on soft IoU over the whole window; assigned slots get soft-IoU + BCE mask
losses; every slot's score learns whether it holds an assigned object visible in that frame.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vossegcli.datasets.cutouts import DutsPool
from vossegcli.datasets.roots import davis16_root, duts_root, split_sequences
from vossegcli.engine.backbone import Backbone
from vossegcli.engine.device import resolve_device
from vossegcli.engine.rvos import InstanceConfig, InstanceDecoder, load_instances, save_instances
from vossegcli.eval.assignment import best_assignment
from vossegcli.eval.auto_multi import PAIR_SIZE, multi_clip, pair_clip

LEVEL_NAMES = ("s32", "s16", "s8")
STRIDE = 8  #: the decoder's mask grid


@dataclass
class InstanceTrainConfig:
    steps: int = 1500
    batch: int = 4  #: windows per step
    window: int = 4  #: frames per window
    lr: float = 1e-3
    lr_drop: float = 0.8  #: / 10 from this fraction of the steps on
    weight_decay: float = 1e-5
    synthetic: int = 160  #: multi-object synthetic clips
    frames: int = 16  #: frames per synthetic clip
    real_ratio: float = 0.3  #: share of items from the davis16-train pair and single clips
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _training_pool(data: Path) -> DutsPool:
    return DutsPool(duts_root(data), part="train")


def _single_clip(root: Path, seq: str, frames: int):
    from vossegcli.datasets.clips import Clip
    from PIL import Image

    from vossegcli.io.palette import read_label_png
    from vossegcli.io.video import open_frames

    masks = sorted((root / "masks" / seq).glob("*.png"))
    images, labels = [], []
    with open_frames(root / "videos" / f"{seq}.mp4") as reader:
        for t, frame in enumerate(reader):
            if t >= min(frames, len(masks)):
                break
            images.append(np.asarray(Image.fromarray(frame.image).resize(PAIR_SIZE, Image.Resampling.BILINEAR)))
            lab = read_label_png(masks[t]) > 0
            labels.append((np.asarray(Image.fromarray(lab.astype(np.uint8) * 255).resize(PAIR_SIZE, Image.Resampling.NEAREST)) > 127)
                          .astype(np.uint8))
    return Clip(f"single-{seq}", images, labels)


@torch.inference_mode()
def _encode(backbone: Backbone, clip) -> dict:
    """A clip → {"levels": [per frame {s32, s16, s8} float16], "labels": (T, H, W) uint8}."""
    levels = []
    for image in clip.frames:
        rgb = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            feats = backbone(rgb)
        levels.append({k: getattr(feats, k)[0].to(torch.float16).clone() for k in LEVEL_NAMES})
    return {"name": clip.name, "levels": levels, "labels": torch.from_numpy(np.stack(clip.labels))}


def build_cache(data: Path, cache: Path, config: InstanceTrainConfig, log=print) -> list[dict]:
    """Render and encode every training clip once (``cache/NAME.pt``); returns them loaded."""
    cache.mkdir(parents=True, exist_ok=True)
    root = davis16_root(data)
    train = split_sequences(root, "train")
    names = [f"multi-{1000 + i}" for i in range(config.synthetic)]
    names += [f"pair-{a}+{b}" for a, b in zip(train, train[1:] + train[:1])] + [f"single-{s}" for s in train]
    backbone, pool = None, None
    clips = []
    start = time.perf_counter()
    for j, name in enumerate(names):
        path = cache / f"{name}.pt"
        if not path.is_file():
            backbone = backbone or Backbone().eval()
            if name.startswith("multi-"):
                pool = pool or _training_pool(data)
                clip = multi_clip(pool, int(name.split("-")[1]), frames=config.frames)
            elif name.startswith("pair-"):
                a, b = name[len("pair-"):].split("+")
                clip = pair_clip(root, a, b, frames=24)
            else:
                clip = _single_clip(root, name[len("single-"):], 24)
            torch.save(_encode(backbone, clip), path)
        clips.append(torch.load(path, weights_only=False))
        if (j + 1) % 40 == 0:
            log(json.dumps({"cache": j + 1, "of": len(names), "seconds": round(time.perf_counter() - start)}))
    return clips


def soft_targets(labels: torch.Tensor, ids: list[int], grid: tuple[int, int]) -> torch.Tensor:
    """(T, H, W) id maps → (M, T, h, w) per-object coverage on the decoder's grid (area average)."""
    onehot = torch.stack([(labels == i).float() for i in ids])  # (M, T, H, W)
    return F.adaptive_avg_pool2d(onehot.flatten(0, 1)[:, None], grid)[:, 0].reshape(len(ids), labels.shape[0], *grid)


def window_loss(logits: torch.Tensor, scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, float]:
    """One window: logits (T, S, h, w), scores (T, S), targets (M, T, h, w) → (loss, mean matched IoU).

    Objects are assigned to slots by the Hungarian algorithm on soft IoU over the whole window."""
    probs = torch.sigmoid(logits).transpose(0, 1)  # (S, T, h, w)
    s = probs.shape[0]
    m = targets.shape[0]
    inter = torch.einsum("sthw,mthw->sm", probs, targets)
    union = probs.flatten(1).sum(dim=1)[:, None] + targets.flatten(1).sum(dim=1)[None] - inter
    iou = inter / union.clamp_min(1e-6)  # (S, M)
    pairs = best_assignment(iou.detach().cpu().numpy()) if m else []
    score_target = torch.zeros_like(scores)  # (T, S)
    mask_losses = []
    for slot, obj in pairs:
        visible = targets[obj].flatten(1).sum(dim=1) > 0.5  # (T,): the object is in view
        score_target[:, slot] = visible.float()
        bce = F.binary_cross_entropy_with_logits(logits[:, slot], targets[obj])
        mask_losses.append((1 - iou[slot, obj]) + bce)
    score_loss = F.binary_cross_entropy_with_logits(scores, score_target)
    mask_loss = torch.stack(mask_losses).mean() if mask_losses else logits.sum() * 0
    matched = float(np.mean([float(iou[a, b].detach()) for a, b in pairs])) if pairs else 0.0
    del s
    return mask_loss + score_loss, matched


class InstanceTrainer:
    def __init__(self, config: InstanceTrainConfig, clips: list[dict], log=print,
                 init: InstanceDecoder | None = None, device: torch.device | str = "cpu") -> None:
        self.cfg = config
        self.device = torch.device(device)
        self.log = log
        torch.manual_seed(config.seed)
        self.rng = random.Random(config.seed)
        self.synthetic = [c for c in clips if c["name"].startswith("multi-")]
        self.real = [c for c in clips if not c["name"].startswith("multi-")]
        self.net = InstanceDecoder(init.config if init is not None else InstanceConfig())
        if init is not None:  # continue from trained weights (their input statistics too)
            self.net.load_state_dict(init.state_dict())
        else:
            frames = [self.rng.choice(c["levels"]) for c in self.rng.choices(clips, k=64)]
            self.net.set_statistics([torch.stack([f[k] for f in frames]) for k in LEVEL_NAMES])
        self.net.to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.step = 0
        self.history: list[dict] = []

    def sample(self, rng: random.Random) -> tuple[dict, int]:
        pool = self.real if self.real and (not self.synthetic or rng.random() < self.cfg.real_ratio) else self.synthetic
        clip = rng.choice(pool)
        start = rng.randrange(0, max(1, len(clip["levels"]) - self.cfg.window + 1))
        return clip, start

    def item_loss(self, clip: dict, start: int) -> tuple[torch.Tensor, float]:
        frames = range(start, min(start + self.cfg.window, len(clip["levels"])))
        labels = clip["labels"][list(frames)].long().to(self.device)
        ids = [i for i in torch.unique(labels).tolist() if 0 < i < 255]
        state = None
        logits, scores = [], []
        for t in frames:
            lv = clip["levels"][t]
            out, score, state = self.net.forward_levels(*(lv[k][None].to(self.device).float() for k in LEVEL_NAMES), state)
            logits.append(out[0])
            scores.append(score[0])
        logits_t = torch.stack(logits)  # (T, S, h, w)
        targets = soft_targets(labels, ids, tuple(logits_t.shape[-2:])) if ids else logits_t.new_zeros((0, *logits_t.shape[:1], *logits_t.shape[-2:]))
        return window_loss(logits_t, torch.stack(scores), targets)

    def train(self) -> None:
        cfg = self.cfg
        self.net.train()
        window, ious = [], []
        start = time.perf_counter()
        while self.step < cfg.steps:
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.lr * (0.1 if self.step >= cfg.lr_drop * cfg.steps else 1.0)
            self.optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for _ in range(cfg.batch):
                loss, iou = self.item_loss(*self.sample(self.rng))
                (loss / cfg.batch).backward()
                total += float(loss.detach()) / cfg.batch
                ious.append(iou)
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
            self.optimizer.step()
            self.step += 1
            window.append(total)
            if self.step % 50 == 0 or self.step == cfg.steps:
                row = {"step": self.step, "loss": round(sum(window) / len(window), 4),
                       "matched_iou": round(float(np.mean(ious)), 3), "seconds": round(time.perf_counter() - start)}
                self.history.append(row)
                self.log(json.dumps(row))
                window, ious = [], []

    def save(self, path: Path, meta: dict) -> None:
        save_instances(self.net, path, {**meta, "train_config": self.cfg.as_dict(), "history": self.history})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="vosseg train-instances")
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=Path("runs/instances-cache"))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--synthetic", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", type=Path, default=None, help="continue from these instance-decoder weights")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (the cache is always built on the CPU)")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    cfg = InstanceTrainConfig(steps=args.steps, synthetic=args.synthetic, seed=args.seed)
    clips = build_cache(args.data, args.cache, cfg, log=lambda s: print(s, flush=True))
    print(json.dumps({"clips": len(clips), "seconds": round(time.perf_counter() - t0)}), flush=True)
    init = load_instances(args.init) if args.init else None
    trainer = InstanceTrainer(cfg, clips, log=lambda s: print(s, flush=True), init=init, device=device)
    trainer.train()
    command = " ".join(["vosseg train-instances", *(argv if argv is not None else sys.argv[1:])])
    trainer.save(args.out, {"command": command, "wall_seconds": round(time.perf_counter() - t0)})
    print(json.dumps({"saved": str(args.out), "seconds": round(time.perf_counter() - t0)}), flush=True)


if __name__ == "__main__":
    main()
