"""Training the primary-object network (:mod:`vossegcli.engine.primary`), COSNet's recipe.

Two alternating steps, as in the paper:

1. **saliency**: single images with object masks — ECSSD (1000) and DUTS-TR's training part (6300;
   every tenth image is held out for val-synth and never used) — train the embedding and the
   single-frame saliency head;
2. **video pairs**: two random frames of one davis16-train ``train`` sequence (the whole
   foreground is the object) train the embedding, the co-attention and the segmentation head; both
   frames are supervised (the symmetric co-attention gives each a summary of the other).

The backbone is frozen, so its stride-16 and stride-32 features are computed once and cached
(float16, ``<cache>/primary-features-v1/``); targets are the masks area-averaged to the stride-16
grid. Loss: COSNet's class-balanced (weighted) BCE, β = the foreground fraction of the target:
``−[(1−β)·y·log p + β·(1−y)·log(1−p)]``. It biases the network toward the object; after training,
the logit offset that maximizes IoU on the training frames is measured and stored with the weights.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vossegcli.engine.backbone import Backbone
from vossegcli.engine.geometry import downsample_mask
from vossegcli.engine.primary import PrimaryConfig, PrimaryObjectNet, save_primary
from vossegcli.files import atomic_torch_save
from vossegcli.datasets.cutouts import clean_background
from vossegcli.datasets.roots import davis16_root, duts_root, duts_split, split_sequences
from vossegcli.train.data import _read_clip

CACHE_VERSION = "primary-features-v1"


@dataclass
class PrimaryTrainConfig:
    steps: int = 3000
    saliency_batch: int = 8
    pair_batch: int = 2
    lr: float = 1e-3
    lr_drop_at: float = 0.8  # fraction of steps after which lr / 10
    weight_decay: float = 1e-5
    frame_stride: int = 2  # davis16-train frames cached: every n-th
    #: synthetic common-object pairs per step (0: none) and how many are generated (cached)
    synthetic_batch: int = 2
    synthetic_pairs: int = 2000
    gate_lr_scale: float = 0.01
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Sample:
    """Cached features of one image or frame; target: (1, 1, h16, w16) foreground fraction."""

    s16: torch.Tensor  # (1, 120, h, w) float16
    s32: torch.Tensor  # (1, 352, ⌈h/2⌉, ⌈w/2⌉) float16
    target: torch.Tensor  # (1, 1, h, w) float16 in [0, 1]


def _sample(backbone: Backbone, image: np.ndarray, fg: np.ndarray) -> Sample:
    """One cached item on the host: the backbone runs on its own device."""
    device = next(backbone.parameters()).device
    f = backbone(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(device))
    target = downsample_mask(torch.from_numpy(fg.astype(np.float32))[None, None], 16)
    return Sample(f.s16.half().cpu(), f.s32.half().cpu(), target.half())


def _cache_file(cache: Path, name: str) -> Path:
    return cache / CACHE_VERSION / f"{name}.pt"


def _pack(items):
    """Samples → plain tuples of tensors (the cache file holds no classes)."""
    if isinstance(items, dict):
        return {k: _pack(v) for k, v in items.items()}
    return [(s.s16, s.s32, s.target) for s in items]


def _unpack(items):
    if isinstance(items, dict):
        return {k: _unpack(v) for k, v in items.items()}
    return [Sample(*t) for t in items]


def _load_or_build(cache: Path, name: str, build: Callable[[], list]):
    path = _cache_file(cache, name)
    if path.is_file():
        return _unpack(torch.load(path, weights_only=True))
    items = build()
    atomic_torch_save(_pack(items), path)
    return items


def saliency_images(data: Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs: ECSSD and DUTS-TR's training part (held-out DUTS ids excluded)."""
    data = Path(data)
    ecssd = data / "ecssd" if (data / "ecssd").is_dir() else data
    pairs = [(p, ecssd / "masks" / f"{p.stem}.png") for p in sorted((ecssd / "images").glob("*.jpg"))]
    duts = duts_root(data)
    train_ids, _ = duts_split(duts)
    pairs += [(duts / "images" / f"{i}.jpg", duts / "masks" / f"{i}.png") for i in train_ids]
    return pairs


