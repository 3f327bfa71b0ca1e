"""The primary-object network (COSNet, Lu et al. CVPR 2019) on the project's frozen backbone.

Unsupervised VOS: no mask is given; the network segments the object that is *locally salient*
(stands out in the frame) and *globally consistent* (keeps appearing across the video). It sees a
query frame ``a`` and N reference frames ``b_1..b_N`` of the same video:

    V      = embed(s16, up(s32))                       # (B, C, h16, w16) per frame
    saliency logits = sal(V)                           # the "no co-attention" head (single frame)
    S_n    = (P V_bn)ᵀ D (P V_a) / sqrt(C)             # symmetric co-attention, (N_b, N_a) per ref
    Z_n    = V_bn · softmax_b(S_n)                     # attention summary of ref n for each a-cell
    Z      = mean_n  Z_n * σ(w_g · Z_n + b_g)          # gated, averaged over the N references
    logits = seg([Z, V_a])                             # (B, 1, h16, w16), stride 16

P is a learned C×C projection (initialized orthogonal) and D a learned diagonal: W = PᵀDP is the
symmetric weight matrix of the slides' Eq. 4. Training is symmetric as well (both frames of a pair
get an attention summary of the other, both are supervised): :meth:`PrimaryObjectNet.pair`.

The stride-16 output is turned into a full-resolution mask by the shipped refiner (the same
decoder as the semi-supervised engine; it reads the network's probability as its "target score",
0 = background, 1 = object), see :class:`PrimarySegmenter`.

Shapes: B frames, C = ``config.channels``, (h, w) the stride-16 grid of the frame.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from vossegcli.engine.backbone import Backbone, BackboneFeatures
from vossegcli.engine.refiner import Refiner
from vossegcli.files import atomic_torch_save


@dataclass(frozen=True)
class PrimaryConfig:
    #: Channels of the embedding V (the co-attention's C).
    channels: int = 128
    #: Hidden width of the embedding's first (1×1) layer.
    hidden: int = 256
    #: Added to the logits at inference: the network is trained with class-balanced (weighted)
    #: BCE, which biases it toward the object; the offset that maximizes IoU on the training
    #: frames is measured after training and stored here (0 during training).
    logit_offset: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class PrimaryObjectNet(nn.Module):
    """Backbone features of a query frame (and of reference frames) → stride-16 object logits."""

    def __init__(self, config: PrimaryConfig | None = None) -> None:
        super().__init__()
        self.config = config or PrimaryConfig()
        c, hidden = self.config.channels, self.config.hidden
        inputs = Backbone.CHANNELS["s16"] + Backbone.CHANNELS["s32"]
        # per-channel standardization of the frozen backbone's features (set from training data)
        self.register_buffer("in_mean", torch.zeros(inputs))
        self.register_buffer("in_std", torch.ones(inputs))
        self.embed = nn.Sequential(
            nn.Conv2d(inputs, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, c, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1),
        )
        self.saliency_head = nn.Sequential(nn.ReLU(), nn.Conv2d(c, 1, 3, padding=1))
        self.project = nn.Linear(c, c, bias=False)  # P
        nn.init.orthogonal_(self.project.weight)
        self.diagonal = nn.Parameter(torch.ones(c))  # D
        self.gate = nn.Conv2d(c, 1, 1)  # f_g
        self.seg = nn.Sequential(
            nn.Conv2d(2 * c, c, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c, c // 2, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c // 2, 1, 1),
        )

    # -- parts ----------------------------------------------------------------------------------
    def features_in(self, s16: Tensor, s32: Tensor) -> Tensor:
        """(B, 120, h, w) and (B, 352, ⌈h/2⌉, ⌈w/2⌉) → (B, 472, h, w) standardized input."""
        up = F.interpolate(s32.float(), size=s16.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([s16.float(), up], dim=1)
        return (x - self.in_mean[:, None, None]) / self.in_std[:, None, None]

    def embedding(self, s16: Tensor, s32: Tensor) -> Tensor:
        """V: (B, C, h, w)."""
        return self.embed(self.features_in(s16, s32))

    def saliency(self, v: Tensor) -> Tensor:
        """(B, C, h, w) → (B, 1, h, w) single-frame logits (no co-attention)."""
        return self.saliency_head(v)

    def summary(self, va: Tensor, vb: Tensor) -> tuple[Tensor, Tensor]:
        """Gated symmetric co-attention of a pair: va (B, C, ha, wa), vb (B, C, hb, wb) →
        (Z_a (B, C, ha, wa) summarizing b for every cell of a, Z_b (B, C, hb, wb))."""
        b, c = va.shape[:2]
        fa, fb = va.flatten(2), vb.flatten(2)  # (B, C, Na), (B, C, Nb)
        pa = self.project(fa.transpose(1, 2))  # (B, Na, C)
        pb = self.project(fb.transpose(1, 2))  # (B, Nb, C)
        s = torch.bmm(pb * self.diagonal, pa.transpose(1, 2)) / math.sqrt(c)  # (B, Nb, Na)
        za = torch.bmm(fb, F.softmax(s, dim=1)).view_as(va)
        zb = torch.bmm(fa, F.softmax(s, dim=2).transpose(1, 2)).view_as(vb)
        return self._gated(za), self._gated(zb)

    def summary_of(self, va: Tensor, refs: Tensor) -> Tensor:
        """va (1, C, h, w) and N reference embeddings (N, C, hb, wb) → Z (1, C, h, w), the mean
        of the N gated attention summaries (attention-summary fusion, COSNet Eq. 13)."""
        fa = va.flatten(2)[0]  # (C, Na)
        pa = self.project(fa.t())  # (Na, C)
        fb = refs.flatten(2)  # (N, C, Nb)
        pb = self.project(fb.transpose(1, 2)) * self.diagonal  # (N, Nb, C)
        s = torch.matmul(pb, pa.t()) / math.sqrt(va.shape[1])  # (N, Nb, Na)
        z = torch.bmm(fb, F.softmax(s, dim=1)).view(refs.shape[0], *va.shape[1:])
        return self._gated(z).mean(dim=0, keepdim=True)

    def _gated(self, z: Tensor) -> Tensor:
        return z * torch.sigmoid(self.gate(z))

    def segment(self, v: Tensor, z: Tensor) -> Tensor:
        """V and its attention summary Z (B, C, h, w) → (B, 1, h, w) logits."""
        return self.seg(torch.cat([z, v], dim=1))

    # -- training and inference entry points ----------------------------------------------------
    def pair(self, va: Tensor, vb: Tensor) -> tuple[Tensor, Tensor]:
        """Both frames of a pair segmented with the other as reference (training)."""
        za, zb = self.summary(va, vb)
        return self.segment(va, za), self.segment(vb, zb)

    def forward(self, v: Tensor, refs: Tensor | None) -> Tensor:
        """v (1, C, h, w), refs (N, C, hb, wb) or None → (1, 1, h, w) logits, offset applied;
        without references: the saliency head's logits."""
        if refs is None or refs.shape[0] == 0:
            return self.saliency(v) + self.config.logit_offset
        return self.segment(v, self.summary_of(v, refs)) + self.config.logit_offset


