"""Learned target-model features (LWL's feature adapter, Bhat et al. 2020, on our frozen backbone).

FRTM's target model D sees the backbone's stride-16 features as they are: 120 generic ImageNet
channels. LWL learns, offline and end to end through the online optimizer, what D works on. Here
:class:`TargetFeatures` keeps those 120 channels (scaled by the engine's ``feature_scale``, so D can
always fall back on what it saw before) and appends ``out_channels`` learned ones computed
from all three deeper levels at the stride-16 grid:

    x = [ s · s16 ;  mix(relu(reduce([pool(s8), s16, up(s32)]))) ]     (B, h, w, 120 + out)

``reduce`` is a 1×1 convolution of the standardized levels (48 + 120 + 352 channels) to ``width``,
``mix`` a 3×3 convolution to ``out_channels``, normalized per frame to a fixed RMS. D, its Gauss–Newton solver and the sample memory are
unchanged; they see C = 120 + out channels instead of 120. The adapter is trained by
:mod:`vossegcli.train.target_features` through the engine's own solver (unrolled GN-CG).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from vossegcli.engine.backbone import BackboneFeatures
from vossegcli.files import atomic_torch_save

LEVELS = {"s8": 48, "s16": 120, "s32": 352}  #: EfficientNet-Lite2 channels of the levels read


@dataclass(frozen=True)
class TargetFeaturesConfig:
    width: int = 128  #: channels after the 1×1 reduction
    out_channels: int = 64  #: learned channels appended to the scaled stride-16 features
    feature_scale: float = 0.05  #: the engine's scale of the raw stride-16 channels
    #: RMS the learned channels are normalized to, per frame over C×H×W (LWL normalizes its
    #: features the same way): the solver's regularization and preconditioner stay meaningful.
    #: 0.25 ≈ the RMS of the scaled stride-16 channels.
    learned_rms: float = 0.25

    def as_dict(self) -> dict:
        return asdict(self)


class TargetFeatures(nn.Module):
    """Backbone features → (B, h, w, C) float32 channels-last features for the target models."""

    def __init__(self, config: TargetFeaturesConfig | None = None) -> None:
        super().__init__()
        self.config = config or TargetFeaturesConfig()
        cfg = self.config
        total = sum(LEVELS.values())
        # per-channel standardization of the concatenated levels (set from data before training)
        self.register_buffer("mean", torch.zeros(total))
        self.register_buffer("std", torch.ones(total))
        self.reduce = nn.Conv2d(total, cfg.width, 1)
        self.mix = nn.Conv2d(cfg.width, cfg.out_channels, 3, padding=1)
        nn.init.zeros_(self.mix.bias)

    @property
    def channels(self) -> int:
        """C, the channels D sees."""
        return LEVELS["s16"] + self.config.out_channels

    @staticmethod
    def gather(s8: Tensor, s16: Tensor, s32: Tensor) -> Tensor:
        """(B, 48, ·), (B, 120, h, w), (B, 352, ·) → (B, 520, h, w) levels on the stride-16 grid."""
        hw = tuple(s16.shape[-2:])
        dtype = s16.dtype if s16.dtype == torch.float64 else torch.float32
        s8 = F.adaptive_avg_pool2d(s8.to(dtype), hw)
        s32 = F.interpolate(s32.to(dtype), size=hw, mode="bilinear", align_corners=False)
        return torch.cat([s8, s16.to(dtype), s32], dim=1)

    def set_statistics(self, stacked: Tensor) -> None:
        """Standardization from (N, 520, h, w) gathered levels of sample frames."""
        flat = stacked.float().transpose(0, 1).flatten(1)
        self.mean.copy_(flat.mean(dim=1))
        self.std.copy_(flat.std(dim=1).clamp_min(1e-3))

    def forward_levels(self, s8: Tensor, s16: Tensor, s32: Tensor) -> Tensor:
        """Levels → (B, h, w, C) float32 features for D."""
        levels = self.gather(s8, s16, s32)
        z = (levels - self.mean[:, None, None]) / self.std[:, None, None]
        learned = self.mix(F.relu(self.reduce(z)))
        rms = learned.pow(2).mean(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()
        learned = learned * (self.config.learned_rms / rms)
        x = torch.cat([s16.to(learned.dtype) * self.config.feature_scale, learned], dim=1)
        return x.permute(0, 2, 3, 1).contiguous()

    def forward(self, feats: BackboneFeatures) -> Tensor:
        return self.forward_levels(feats.s8, feats.s16, feats.s32)


def save_target_features(module: TargetFeatures, path: Path, meta: dict | None = None) -> None:
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}  # a file trained on a GPU loads anywhere
    atomic_torch_save({"config": module.config.as_dict(), "state_dict": state, "meta": meta or {}}, path)


def load_target_features(path: Path, device: torch.device | str = "cpu") -> TargetFeatures:
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    module = TargetFeatures(TargetFeaturesConfig(**blob["config"]))
    module.load_state_dict(blob["state_dict"])
    return module.to(device).eval()