def build_saliency_cache(data: Path, cache: Path, backbone: Backbone,
                         progress: Callable[[str, int, int], None] | None = None) -> list[Sample]:
    def build() -> list[Sample]:
        pairs = saliency_images(data)
        out = []
        for k, (image, mask) in enumerate(pairs):
            with Image.open(image) as im, Image.open(mask) as m:
                rgb = np.asarray(im.convert("RGB"))
                fg = np.asarray(m.convert("L").resize((rgb.shape[1], rgb.shape[0]), Image.Resampling.NEAREST)) > 127
            out.append(_sample(backbone, rgb, fg))
            if progress:
                progress("saliency features", k + 1, len(pairs))
        return out

    return _load_or_build(cache, "saliency", build)


def build_video_cache(data: Path, split: str, cache: Path, backbone: Backbone, stride: int,
                      progress: Callable[[str, int, int], None] | None = None) -> dict[str, list[Sample]]:
    """{sequence: every ``stride``-th frame's Sample} for a davis16-train split (whole foreground)."""
    root = davis16_root(data)

    def build() -> dict[str, list[Sample]]:
        out: dict[str, list[Sample]] = {}
        names = split_sequences(root, split)
        for k, name in enumerate(names):
            masks = sorted((root / "masks" / name).glob("*.png"))
            clip = _read_clip(name, root / "videos" / f"{name}.mp4", masks, stride)  # void already 0
            frames = [_sample(backbone, image, lab > 0) for image, lab in zip(clip.frames, clip.labels)]
            out[name] = frames
            if progress:
                progress(f"{split} features", k + 1, len(names))
        return out

    return _load_or_build(cache, f"davis16-{split}-stride{stride}", build)


# -- synthetic "common object" pairs ---------------------------------------------------------------
#: Canvas of the synthetic pairs (H, W).
PAIR_SIZE = (240, 320)




