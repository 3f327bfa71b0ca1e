"""The refinement network R (FRTM-VOS section 3.2): coarse target scores → full-resolution logits.

R turns the target model's coarse stride-16 score map into full-resolution mask logits, using the
backbone features of the frame at strides 32, 16, 8 and 4. It runs deep-to-shallow, U-Net style:

    for each level d (s32 → s4), with features x_d and the previous level's output z:
        t  = TSE_d(x_d, scores)      # project x_d, concatenate the resized scores, 3 convs
        r  = RRB(t)                  # residual refinement block
        r  = CAB(r, deep)            # channel attention gated by the deeper output
        z  = RRB(r)
    logits = convex ×4 upsampling of conv3×3(z_s4) (+ the score skip)

* TSE (target segmentation encoder): 1×1 conv C_d→w, ReLU, 1×1 conv w→w; concatenate the scores
  (bilinearly resized to the level); three 3×3 convs with ReLU.
* RRB: a = 1×1 conv; out = ReLU(a + conv3×3(ReLU(BN(conv3×3(a))))).
* CAB: per-channel gate = sigmoid(conv1×1(ReLU(conv1×1([GAP(shallow), GAP(deep)])))); out =
  shallow · gate + resize(deep). At the deepest level "deep" is the global average of the TSE's
  projected features.
* Upsampler: a 3×3 conv gives logits at stride 4 and a 1×1 conv convex weights that upsample them
  ×4 (:class:`ConvexUpsampler`).

Widths: the reference uses 64 channels everywhere; ``width`` is a parameter (default 32 — chosen
for CPU cost, see docs/RESULTS.md). Variants measured without gain and removed from the package
(appearance evidence maps, the DAVIS-2019 target attention, its learned full-resolution upsampler):
docs/RESULTS.md, "Refiner variants"; their code is in git history (commit 978ebef).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from vossegcli.engine.backbone import Backbone, BackboneFeatures
from vossegcli.files import atomic_torch_save

LEVELS = ("s32", "s16", "s8", "s4")  # deep to shallow


def _resize(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    # in float32: PyTorch's CPU interpolation kernels are several times slower in bfloat16
    return F.interpolate(_full(x), size=tuple(size), mode="bilinear", align_corners=False)


def _full(x: Tensor) -> Tensor:
    """Half-precision tensors as float32 (other dtypes unchanged)."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


class TSE(nn.Module):
    """Target segmentation encoder: (B, C_d, h, w) features + (B, 1, h, w) scores → (B, w, h, w)."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, width, 1), nn.ReLU(inplace=True), nn.Conv2d(width, width, 1))
        self.encode = nn.Sequential(
            nn.Conv2d(width + 1, width + 1, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width + 1, width + 1, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width + 1, width, 3, padding=1), nn.ReLU(inplace=True),
        )

    def forward(self, features: Tensor, cues: Tensor) -> tuple[Tensor, Tensor]:
        """features (B, C_d, h, w), or (1, C_d, h, w) shared by B objects; cues: scores (B, 1, h', w').
        Returns (encoding (B, w, h, w), projected features (B, w, h, w))."""
        h = self.reduce(features)  # object-independent: computed once per frame
        if h.shape[0] != cues.shape[0]:
            h = h.expand(cues.shape[0], -1, -1, -1)
        return self.encode(torch.cat([h, _resize(cues, h.shape[-2:]).to(h.dtype)], dim=1)), h


class RRB(nn.Module):
    """Refinement residual block (DFN)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(width, width, 1)
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        a = self.inp(x)
        return F.relu(a + self.body(a))


