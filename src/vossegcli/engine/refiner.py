"""The refinement network R (FRTM-VOS section 3.2, with the DAVIS-2019 extension's parts).

R turns the target model's coarse stride-16 score map into full-resolution mask logits, using the
backbone features of the frame at strides 32, 16, 8 and 4. It runs deep-to-shallow, U-Net style:

    for each level d (s32 → s4), with features x_d and the previous level's output z:
        t  = TSE_d(x_d, cues)        # project x_d, concatenate the resized cues, 3 convs
        r  = RRB(t)                  # residual refinement block
        r  = CAB(r, deep[, a_d])     # channel attention gated by the deeper output (and attention)
        z  = RRB(r)
    logits = upsampler(z_s4)         # convex ×4 (default) or the learned full-resolution upsampler

* cues: the target model's scores, then any appearance evidence maps the config names
  (``evidence``: GMM, GDM, DAM — :mod:`vossegcli.engine.evidence`).
* TSE (target segmentation encoder): 1×1 conv C_d→w, ReLU, 1×1 conv w→w; concatenate the cues
  (bilinearly resized to the level); three 3×3 convs with ReLU.
* RRB: a = 1×1 conv; out = ReLU(a + conv3×3(ReLU(BN(conv3×3(a))))).
* CAB: per-channel gate = sigmoid(conv1×1(ReLU(conv1×1([GAP(shallow), GAP(deep)(, a_d)])))); out =
  shallow · gate + resize(deep). At the deepest level "deep" is the global average of the TSE's
  projected features. ``a_d`` is the level's target attention vector (``attention``): a TSE over a
  past frame's features and mask, global average pooling, two 1×1 convs (DAVIS-2019 §2.3).
* Upsamplers: "convex" — a 3×3 conv gives logits at stride 4 and a 1×1 conv convex weights that
  upsample them ×4 (:class:`ConvexUpsampler`); "learned" — ×2 bicubic, 3×3 conv w→w/2, ReLU, ×2
  bicubic, bilinear to the frame size, 3×3 conv w/2→1 at full resolution (:class:`Upsampler`).

Widths: the reference uses 64 channels everywhere; ``width`` is a parameter (default 32 — chosen
for CPU cost, see docs/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from vossegcli.engine.backbone import Backbone, BackboneFeatures
from vossegcli.engine.evidence import check_kinds, evidence_channels
from vossegcli.engine.geometry import upsample_scores
from vossegcli.files import atomic_torch_save

LEVELS = ("s32", "s16", "s8", "s4")  # deep to shallow


def _resize(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    # in float32: PyTorch's CPU interpolation kernels are several times slower in bfloat16
    return F.interpolate(_full(x), size=tuple(size), mode="bilinear", align_corners=False)


#: PyTorch's bicubic resampling with A = −0.75 at scale 2, align_corners=False: output 2m reads
#: source pixels m−2..m+1 at t = 0.75, output 2m+1 reads m−1..m+2 at t = 0.25 (indices clamped).
_BICUBIC_A = -0.75


def _cubic_taps(t: float) -> list[float]:
    a = _BICUBIC_A

    def near(x: float) -> float:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: float) -> float:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


_EVEN_TAPS = torch.tensor(_cubic_taps(0.75) + [0.0], dtype=torch.float64)  # offsets −2..+2
_ODD_TAPS = torch.tensor([0.0] + _cubic_taps(0.25), dtype=torch.float64)
#: (4, 5, 5): the four output phases (row even/odd × column even/odd) as 5×5 kernels.
_PHASE_KERNELS = torch.stack([torch.outer(r, c) for r in (_EVEN_TAPS, _ODD_TAPS) for c in (_EVEN_TAPS, _ODD_TAPS)])
_PHASE_KERNEL_CACHE: dict[tuple, Tensor] = {}


def _bicubic_x2(x: Tensor) -> Tensor:
    """``F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)``, computed as one
    depthwise 5×5 convolution with four outputs per channel (the four output phases) on the
    replicate-padded input, then a pixel shuffle — the same function (to float rounding), ~3× faster
    on CPU than PyTorch's bicubic kernel in ``channels_last``; always in float32 or wider."""
    x = _full(x).contiguous(memory_format=torch.channels_last)
    c = x.shape[1]
    key = (c, x.device, x.dtype)
    kernel = _PHASE_KERNEL_CACHE.get(key)
    if kernel is None:  # built once per (channels, device, dtype): no host-to-device copy per frame
        with torch.inference_mode(False):  # a normal tensor, usable by training after inference
            kernel = _PHASE_KERNELS.to(x.device, x.dtype).repeat(c, 1, 1)[:, None].contiguous(
                memory_format=torch.channels_last)
        _PHASE_KERNEL_CACHE[key] = kernel
    with torch.autocast(x.device.type, enabled=False):
        y = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel, groups=c)
    return F.pixel_shuffle(y, 2)