def common_object_pair(pool, backgrounds: list[tuple[Path, Path]], rng: random.Random,
                       size: tuple[int, int] = PAIR_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two frames that share one object (the target) and differ in the others: (image_a, fg_a, image_b, fg_b).

    The target, cut out of a saliency image, appears in both frames (moved, scaled, turned); each
    frame also has its own distractor object (with probability 0.8), as salient in a single frame
    as the target, but absent from the other frame; the background is the same panned scene (70 %)
    or another one. Only the shared object is foreground — what the co-attention must learn: in
    one frame the two are alike, across the pair only the target recurs.
    """
    from vossegcli.datasets.cutouts import paste, scale_for_share

    h, w = size

    def background() -> np.ndarray:
        while True:
            bg = clean_background(*backgrounds[rng.randrange(len(backgrounds))], size, rng)
            if bg is not None:
                return bg

    def cutout():
        while True:
            cut = pool.cutout(rng.randrange(len(pool)))
            if cut is not None:
                return cut

    def window(bg: np.ndarray) -> np.ndarray:
        y = rng.randrange(bg.shape[0] - h + 1)
        x = rng.randrange(bg.shape[1] - w + 1)
        return bg[y:y + h, x:x + w].copy()

    bg = background()
    frames = [window(bg), window(bg if rng.random() < 0.7 else background())]
    target = cutout()
    share = rng.uniform(0.04, 0.25)
    pose = (rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h, scale_for_share(target, share, size), rng.uniform(-15, 15))
    out = []
    for k, canvas in enumerate(frames):
        labels = np.zeros((h, w), np.uint8)
        if rng.random() < 0.8:  # this frame's own distractor, pasted first (the target may cover it)
            d = cutout()
            paste(canvas, labels, d, 2, rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h,
                   scale_for_share(d, rng.uniform(0.5, 1.5) * share, size), rng.uniform(-20, 20))
        cx, cy, sc, ang = pose
        if k == 1:
            cx += rng.uniform(-0.25, 0.25) * w
            cy += rng.uniform(-0.2, 0.2) * h
            sc *= rng.uniform(0.8, 1.2)
            ang += rng.uniform(-15, 15)
        paste(canvas, labels, target, 1, cx, cy, sc, ang)
        out += [canvas, labels == 1]
    return out[0], out[1], out[2], out[3]


def build_pair_cache(data: Path, cache: Path, backbone: Backbone, count: int, seed: int = 0,
                     progress: Callable[[str, int, int], None] | None = None) -> list[tuple[Sample, Sample]]:
    """``count`` synthetic common-object pairs (ECSSD + DUTS-TR training images only)."""
    from vossegcli.train.data import ObjectPool

    def build() -> dict:
        pool = ObjectPool(data, ("ecssd", "duts"))
        backgrounds = saliency_images(data)
        rng = random.Random(seed)
        a_side, b_side = [], []
        for k in range(count):
            ia, fa, ib, fb = common_object_pair(pool, backgrounds, rng)
            a_side.append(_sample(backbone, ia, fa))
            b_side.append(_sample(backbone, ib, fb))
            if progress:
                progress("synthetic pairs", k + 1, count)
        return {"a": a_side, "b": b_side}

    pairs = _load_or_build(cache, f"common-pairs-{count}-seed{seed}", build)
    return list(zip(pairs["a"], pairs["b"]))


def weighted_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """COSNet's class-balanced BCE; β = the target's foreground fraction (soft targets allowed)."""
    beta = target.mean().clamp(0.02, 0.98)
    logp = F.logsigmoid(logits)
    log1mp = F.logsigmoid(-logits)
    return -((1 - beta) * target * logp + beta * (1 - target) * log1mp).mean() * 2


def _input_statistics(samples: list[Sample], net: PrimaryObjectNet, count: int = 400) -> None:
    """Per-channel mean/std of the concatenated backbone inputs over ``count`` samples."""
    rng = random.Random(0)
    picks = rng.sample(samples, min(count, len(samples)))
    with torch.no_grad():
        net.in_mean.zero_()
        net.in_std.fill_(1.0)
        device = net.in_mean.device
        xs = torch.cat([net.features_in(s.s16.to(device), s.s32.to(device)).flatten(2)[0] for s in picks], dim=1)  # (472, N)
        net.in_mean.copy_(xs.mean(dim=1))
        net.in_std.copy_(xs.std(dim=1).clamp_min(1e-3))


def nn_init_gate(net: PrimaryObjectNet) -> None:
    """Re-open the co-attention: the gate re-initialized half open (σ(0) = 0.5) and the segmentation
    head's weights on the attention summary Z zeroed, so Z enters as a correction learned from zero
    instead of as noise the fastest fix for which is to shut the gate again (what happened when the
    head had learned to ignore a closed gate's Z: docs/RESULTS.md)."""
    with torch.no_grad():
        torch.nn.init.normal_(net.gate.weight, std=1e-3)
        net.gate.bias.zero_()
        net.seg[0].weight[:, : net.config.channels].zero_()


def _iou(pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    p, t = pred, target > 0.5
    return float((p & t).sum()), float((p | t).sum())


class PrimaryTrainer:
    """Cache features, train, calibrate the logit offset, save ``<out>/primary.pt``."""

    def __init__(self, data: Path, out: Path, config: PrimaryTrainConfig, cache: Path,
                 log: Callable[[str], None] = print, init: Path | None = None,
                 device: torch.device | str = "cpu") -> None:
        self.data, self.out, self.config, self.cache, self.log = Path(data), Path(out), config, Path(cache), log
        self.device = torch.device(device)
        self.net = PrimaryObjectNet(PrimaryConfig())
        self.init = init
        if init is not None:  # warm start; the co-attention gate re-opened (it starts at σ(0) = 0.5)
            from vossegcli.engine.primary import load_primary

            self.net.load_state_dict(load_primary(init).state_dict())
            nn_init_gate(self.net)
        self.net.to(self.device)
        self.saliency: list[Sample] = []
        self.videos: dict[str, list[Sample]] = {}
        self.val: dict[str, list[Sample]] = {}
        self.pairs: list[tuple[Sample, Sample]] = []

    def prepare(self, progress: Callable[[str, int, int], None] | None = None) -> None:
        backbone = Backbone().to(self.device)
        t0 = time.time()
        self.saliency = build_saliency_cache(self.data, self.cache, backbone, progress)
        self.videos = build_video_cache(self.data, "train", self.cache, backbone, self.config.frame_stride, progress)
        self.val = build_video_cache(self.data, "val", self.cache, backbone, self.config.frame_stride, progress)
        if self.config.synthetic_batch:
            self.pairs = build_pair_cache(self.data, self.cache, backbone, self.config.synthetic_pairs, 0, progress)
        self.log(f"features ready in {time.time() - t0:.0f} s: {len(self.saliency)} images, "
                 f"{sum(map(len, self.videos.values()))} train frames, {sum(map(len, self.val.values()))} val frames")
        if self.init is None:
            _input_statistics(self.saliency + [s for v in self.videos.values() for s in v], self.net)

    def _embed(self, s: Sample) -> torch.Tensor:
        return self.net.embedding(s.s16.to(self.device), s.s32.to(self.device))

    def _target(self, s: Sample) -> torch.Tensor:
        return s.target.float().to(self.device)

    def train(self) -> None:
        cfg = self.config
        rng = random.Random(cfg.seed)
        torch.manual_seed(cfg.seed)
        # The gate gets a hundredth of the learning rate: with Adam's per-weight steps and |Z| ~ 8 over
        # 128 channels, a full-rate gate saturates shut within a few hundred steps and never reopens
        # (measured twice: docs/RESULTS.md); a slow gate leaves the head time to learn to use Z.
        gate = list(self.net.gate.parameters())
        rest = [p for n, p in self.net.named_parameters() if not n.startswith("gate.")]
        opt = torch.optim.Adam([{"params": rest, "scale": 1.0}, {"params": gate, "scale": cfg.gate_lr_scale}],
                               lr=cfg.lr, weight_decay=cfg.weight_decay)
        names = sorted(self.videos)
        self.net.train()
        t0 = time.time()
        running = {"sal": 0.0, "pair": 0.0}
        for step in range(1, cfg.steps + 1):
            lr = cfg.lr * (0.1 if step > cfg.lr_drop_at * cfg.steps else 1.0)
            for group in opt.param_groups:
                group["lr"] = lr * group["scale"]
            # step 1: saliency images
            opt.zero_grad()
            loss = sum(weighted_bce(self.net.saliency(self._embed(s)), self._target(s))
                       for s in rng.sample(self.saliency, cfg.saliency_batch)) / cfg.saliency_batch
            loss.backward()
            opt.step()
            running["sal"] += float(loss)
            # step 2: frame pairs of one sequence
            opt.zero_grad()
            total = 0.0
            pairs = [rng.sample(self.videos[rng.choice(names)], 2) for _ in range(cfg.pair_batch)]
            pairs += [rng.choice(self.pairs) for _ in range(cfg.synthetic_batch if self.pairs else 0)]
            for a, b in pairs:
                la, lb = self.net.pair(self._embed(a), self._embed(b))
                total = total + weighted_bce(la, self._target(a)) + weighted_bce(lb, self._target(b))
            loss = total / (2 * len(pairs))
            loss.backward()
            opt.step()
            running["pair"] += float(loss)
            if step % 100 == 0:
                self.log(f"step {step}/{cfg.steps} lr {lr:g} loss saliency {running['sal'] / 100:.4f} "
                         f"pairs {running['pair'] / 100:.4f} ({time.time() - t0:.0f} s)")
                running = {"sal": 0.0, "pair": 0.0}
            if step % 250 == 0 or step == cfg.steps:
                self.log(f"  val (stride-16 IoU, offset 0): {json.dumps(self.validate())}")
        self.net.eval()

    @torch.no_grad()
    def _logits(self, videos: dict[str, list[Sample]], refs: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(logits, target) for every cached frame; refs = N uniformly spread reference frames (0: saliency)."""
        self.net.eval()
        out = []
        for frames in videos.values():
            embs = [self._embed(s) for s in frames]
            ref = None
            if refs:
                idx = np.linspace(0, len(frames) - 1, refs).round().astype(int)
                ref = torch.cat([embs[i] for i in idx])
            for s, v in zip(frames, embs):
                logits = self.net.saliency(v) if ref is None else self.net.segment(v, self.net.summary_of(v, ref))
                out.append((logits, self._target(s)))
        return out

    def validate(self) -> dict:
        """Mean stride-16 IoU over the val split's cached frames: saliency only, N = 2 and 5 refs."""
        result = {}
        for refs in (0, 2, 5):
            ious = []
            for logits, target in self._logits(self.val, refs):
                inter, union = _iou(logits > 0, target)
                ious.append(inter / union if union else 1.0)
            result[f"refs{refs}"] = round(float(np.mean(ious)), 4)
        with torch.no_grad():  # how open the co-attention gate is on val frames (mean σ over cells)
            frames = next(iter(self.val.values()))
            va, vb = self._embed(frames[0]), self._embed(frames[len(frames) // 2])
            fa, fb = va.flatten(2), vb.flatten(2)
            pa, pb = self.net.project(fa.transpose(1, 2)), self.net.project(fb.transpose(1, 2))
            s = torch.bmm(pb * self.net.diagonal, pa.transpose(1, 2)) / math.sqrt(va.shape[1])
            z = torch.bmm(fb, torch.softmax(s, dim=1)).view_as(va)
            result["gate"] = round(float(torch.sigmoid(self.net.gate(z)).mean()), 4)
        self.net.train()
        return result

    def calibrate(self) -> float:
        """The logit offset maximizing the pooled stride-16 IoU on the *training* frames (N = 2)."""
        pairs = self._logits(self.videos, 2)
        best, best_iou = 0.0, -1.0
        for offset in np.arange(-4.0, 2.01, 0.25):
            inter = union = 0.0
            for logits, target in pairs:
                i, u = _iou(logits + offset > 0, target)
                inter, union = inter + i, union + u
            if inter / union > best_iou:
                best, best_iou = float(offset), inter / union
        self.log(f"logit offset {best:+.2f} (training-frame IoU {best_iou:.4f})")
        return best

    def save(self, meta: dict) -> Path:
        offset = self.calibrate()
        net = PrimaryObjectNet(PrimaryConfig(channels=self.net.config.channels, hidden=self.net.config.hidden,
                                             logit_offset=offset))
        net.load_state_dict({k: v.cpu() for k, v in self.net.state_dict().items()})
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "primary.pt"
        save_primary(net, path, {**meta, "train": self.config.as_dict()})
        return path


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "vosseg")
    p.add_argument("--steps", type=int, default=PrimaryTrainConfig.steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", type=Path, default=None, help="start from these primary-object weights")
    p.add_argument("--synthetic-batch", type=int, default=PrimaryTrainConfig.synthetic_batch)
    p.add_argument("--gate-lr-scale", type=float, default=PrimaryTrainConfig.gate_lr_scale)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    args = p.parse_args(argv)
    cfg = PrimaryTrainConfig(steps=args.steps, seed=args.seed, synthetic_batch=args.synthetic_batch,
                             gate_lr_scale=args.gate_lr_scale)
    from vossegcli.engine.device import resolve_device

    trainer = PrimaryTrainer(args.data, args.out, cfg, args.cache, init=args.init, device=resolve_device(args.device))
    t0 = time.time()
    last = [0.0]

    def progress(what: str, done: int, total: int) -> None:
        if time.time() - last[0] > 30 or done == total:
            last[0] = time.time()
            print(f"{what}: {done}/{total} ({time.time() - t0:.0f} s)", flush=True)

    trainer.prepare(progress)
    t1 = time.time()
    trainer.train()
    path = trainer.save({"wall_s_train": round(time.time() - t1, 1)})
    print(f"saved {path} ({time.time() - t0:.0f} s in all)")


if __name__ == "__main__":
    main()