class CAB(nn.Module):
    """Channel attention block (DFN): gate the shallow map by both maps' global context."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.Conv2d(2 * width, width, 1), nn.ReLU(inplace=True), nn.Conv2d(width, width, 1), nn.Sigmoid(),
        )

    def forward(self, shallow: Tensor, deep: Tensor) -> Tensor:
        """shallow (B, w, h, w'), deep (B, w, h2, w2) or (B, w, 1, 1)."""
        pooled = [shallow.mean(dim=(2, 3), keepdim=True), deep.mean(dim=(2, 3), keepdim=True)]
        return shallow * self.gate(torch.cat(pooled, dim=1)) + _resize(deep, shallow.shape[-2:])


class ConvexUpsampler(nn.Module):
    """Logits at stride 4 with a learned convex ×4 upsampling (as RAFT's flow upsampling).

    (B, w, h, w') → (B, 1, 4h, 4w') logits: a 3×3 conv gives the stride-4 logit map; a 1×1 conv gives,
    for each of the 16 output pixels of a cell, softmax weights over the cell's 3×3 neighbourhood;
    each output pixel is that convex combination of stride-4 logits. Its bias starts at the log of
    bilinear interpolation's weights, so an untrained upsampler interpolates bilinearly. All
    full-resolution work is one weighted sum of 9 maps.
    """

    def __init__(self, width: int, factor: int = 4) -> None:
        super().__init__()
        self.factor = factor
        self.logits = nn.Conv2d(width, 1, 3, padding=1)
        self.weights = nn.Conv2d(width, 9 * factor * factor, 1)
        nn.init.zeros_(self.weights.weight)
        with torch.no_grad():
            self.weights.bias.copy_(torch.log(_bilinear_weights(factor).clamp_min(1e-4)).flatten())

    def upsample(self, z: Tensor, coarse: Tensor) -> Tensor:
        """Convex ×factor upsampling of ``coarse`` (B, 1, h, w') with weights predicted from z."""
        b, _, h, w = coarse.shape
        f = self.factor
        weights = torch.softmax(_full(self.weights(z)).reshape(b, 9, f * f, h, w), dim=1)
        neighbours = F.unfold(F.pad(_full(coarse), (1, 1, 1, 1), mode="replicate"), 3).reshape(b, 9, 1, h, w)
        return F.pixel_shuffle((weights * neighbours).sum(dim=1), f)


def _bilinear_weights(factor: int) -> Tensor:
    """(9, factor²): bilinear interpolation (align_corners=False) of the factor×factor output pixels of
    a cell from its 3×3 neighbourhood, as convex weights (neighbour index 3·(dy+1) + (dx+1))."""
    offsets = [(2 * j + 1 - factor) / (2 * factor) for j in range(factor)]  # sub-pixel offsets in cells

    def taps(o: float) -> list[float]:
        return [max(-o, 0.0), 1 - abs(o), max(o, 0.0)]

    out = torch.zeros(9, factor * factor)
    for sy, oy in enumerate(offsets):
        for sx, ox in enumerate(offsets):
            out[:, sy * factor + sx] = torch.outer(torch.tensor(taps(oy)), torch.tensor(taps(ox))).flatten()
    return out


#: Config fields of removed variants, as files written before their removal name them, with the one
#: value this version still runs.
_REMOVED = {"evidence": [], "attention": False, "upsampler": "convex"}


@dataclass(frozen=True)
class RefinerConfig:
    width: int = 32
    #: Add ``a · (U(s) − 0.5)`` — the D-only engine's logit, with U the aligned bilinear upsampling
    #: and ``a`` learned (initialized to the engine's score sharpness) — to R's output, and start R's
    #: last convolution at zero: an untrained refiner then reproduces the D-only engine exactly,
    #: and training learns corrections to it. Not in the paper; measured in docs/RESULTS.md.
    score_skip: bool = True
    skip_init: float = 8.0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, config: dict, source: str = "refiner weights") -> "RefinerConfig":
        """A config from a weights file's dict; one that needs a removed variant is a ValueError."""
        config = dict(config)
        for key, supported in _REMOVED.items():
            value = config.pop(key, supported)
            if (list(value) if isinstance(value, (list, tuple)) else value) != supported:
                raise ValueError(f"{source}: this refiner uses {key}={value!r}, a variant removed from vosseg "
                                 "(it measured no gain); retrain it with `vosseg train`")
        return cls(**config)


class Refiner(nn.Module):
    """Coarse target scores and backbone features → full-resolution logits."""

    def __init__(self, config: RefinerConfig | None = None, channels: dict[str, int] | None = None) -> None:
        super().__init__()
        self.config = config or RefinerConfig()
        channels = channels or Backbone.CHANNELS
        w = self.config.width
        self.tse = nn.ModuleDict({lvl: TSE(channels[lvl], w) for lvl in LEVELS})
        self.rrb1 = nn.ModuleDict({lvl: RRB(w) for lvl in LEVELS})
        self.cab = nn.ModuleDict({lvl: CAB(w) for lvl in LEVELS})
        self.rrb2 = nn.ModuleDict({lvl: RRB(w) for lvl in LEVELS})
        self.upsampler = ConvexUpsampler(w)
        if self.config.score_skip:
            self.skip_scale = nn.Parameter(torch.tensor(float(self.config.skip_init)))
            nn.init.zeros_(self.upsampler.logits.weight)
            nn.init.zeros_(self.upsampler.logits.bias)

    def forward(self, features: BackboneFeatures, scores: Tensor, out_hw: tuple[int, int]) -> Tensor:
        """features: backbone features of B frames (or of 1 frame, broadcast over B objects);
        scores: (B, 1, h16, w16) raw target-model scores → (B, 1, H, W) logits."""
        z: Tensor | None = None
        for lvl in LEVELS:
            x = getattr(features, lvl)
            t, projected = self.tse[lvl](x, scores)
            r = self.rrb1[lvl](t)
            deep = projected.mean(dim=(2, 3), keepdim=True) if z is None else z
            z = self.rrb2[lvl](self.cab[lvl](r, deep))
        assert z is not None
        coarse = _full(self.upsampler.logits(z))
        if self.config.score_skip:
            coarse = coarse + self.skip_scale * (_resize(scores, coarse.shape[-2:]) - 0.5)
        logits = self.upsampler.upsample(z, coarse)
        if logits.shape[-2] >= out_hw[0] and logits.shape[-1] >= out_hw[1]:
            return logits[..., : out_hw[0], : out_hw[1]]
        return _resize(logits, out_hw)


# -- weights files -------------------------------------------------------------------------------
def save_refiner(refiner: Refiner, path: Path, meta: dict | None = None) -> None:
    """Save the refiner's state dict with its config (and optional metadata) to ``path``."""
    atomic_torch_save({"config": refiner.config.as_dict(), "state_dict": refiner.state_dict(), "meta": meta or {}}, path)


def load_refiner(path: Path, device: torch.device | str = "cpu") -> Refiner:
    """Load a refiner saved by :func:`save_refiner` (eval mode)."""
    blob = torch.load(path, map_location=device, weights_only=True)
    refiner = Refiner(RefinerConfig.from_dict(blob["config"], str(path)))
    refiner.load_state_dict(blob["state_dict"])
    return refiner.to(device).eval()