def _full(x: Tensor) -> Tensor:
    """Half-precision tensors as float32 (other dtypes unchanged)."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


class TSE(nn.Module):
    """Target segmentation encoder: (B, C_d, h, w) features + (B, k, h, w) cues → (B, w, h, w).

    The cues are the target model's scores (k = 1), followed by any appearance evidence maps.
    """

    def __init__(self, in_channels: int, width: int, cues: int = 1) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, width, 1), nn.ReLU(inplace=True), nn.Conv2d(width, width, 1))
        self.encode = nn.Sequential(
            nn.Conv2d(width + cues, width + 1, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width + 1, width + 1, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width + 1, width, 3, padding=1), nn.ReLU(inplace=True),
        )

    def forward(self, features: Tensor, cues: Tensor) -> tuple[Tensor, Tensor]:
        """features (B, C_d, h, w), or (1, C_d, h, w) shared by B objects; cues (B, k, h', w').
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
    """Channel attention block (DFN): gate the shallow map by both maps' global context — and, with
    target attention (DAVIS-2019 extension), by the level's attention vector too."""

    def __init__(self, width: int, attention: bool = False) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.Conv2d((3 if attention else 2) * width, width, 1), nn.ReLU(inplace=True), nn.Conv2d(width, width, 1),
            nn.Sigmoid(),
        )

    def forward(self, shallow: Tensor, deep: Tensor, attention: Tensor | None = None) -> Tensor:
        """shallow (B, w, h, w'), deep (B, w, h2, w2) or (B, w, 1, 1), attention (B, w) or None."""
        pooled = [shallow.mean(dim=(2, 3), keepdim=True), deep.mean(dim=(2, 3), keepdim=True)]
        if attention is not None:
            pooled.append(attention[:, :, None, None].to(shallow.dtype))
        return shallow * self.gate(torch.cat(pooled, dim=1)) + _resize(deep, shallow.shape[-2:])


class TargetAttention(nn.Module):
    """Target attention of one level (FRTM DAVIS-2019 extension §2.3): a TSE over a past frame's
    features and mask, global average pooling and two 1×1 convolutions → (B, w) attention vector."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.tse = TSE(in_channels, width)
        self.head = nn.Sequential(nn.Conv2d(width, width, 1), nn.ReLU(inplace=True), nn.Conv2d(width, width, 1))

    def forward(self, features: Tensor, masks: Tensor) -> Tensor:
        """features (B or 1, C_d, h, w); masks (B, 1, h', w') target probabilities → (B, w)."""
        t, _ = self.tse(features, masks)
        return self.head(t.mean(dim=(2, 3), keepdim=True))[:, :, 0, 0]


class Upsampler(nn.Module):
    """Learned ×4 upsampler from stride 4 to the frame: (B, w, H/4, W/4) → (B, 1, H, W) logits."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width // 2, 3, padding=1)
        self.conv2 = nn.Conv2d(width // 2, 1, 3, padding=1)

    def forward(self, x: Tensor, out_hw: tuple[int, int]) -> Tensor:
        x = _bicubic_x2(x)
        x = F.relu(self.conv1(x))
        # conv2(resize(bicubic(x))) computed in a cheaper order with the same result: the channel
        # sums of conv2's 9 taps commute with the per-channel upsampling, so the 16 channels are
        # reduced to 9 tap maps at half resolution, those are upsampled, and the taps are summed
        # shifted at full resolution (a 3×3 conv with one output channel is slow at full size).
        w = self.conv2.weight  # (1, c, 3, 3)
        taps = F.conv2d(x, w[0].reshape(w.shape[1], 9).T[:, :, None, None]).contiguous()  # (B, 9, H/2, W/2)
        taps = _bicubic_x2(taps)
        return _shifted_tap_sum(_resize(taps, out_hw).contiguous()) + self.conv2.bias.view(1, 1, 1, 1)


def _shifted_tap_sum(taps: Tensor) -> Tensor:
    """(B, 9, H, W) tap maps → (B, 1, H, W): out[y, x] = Σ_ij taps[3i+j][y+i−1, x+j−1] (zero outside).

    The sum a 3×3 convolution makes of its taps, as window additions: zero-padding a full-size
    tensor costs more than the additions themselves on CPU.
    """
    h, w = taps.shape[-2:]
    out = taps[:, 4:5].clone()  # the centre tap
    for d in (0, 1, 2, 3, 5, 6, 7, 8):
        dy, dx = d // 3 - 1, d % 3 - 1
        src = taps[:, d : d + 1, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
        window = (slice(None), slice(None), slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0)))
        if torch.is_grad_enabled():
            out = _add_window(out, window, src)
        else:
            out[window] += src
    return out


