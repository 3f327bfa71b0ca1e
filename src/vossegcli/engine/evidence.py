"""Per-video state of the appearance models (:mod:`vossegcli.engine.appearance`) and the evidence
maps they give the refiner.

A refiner trained with evidence names the kinds it takes in its config (``evidence``); the engine
keeps one :class:`AppearanceEvidence` per video with exactly those models, for all N objects:

    start:   add_objects(features (C, h, w), masks (n, h, w))   — the objects' start frame
    frame:   maps(features) → (N, k, h, w)                       — before the refiner
             update(features, masks (N, h, w), accept (N,))      — after the frame is tracked

Kinds and their channels, in this order: "gmm" 1 (target posterior), "gdm" 4 (max cosine
similarity to the start frame's target and background pixels, then to the previous frame's),
"dam" 1 (target posterior). All maps are at stride 16, float32. Features are the backbone's raw
stride-16 features (not the target model's scaled ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from vossegcli.engine import appearance as A

EVIDENCE_KINDS: dict[str, int] = {"gmm": 1, "gdm": 4, "dam": 1}


@dataclass(frozen=True)
class AppearanceSettings:
    gmm_rate: float = 0.1  #: λ of the GMM update (A-GAME)
    dam_rate: float = 0.2  #: λ of the supplementary vMF pair
    dam_kappa: float = 10.0  #: shared vMF concentration (learned in the paper; fixed here)


def evidence_channels(kinds: tuple[str, ...] | list[str]) -> int:
    return sum(EVIDENCE_KINDS[k] for k in kinds)


def check_kinds(kinds) -> tuple[str, ...]:
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in EVIDENCE_KINDS]
    if unknown:
        raise ValueError(f"unknown evidence {', '.join(unknown)}; choose from {', '.join(EVIDENCE_KINDS)}")
    return tuple(k for k in EVIDENCE_KINDS if k in kinds)  # canonical order


def pool_masks(masks: Tensor, hw: tuple[int, int]) -> Tensor:
    """(n, H, W) target probabilities at any resolution → (n, h, w) area averages on the feature grid."""
    if tuple(masks.shape[-2:]) == tuple(hw):
        return masks.float()
    return F.adaptive_avg_pool2d(masks.float()[:, None], tuple(hw))[:, 0]


class AppearanceEvidence:
    """The appearance models of one video's objects (see the module docstring)."""

    def __init__(self, kinds, settings: AppearanceSettings | None = None) -> None:
        self.kinds = check_kinds(kinds)
        self.settings = settings or AppearanceSettings()
        self.gmm_mean: Tensor | None = None  # (N, 4, C)
        self.gmm_var: Tensor | None = None
        self.vmf_mu: Tensor | None = None  # (N, 4, C)
        # GDM references: unit features (P, C) of the frames some object matches against, and per
        # object its start / previous reference (an index into refs) with its mask there (P,).
        self.refs: list[Tensor] = []
        self.start: list[tuple[int, Tensor]] = []
        self.prev: list[tuple[int, Tensor]] = []
        self.count = 0

    @property
    def channels(self) -> int:
        return evidence_channels(self.kinds)

    @property
    def num_objects(self) -> int:
        return self.count

    def add_objects(self, features: Tensor, masks: Tensor) -> None:
        """features (C, h, w) of the start frame; masks (n, H, W) or (n, h, w) of the new objects."""
        m = pool_masks(masks, features.shape[-2:])
        self.count += m.shape[0]
        if "gmm" in self.kinds:
            mean, var = A.gmm_fit(features, m)
            self.gmm_mean = mean if self.gmm_mean is None else torch.cat([self.gmm_mean, mean])
            self.gmm_var = var if self.gmm_var is None else torch.cat([self.gmm_var, var])
        if "dam" in self.kinds:
            mu = A.vmf_fit(features, m)
            self.vmf_mu = mu if self.vmf_mu is None else torch.cat([self.vmf_mu, mu])
        if "gdm" in self.kinds:
            self.refs.append(A.unit_pixels(features))
            ref = len(self.refs) - 1
            for mask in m.flatten(1):  # the previous frame of a new object is its start frame
                self.start.append((ref, mask))
                self.prev.append((ref, mask))

    def _matching(self, cur: Tensor, entries: list[tuple[int, Tensor]]) -> Tensor:
        """(N, 2, P): every object's GDM maps against its reference in ``entries``."""
        out = cur.new_empty((len(entries), 2, cur.shape[0]))
        for ref in sorted({r for r, _ in entries}):
            objs = [i for i, (r, _) in enumerate(entries) if r == ref]
            out[objs] = A.matching_maps(cur, self.refs[ref], torch.stack([entries[i][1] for i in objs]))
        return out

    def maps(self, features: Tensor) -> Tensor:
        """(N, k, h, w) evidence for the frame with features (C, h, w)."""
        c, h, w = features.shape
        out = []
        if "gmm" in self.kinds:
            out.append(A.gmm_posterior(features, self.gmm_mean, self.gmm_var)[:, None])
        if "gdm" in self.kinds:
            cur = A.unit_pixels(features)
            both = torch.cat([self._matching(cur, self.start), self._matching(cur, self.prev)], dim=1)
            out.append(both.reshape(-1, 4, h, w))
        if "dam" in self.kinds:
            out.append(A.vmf_posterior(features, self.vmf_mu, self.settings.dam_kappa)[:, None])
        return torch.cat(out, dim=1)

    def update(self, features: Tensor, masks: Tensor, accept: Tensor | None = None) -> None:
        """After a tracked frame: features (C, h, w), masks (N, H', W') tracked probabilities,
        accept (N,) bool — objects whose mask is trusted enough to learn from (the others keep
        their models and their last trusted previous frame)."""
        m = pool_masks(masks, features.shape[-2:])
        if "gmm" in self.kinds:
            self.gmm_mean, self.gmm_var = A.gmm_update(features, m, self.gmm_mean, self.gmm_var,
                                                       self.settings.gmm_rate, accept)
        if "dam" in self.kinds:
            self.vmf_mu = A.vmf_update(features, m, self.vmf_mu, self.settings.dam_rate, accept)
        if "gdm" in self.kinds:
            ok = [True] * self.count if accept is None else accept.tolist()
            if any(ok):
                self.refs.append(A.unit_pixels(features))
                new = len(self.refs) - 1
                self.prev = [(new, mask) if take else old for take, mask, old in zip(ok, m.flatten(1), self.prev)]
                self._drop_unused_refs()

    def _drop_unused_refs(self) -> None:
        used = sorted({r for r, _ in self.start} | {r for r, _ in self.prev})
        remap = {old: new for new, old in enumerate(used)}
        self.refs = [self.refs[i] for i in used]
        self.start = [(remap[r], m) for r, m in self.start]
        self.prev = [(remap[r], m) for r, m in self.prev]

    # -- saving --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        def cpu(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.detach().cpu().clone()
        return {"kinds": list(self.kinds), "settings": dict(self.settings.__dict__), "count": self.count,
                "gmm_mean": cpu(self.gmm_mean), "gmm_var": cpu(self.gmm_var), "vmf_mu": cpu(self.vmf_mu),
                "refs": [cpu(t) for t in self.refs],
                "start": [(r, cpu(m)) for r, m in self.start], "prev": [(r, cpu(m)) for r, m in self.prev]}

    @classmethod
    def from_state_dict(cls, blob: dict, device: torch.device | str = "cpu") -> "AppearanceEvidence":
        ev = cls(blob["kinds"], AppearanceSettings(**blob["settings"]))

        def dev(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)
        ev.count = int(blob["count"])
        ev.gmm_mean, ev.gmm_var, ev.vmf_mu = dev(blob["gmm_mean"]), dev(blob["gmm_var"]), dev(blob["vmf_mu"])
        ev.refs = [dev(t) for t in blob["refs"]]
        ev.start = [(int(r), dev(m)) for r, m in blob["start"]]
        ev.prev = [(int(r), dev(m)) for r, m in blob["prev"]]
        return ev