# -- weights files ---------------------------------------------------------------------------------
def save_primary(net: PrimaryObjectNet, path: Path, meta: dict | None = None) -> None:
    atomic_torch_save({"config": net.config.as_dict(), "state_dict": net.state_dict(), "meta": meta or {}}, path)


def load_primary(path: Path, device: torch.device | str = "cpu") -> PrimaryObjectNet:
    """Load a network saved by :func:`save_primary` (eval mode)."""
    blob = torch.load(path, map_location=device, weights_only=True)
    net = PrimaryObjectNet(PrimaryConfig(**blob["config"]))
    net.load_state_dict(blob["state_dict"])
    return net.to(device).eval()


# -- inference: frames in, probabilities out --------------------------------------------------------
@dataclass
class PrimaryPrediction:
    """One frame's primary-object prediction at the engine's size."""

    probability: np.ndarray  # (H, W) float32 in [0, 1], full resolution
    mask: np.ndarray  # (H, W) bool, probability > 0.5
    confidence: float  # see :func:`mask_confidence`


def mask_confidence(prob: np.ndarray) -> float:
    """How sure the network is of the frame's mask, in [0, 1]: the mean decisiveness
    (|2p − 1|) over the mask's pixels and a band around it (the bounding box grown by a quarter
    on each side), zero when no pixel is above 0.5. A crisp, well-separated mask scores near 1;
    a blotchy or faint one lower."""
    fg = prob > 0.5
    if not fg.any():
        return 0.0
    ys, xs = np.nonzero(fg)
    h, w = prob.shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    dy, dx = (y1 - y0) // 4 + 1, (x1 - x0) // 4 + 1
    box = prob[max(0, y0 - dy): min(h, y1 + dy), max(0, x0 - dx): min(w, x1 + dx)]
    return float(np.abs(2.0 * box - 1.0).mean())


class PrimarySegmenter:
    """Backbone + primary-object network + refiner: frames (H, W, 3) uint8 → object masks.

    Stateless apart from the loaded networks; the caller keeps the reference embeddings
    (:meth:`reference`) and passes them to :meth:`predict`.
    """

    def __init__(self, net: PrimaryObjectNet, refiner: Refiner | None, backbone: Backbone | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                 instances: torch.nn.Module | None = None) -> None:
        """``dtype``: autocast dtype of the backbone and the refiner (None: float32); the
        primary-object network itself always computes in float32. ``instances``: RVOS's instance
        decoder (:class:`vossegcli.engine.rvos.InstanceDecoder`) when the run proposes several
        objects, loaded once here for the seed frame and every later look."""
        self.device = torch.device(device)
        self.dtype = dtype
        self.backbone = (backbone or Backbone()).to(self.device)
        self.net = net.to(self.device).eval()
        self.refiner = refiner.to(self.device).eval() if refiner is not None else None
        self.instances = instances.to(self.device).eval() if instances is not None else None

    def _tensor(self, image: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(self.device)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    @torch.no_grad()
    def features(self, image: np.ndarray) -> BackboneFeatures:
        with self._autocast():
            return self.backbone(self._tensor(image))

    @torch.no_grad()
    def reference(self, image: np.ndarray) -> Tensor:
        """(H, W, 3) uint8 → (1, C, h16, w16) embedding to pass as a reference."""
        f = self.features(image)
        return self.net.embedding(f.s16, f.s32)

    @torch.no_grad()
    def predict(self, image: np.ndarray, refs: Tensor | None,
                features: BackboneFeatures | None = None) -> PrimaryPrediction:
        """One frame; ``refs`` (N, C, h16, w16) reference embeddings or None (saliency only)."""
        f = features if features is not None else self.features(image)
        v = self.net.embedding(f.s16, f.s32)
        logits = self.net(v, refs)
        h, w = image.shape[:2]
        prob16 = torch.sigmoid(logits)
        if self.refiner is not None:
            with self._autocast():
                full = torch.sigmoid(self.refiner(f, prob16, (h, w)).float())
        else:
            from vossegcli.engine.geometry import upsample_scores

            full = upsample_scores(prob16.float(), (h, w), 1)[..., :h, :w]
        prob = full[0, 0].cpu().numpy().astype(np.float32)
        return PrimaryPrediction(prob, prob > 0.5, mask_confidence(prob))
