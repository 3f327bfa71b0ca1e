"""RVOS's recurrent instance decoder (Ventura et al., CVPR 2019) over our backbone's features.

Every salient object of a video, each in its own *slot*, without a mask. The decoder is a stack of
ConvLSTMs over the backbone levels (stride 32 → 16 → 8), recurrent in two directions:

* **spatially over slots**: slot i's cell at level k sees slot i−1's hidden state at that level,
  so each slot learns to take an object the slots before it did not;
* **temporally over frames**: slot i at frame t continues slot i at t−1 (hidden and cell state),
  so an object keeps its slot — its id — through the video.

Cell input of level k for slot i at frame t: the level's projected backbone feature and the
upsampled output of level k−1; hidden input: ``[h(t, i−1, k) | h(t−1, i, k)]``; cell state from
``c(t−1, i, k)``. Per slot and frame: mask logits at stride 8 and a *score* logit (is this slot an
object in this frame? — RVOS's stop criterion). Trained zero-shot (no mask given) by
:mod:`vossegcli.train.instances`: ground-truth objects are assigned to slots by the Hungarian
algorithm on soft IoU over the whole training window; unassigned slots get no mask loss and learn
a score of 0.

:class:`InstanceDecoder` is stateless; :class:`InstanceState` holds a video's recurrent states.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from vossegcli.engine.backbone import BackboneFeatures
from vossegcli.files import atomic_torch_save

LEVELS = (("s32", 352), ("s16", 120), ("s8", 48))  #: backbone levels read, deep to shallow, and their channels


@dataclass(frozen=True)
class InstanceConfig:
    slots: int = 5  #: the most objects one video can have
    hidden: tuple[int, int, int] = (48, 32, 24)  #: ConvLSTM widths at strides 32, 16, 8

    def as_dict(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden)}


class ConvLSTMCell(nn.Module):
    """A ConvLSTM cell whose hidden input is two states side by side (the previous slot's and the
    previous frame's): gates = conv3×3([x | h_slot | h_time])."""

    def __init__(self, in_channels: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + 2 * hidden, 4 * hidden, 3, padding=1)

    def forward(self, x: Tensor, h_slot: Tensor, h_time: Tensor, c_time: Tensor) -> tuple[Tensor, Tensor]:
        """(B, in, h, w), three (B, hidden, h, w) → new (h, c)."""
        i, f, o, g = self.gates(torch.cat([x, h_slot, h_time], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c_time + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


@dataclass
class InstanceState:
    """A video's recurrent states: per level, (h, c) of every slot, each (B, S, hidden, h, w); None
    before the first frame."""

    h: list[Tensor] | None = None
    c: list[Tensor] | None = None
    frame_index: int = 0
    #: per slot: the first frame it scored as an object, and its mean score while it did (for reports)
    first_seen: dict[int, int] = field(default_factory=dict)


class InstanceDecoder(nn.Module):
    """Backbone features of a frame (+ the previous frame's states) → per-slot mask logits and scores."""

    def __init__(self, config: InstanceConfig | None = None) -> None:
        super().__init__()
        self.config = config or InstanceConfig()
        hid = self.config.hidden
        total = sum(c for _, c in LEVELS)
        self.register_buffer("mean", torch.zeros(total))
        self.register_buffer("std", torch.ones(total))
        self.skips = nn.ModuleList([nn.Conv2d(c, h, 1) for (_, c), h in zip(LEVELS, hid)])
        self.cells = nn.ModuleList([ConvLSTMCell(h + (hid[k - 1] if k else 0), h) for k, h in enumerate(hid)])
        self.mask_head = nn.Conv2d(hid[-1], 1, 3, padding=1)
        self.score_head = nn.Linear(2 * hid[0] + 2 * hid[-1], 1)

    def set_statistics(self, levels: list[Tensor]) -> None:
        """Per-channel standardization of the levels from sample frames: (N, C_k, h_k, w_k) each."""
        means, stds = [], []
        for x in levels:
            flat = x.float().transpose(0, 1).flatten(1)
            means.append(flat.mean(dim=1))
            stds.append(flat.std(dim=1).clamp_min(1e-3))
        self.mean.copy_(torch.cat(means))
        self.std.copy_(torch.cat(stds))

    def _skips(self, levels: list[Tensor]) -> list[Tensor]:
        out, offset = [], 0
        for (_, c), x, conv in zip(LEVELS, levels, self.skips):
            mean, std = self.mean[offset:offset + c], self.std[offset:offset + c]
            out.append(F.relu(conv((x.float() - mean[:, None, None]) / std[:, None, None])))
            offset += c
        return out

    def forward_levels(self, s32: Tensor, s16: Tensor, s8: Tensor, state: InstanceState | None = None
                       ) -> tuple[Tensor, Tensor, InstanceState]:
        """One frame of B videos: levels (B, C_k, h_k, w_k) → mask logits (B, S, h8, w8), score
        logits (B, S) and the new state (``state`` None: the first frame)."""
        skips = self._skips([s32, s16, s8])
        b = s32.shape[0]
        n = self.config.slots
        hid = self.config.hidden
        zeros = [x.new_zeros((b, h, *x.shape[-2:])) for x, h in zip(skips, hid)]
        h_prev = state.h if state is not None and state.h is not None else None
        c_prev = state.c if state is not None and state.c is not None else None
        new_h: list[list[Tensor]] = [[] for _ in hid]
        new_c: list[list[Tensor]] = [[] for _ in hid]
        logits, scores = [], []
        for i in range(n):
            below = None
            for k, cell in enumerate(self.cells):
                x = skips[k] if below is None else torch.cat(
                    [skips[k], F.interpolate(below, size=skips[k].shape[-2:], mode="bilinear", align_corners=False)], dim=1)
                h_slot = new_h[k][i - 1] if i > 0 else zeros[k]
                h_time = h_prev[k][:, i] if h_prev is not None else zeros[k]
                c_time = c_prev[k][:, i] if c_prev is not None else zeros[k]
                h, c = cell(x, h_slot, h_time, c_time)
                new_h[k].append(h)
                new_c[k].append(c)
                below = h
            logits.append(self.mask_head(below)[:, 0])
            top, last = new_h[0][i], below
            pooled = torch.cat([top.mean(dim=(2, 3)), top.amax(dim=(2, 3)), last.mean(dim=(2, 3)), last.amax(dim=(2, 3))], dim=1)
            scores.append(self.score_head(pooled)[:, 0])
        out = InstanceState([torch.stack(hs, dim=1) for hs in new_h], [torch.stack(cs, dim=1) for cs in new_c],
                            (state.frame_index + 1) if state is not None else 1,
                            dict(state.first_seen) if state is not None else {})
        return torch.stack(logits, dim=1), torch.stack(scores, dim=1), out

    def forward(self, feats: BackboneFeatures, state: InstanceState | None = None) -> tuple[Tensor, Tensor, InstanceState]:
        return self.forward_levels(feats.s32, feats.s16, feats.s8, state)


def instance_labels(logits: Tensor, scores: Tensor, frame_hw: tuple[int, int], max_objects: int | None = None,
                    score_threshold: float = 0.5) -> np.ndarray:
    """One frame's (S, h8, w8) mask logits and (S,) score logits → (H, W) uint8 ids (slot i → id
    i + 1): each pixel goes to the slot of highest probability among those scoring as objects, where
    that probability is over 0.5; ``max_objects``: only the first slots."""
    n = logits.shape[0] if max_objects is None else min(max_objects, logits.shape[0])
    probs = torch.sigmoid(F.interpolate(logits[None, :n].float(), size=frame_hw, mode="bilinear", align_corners=False)[0])
    keep = torch.sigmoid(scores[:n].float()) > score_threshold
    probs = probs * keep[:, None, None]
    best, slot = probs.max(dim=0)
    labels = torch.where(best > 0.5, slot + 1, torch.zeros_like(slot))
    return labels.to(torch.uint8).cpu().numpy()


def save_instances(net: InstanceDecoder, path: Path, meta: dict | None = None) -> None:
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}  # a file trained on a GPU loads anywhere
    atomic_torch_save({"config": net.config.as_dict(), "state_dict": state, "meta": meta or {}}, path)


def load_instances(path: Path, device: torch.device | str = "cpu") -> InstanceDecoder:
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    cfg = dict(blob["config"])
    net = InstanceDecoder(InstanceConfig(slots=int(cfg["slots"]), hidden=tuple(cfg["hidden"])))
    net.load_state_dict(blob["state_dict"])
    return net.to(device).eval()