def _add_window(out: Tensor, window: tuple, src: Tensor) -> Tensor:
    """out with src added into out[window], out of place (keeps autograd happy)."""
    return out + F.pad(src, (window[3].start, out.shape[-1] - window[3].stop, window[2].start, out.shape[-2] - window[2].stop))


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


UPSAMPLERS = ("learned", "convex")


@dataclass(frozen=True)
class RefinerConfig:
    width: int = 32
    #: Add ``a · (U(s) − 0.5)`` — the D-only engine's logit, with U the aligned bilinear upsampling
    #: and ``a`` learned (initialized to the engine's score sharpness) — to R's output, and start R's
    #: last convolution at zero: an untrained refiner then reproduces the D-only engine exactly,
    #: and training learns corrections to it. Not in the paper; measured in docs/RESULTS.md.
    score_skip: bool = True
    skip_init: float = 8.0
    #: Appearance evidence maps taken beside the scores (engine/evidence.py: "gmm", "gdm", "dam").
    evidence: tuple[str, ...] = ()
    #: Target attention vectors in every CAB (DAVIS-2019 extension); the engine refreshes them from
    #: the latest frame and mask whenever the target model is updated.
    attention: bool = False
    #: "learned": bicubic ×2, conv, bicubic ×2, conv at full resolution (the DAVIS-2019 upsampler);
    #: "convex": logits at stride 4 and a learned convex ×4 upsampling (:class:`ConvexUpsampler`).
    upsampler: str = "learned"

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", check_kinds(self.evidence))
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(f"unknown upsampler {self.upsampler!r}; choose from {', '.join(UPSAMPLERS)}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["evidence"] = list(self.evidence)
        return d


class Refiner(nn.Module):
    """Coarse target scores (+ evidence, + attention) and backbone features → full-resolution logits."""

    def __init__(self, config: RefinerConfig | None = None, channels: dict[str, int] | None = None) -> None:
        super().__init__()
        self.config = config or RefinerConfig()
        channels = channels or Backbone.CHANNELS
        w = self.config.width
        cues = 1 + evidence_channels(self.config.evidence)
        self.tse = nn.ModuleDict({lvl: TSE(channels[lvl], w, cues) for lvl in LEVELS})
        self.rrb1 = nn.ModuleDict({lvl: RRB(w) for lvl in LEVELS})
        self.cab = nn.ModuleDict({lvl: CAB(w, self.config.attention) for lvl in LEVELS})
        self.rrb2 = nn.ModuleDict({lvl: RRB(w) for lvl in LEVELS})
        if self.config.attention:
            self.attention = nn.ModuleDict({lvl: TargetAttention(channels[lvl], w) for lvl in LEVELS})
        if self.config.upsampler == "convex":
            self.upsampler = ConvexUpsampler(w)
            last = self.upsampler.logits
        else:
            self.upsampler = Upsampler(w)
            last = self.upsampler.conv2
        if self.config.score_skip:
            self.skip_scale = nn.Parameter(torch.tensor(float(self.config.skip_init)))
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def attention_vectors(self, features: BackboneFeatures, masks: Tensor) -> Tensor:
        """features of one frame (or of B frames); masks (B, 1, h, w) the objects' target
        probabilities there (any resolution) → (B, 4, w) attention vectors, one per level."""
        return torch.stack([self.attention[lvl](getattr(features, lvl), masks) for lvl in LEVELS], dim=1).float()

    def forward(self, features: BackboneFeatures, scores: Tensor, out_hw: tuple[int, int],
                evidence: Tensor | None = None, attention: Tensor | None = None) -> Tensor:
        """features: backbone features of B frames (or of 1 frame, broadcast over B objects);
        scores: (B, 1, h16, w16) raw target-model scores; evidence: (B, k, h16, w16) appearance maps
        (exactly the config's kinds); attention: (B, 4, w) from :meth:`attention_vectors`
        → (B, 1, H, W) logits."""
        k = evidence_channels(self.config.evidence)
        if k:
            if evidence is None or evidence.shape[1] != k:
                raise ValueError(f"this refiner takes {k} evidence channels ({', '.join(self.config.evidence)})")
            cues = torch.cat([scores, evidence.to(scores.dtype)], dim=1)
        else:
            cues = scores
        if self.config.attention and attention is None:
            raise ValueError("this refiner takes target attention vectors (see attention_vectors)")
        z: Tensor | None = None
        for i, lvl in enumerate(LEVELS):
            x = getattr(features, lvl)
            t, projected = self.tse[lvl](x, cues)
            r = self.rrb1[lvl](t)
            deep = projected.mean(dim=(2, 3), keepdim=True) if z is None else z
            z = self.rrb2[lvl](self.cab[lvl](r, deep, attention[:, i] if self.config.attention else None))
        assert z is not None
        if self.config.upsampler == "convex":
            coarse = _full(self.upsampler.logits(z))
            if self.config.score_skip:
                coarse = coarse + self.skip_scale * (_resize(scores, coarse.shape[-2:]) - 0.5)
            logits = self.upsampler.upsample(z, coarse)
            if logits.shape[-2] >= out_hw[0] and logits.shape[-1] >= out_hw[1]:
                return logits[..., : out_hw[0], : out_hw[1]]
            return _resize(logits, out_hw)
        logits = self.upsampler(z, out_hw)
        if self.config.score_skip:
            logits = logits + self.skip_scale * (upsample_scores(scores, tuple(out_hw), 1) - 0.5)
        return logits


def load_partial(refiner: Refiner, state_dict: dict[str, Tensor]) -> list[str]:
    """Start ``refiner`` from another refiner's weights (a warm start for a larger design).

    Tensors of the same name and shape are copied. A convolution that grew along its input-channel
    axis (a TSE taking evidence maps, a CAB taking attention) gets the old weights in its leading
    input channels and zeros in the new ones, so it computes what the old one did until trained.
    Returns the names left at their fresh initialization.
    """
    fresh = []
    own = refiner.state_dict()
    with torch.no_grad():
        for name, target in own.items():
            source = state_dict.get(name)
            if source is None and name.startswith("attention.") and ".tse." in name:
                # a level's attention TSE starts as a copy of the level's main TSE
                _, lvl, rest = name.split(".", 2)
                source = state_dict.get(f"tse.{lvl}.{rest[len('tse.'):]}")
                if source is not None and source.dim() == 4 and source.shape[1] > target.shape[1]:
                    source = source[:, : target.shape[1]]
            if source is None:
                fresh.append(name)
            elif source.shape == target.shape:
                target.copy_(source)
            elif (source.dim() == 4 and source.shape[0] == target.shape[0] and source.shape[2:] == target.shape[2:]
                  and source.shape[1] < target.shape[1]):
                target.zero_()
                target[:, : source.shape[1]] = source
            else:
                fresh.append(name)
    refiner.load_state_dict(own)
    return fresh


# -- weights files -------------------------------------------------------------------------------
def save_refiner(refiner: Refiner, path: Path, meta: dict | None = None) -> None:
    """Save the refiner's state dict with its config (and optional metadata) to ``path``."""
    atomic_torch_save({"config": refiner.config.as_dict(), "state_dict": refiner.state_dict(), "meta": meta or {}}, path)


def load_refiner(path: Path, device: torch.device | str = "cpu") -> Refiner:
    """Load a refiner saved by :func:`save_refiner` (eval mode)."""
    blob = torch.load(path, map_location=device, weights_only=True)
    config = dict(blob["config"])
    config["evidence"] = tuple(config.get("evidence", ()))
    refiner = Refiner(RefinerConfig(**config))
    refiner.load_state_dict(blob["state_dict"])
    return refiner.to(device).eval()
