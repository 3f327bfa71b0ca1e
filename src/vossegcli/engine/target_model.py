"""The online target model D and its least-squares training problem (FRTM-VOS, section 3.1).

D(x) = w2 ∗ (w1 ∗ x): a 1×1 convolution from the backbone's stride-16 features to ``c``
channels, then a 3×3 convolution to one raw score map. No biases, no nonlinearity, no output
activation: scores regress towards the 0/1 object label.

:class:`TargetModelProblem` holds the residuals that Gauss–Newton minimizes:

* data residuals, per training sample k and label pixel n:
  ``√γ_k · √v_kn · s · (U(D(x_k))_n − y_kn)``, where U bilinearly upsamples the stride-16 scores to
  the label grid, γ are sample weights summing to 1, v are the hinge pixel weights and ``s`` is
  the label stride. Labels are kept at 1/``s`` of the frame resolution (area-averaged, hence soft);
  the factor ``s`` makes the sum over label pixels equal the full-resolution sum of the reference
  implementation, so the regularization strength means the same thing at any ``s``;
* regularization residuals ``λ1·w1`` and ``λ2·w2`` (λ enters linearly, as in the reference, so the
  effective squared penalty is λ²‖w‖²).

Two formulations of the same problem live here. :class:`TargetModel` / :class:`TargetModelProblem`
are the readable one-object reference (convolutions; the solver differentiates them with autograd);
the engine uses :class:`BatchedTargetProblem`, all objects at once in a channels-last layout with
the Jacobian products written out — tests check it against the reference object by object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vossegcli.engine.geometry import upsample_scores


class TargetModel:
    """Per-object target model D with weights ``w1`` (c, C, 1, 1) and ``w2`` (1, c, 3, 3)."""

    def __init__(self, w1: Tensor, w2: Tensor) -> None:
        if w1.dim() != 4 or w1.shape[2:] != (1, 1):
            raise ValueError(f"w1 must be (c, C, 1, 1), got {tuple(w1.shape)}")
        if w2.dim() != 4 or w2.shape[0] != 1 or w2.shape[1] != w1.shape[0] or w2.shape[2:] != (3, 3):
            raise ValueError(f"w2 must be (1, {w1.shape[0]}, 3, 3), got {tuple(w2.shape)}")
        self.w1 = w1
        self.w2 = w2

    @classmethod
    def initialize(
        cls, in_channels: int, channels: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> "TargetModel":
        """Random weights, uniform in ±1/√fan_in (PyTorch's default conv init, as the reference code)."""
        b1 = 1.0 / math.sqrt(in_channels)
        b2 = 1.0 / math.sqrt(channels * 9)
        w1 = (torch.rand(channels, in_channels, 1, 1, generator=generator) * 2 - 1) * b1
        w2 = (torch.rand(1, channels, 3, 3, generator=generator) * 2 - 1) * b2
        return cls(w1.to(device), w2.to(device))

    @property
    def channels(self) -> int:
        return int(self.w1.shape[0])

    def project(self, features: Tensor) -> Tensor:
        """(B, C, h, w) backbone features → (B, c, h, w) projected features (w1 ∗ x)."""
        return F.conv2d(features, self.w1)

    def score_projected(self, projected: Tensor) -> Tensor:
        """(B, c, h, w) projected features → (B, 1, h, w) raw scores (w2 ∗ ·)."""
        return F.conv2d(projected, self.w2, padding=1)

    def __call__(self, features: Tensor) -> Tensor:
        """(B, C, h, w) backbone features → (B, 1, h, w) raw target scores."""
        return self.score_projected(self.project(features))


def hinge_pixel_weights(labels: Tensor, target_fraction: float = 0.1, min_pixels: float = 10.0,
                        pixel_area: float = 1.0) -> Tensor:
    """Per-pixel loss weights v balancing small objects against the background (FRTM's "hinge").

    With κ̂ the object fraction of the binarized label and κ = max(κ_min, κ̂), object pixels weigh
    κ/κ̂ and background pixels (1−κ)/(1−κ̂): an object smaller than ``target_fraction`` of the frame
    counts as if it covered that fraction; larger objects get weight 1 everywhere. Objects of fewer
    than ``min_pixels`` full-resolution pixels, or covering the whole frame, get weight 1.

    Args:
        labels: (K, 1, H, W) labels in [0, 1] (soft labels are binarized at 0.5).
        pixel_area: full-resolution pixels per label pixel (label stride squared).
    Returns:
        (K, 1, H, W) weights v (the squared-residual weights; residuals use √v).
    """
    fg = (labels > 0.5).to(labels.dtype)
    count = fg.sum(dim=(1, 2, 3), keepdim=True)
    total = float(labels.shape[2] * labels.shape[3])
    frac = count / total
    frac = torch.where(count * pixel_area < min_pixels, torch.full_like(frac, target_fraction), frac)
    kappa = frac.clamp(min=target_fraction)
    w_fg = kappa / frac
    w_bg = (1 - kappa) / (1 - frac)
    weights = fg * w_fg + (1 - fg) * w_bg
    return torch.where(torch.isfinite(weights), weights, torch.ones_like(weights))


@dataclass
class TrainingSamples:
    """A set of training samples for D, all at the same resolution.

    features: (K, C, h, w) stride-16 features (raw backbone features, or w1-projected ones).
    labels: (K, 1, H', W') soft labels in [0, 1] on the label grid.
    pixel_weights: (K, 1, H', W') hinge weights v.
    sample_weights: (K,) weights γ, summing to 1.
    label_stride: frame pixels per label pixel along each axis.
    """

    features: Tensor
    labels: Tensor
    pixel_weights: Tensor
    sample_weights: Tensor
    label_stride: int


class TargetModelProblem:
    """Residuals of D on a sample set; optimizes (w1, w2) jointly or w2 alone on projected features.

    Args:
        samples: the training samples. For ``optimize_w1=False`` their features must already be
            projected by w1 (c channels).
        regularization: (λ1, λ2) for (w1, w2).
        optimize_w1: whether ``params`` is ``[w1, w2]`` (first frame) or ``[w2]`` (updates).
    """

    def __init__(self, samples: TrainingSamples, regularization: Sequence[float], optimize_w1: bool) -> None:
        self.samples = samples
        self.reg = tuple(float(r) for r in regularization)
        self.optimize_w1 = optimize_w1
        # √(γ_k v_kn) · s, precomputed once: (K, 1, H', W').
        gamma = samples.sample_weights.view(-1, 1, 1, 1)
        self._data_weight = (gamma * samples.pixel_weights).sqrt() * samples.label_stride

    def residuals(self, params: Sequence[Tensor]) -> Tensor:
        if self.optimize_w1:
            w1, w2 = params
            projected = F.conv2d(self.samples.features, w1)
            reg = [self.reg[0] * w1.reshape(-1), self.reg[1] * w2.reshape(-1)]
        else:
            (w2,) = params
            projected = self.samples.features
            reg = [self.reg[1] * w2.reshape(-1)]
        scores = F.conv2d(projected, w2, padding=1)
        up = upsample_scores(scores, tuple(self.samples.labels.shape[-2:]), self.samples.label_stride)
        data = (self._data_weight * (up - self.samples.labels)).reshape(-1)
        return torch.cat([data, *reg])


# ---------------------------------------------------------------------------------------------
# Batched target models: all objects of a video at once, explicit Jacobian products.
#
# Layouts (channels last, so every product over channels is one matrix multiplication):
#   features X: (N, K, h, w, C)  stride-16 backbone features of K samples for N objects
#   w1:         (N, C, c)        the 1×1 convolution as a matrix (TargetModel.w1[:, :, 0, 0].T)
#   w2:         (N, c, 9)        the 3×3 convolution, taps in row-major order (i, j) → 3i + j
#   projected:  (N, K, h, w, c)  X @ w1
#   scores:     (N, K, h, w)     the 3×3 correlation of the projected features with w2
# D is linear in w2 and in w1 separately, so J·p and Jᵀ·q are a few matrix products and shifted
# sums: no autograd graph, which makes the solver ~5× cheaper than double-backward and lets it
# run under ``torch.inference_mode()``.
# ---------------------------------------------------------------------------------------------


def _shift_sum(taps: Tensor) -> Tensor:
    """(…, h, w, 9) per-tap maps → (…, h, w): s[y, x] = Σ_ij taps[y+i−1, x+j−1, 3i+j] (zero padded)."""
    h, w = taps.shape[-3], taps.shape[-2]
    padded = F.pad(taps, (0, 0, 1, 1, 1, 1))
    out = padded[..., 0:h, 0:w, 0]
    for d in range(1, 9):
        i, j = divmod(d, 3)
        out = out + padded[..., i : i + h, j : j + w, d]
    return out


def _shift_spread(q: Tensor) -> Tensor:
    """Adjoint of :func:`_shift_sum`: (…, h, w) → (…, h, w, 9) with out[y, x, 3i+j] = q[y−i+1, x−j+1]."""
    h, w = q.shape[-2:]
    padded = F.pad(q, (1, 1, 1, 1))
    return torch.stack([padded[..., 2 - i : 2 - i + h, 2 - j : 2 - j + w] for i in range(3) for j in range(3)], dim=-1)


#: Products whose result has at most this many columns are computed transposed: BLAS handles a
#: tall-skinny (rows × 9) result badly on CPU; as (9 × rows) it is 4–6× faster (measured, 2 cores).
_SKINNY = 16


def _matmul_rows(a: Tensor, b: Tensor) -> Tensor:
    """(N, …, k) @ (N, k, m) → (N, …, m), flattening the middle dims into one matrix product."""
    n, k = a.shape[0], a.shape[-1]
    flat = a.reshape(n, -1, k)
    if b.shape[-1] <= _SKINNY:
        out = torch.bmm(b.transpose(1, 2), flat.transpose(1, 2)).transpose(1, 2)
    else:
        out = torch.bmm(flat, b)
    return out.reshape(*a.shape[:-1], b.shape[-1])


def _gram_rows(a: Tensor, b: Tensor) -> Tensor:
    """Σ over the middle dims of aᵀ b: (N, …, k), (N, …, m) → (N, k, m)."""
    n = a.shape[0]
    fa, fb = a.reshape(n, -1, a.shape[-1]), b.reshape(n, -1, b.shape[-1])
    if b.shape[-1] <= _SKINNY:
        return torch.bmm(fb.transpose(1, 2), fa).transpose(1, 2)
    return torch.bmm(fa.transpose(1, 2), fb)


def project_frame(features: Tensor, w1: Tensor) -> Tensor:
    """One frame's (h, w, C) features for all N objects → (N, h, w, c): one (h·w, C) @ (C, N·c) product."""
    h, w, big_c = features.shape
    n, _, c = w1.shape
    flat = features.reshape(-1, big_c) @ w1.permute(1, 0, 2).reshape(big_c, n * c)
    return flat.reshape(h, w, n, c).permute(2, 0, 1, 3)


def score_projected_batched(projected: Tensor, w2: Tensor) -> Tensor:
    """(N, …, h, w, c) projected features, w2 (N, c, 9) → (N, …, h, w) raw scores."""
    return _shift_sum(_matmul_rows(projected, w2))


class UpsampleOperator:
    """The bilinear, offset-corrected upsampling U of :func:`upsample_scores` as two matrices.

    U is separable: U(z) = Uh · z · Uwᵀ with Uh (H', h) and Uw (W', w), built by pushing unit
    vectors through :func:`upsample_scores`, so it is the same map; its adjoint is Uhᵀ · q · Uw.
    """

    def __init__(self, grid_hw: tuple[int, int], label_hw: tuple[int, int], label_stride: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        h, w = grid_hw
        lh, lw = label_hw
        eye_h = torch.eye(h, dtype=torch.float64).reshape(h, 1, h, 1)
        eye_w = torch.eye(w, dtype=torch.float64).reshape(w, 1, 1, w)
        self.uh = upsample_scores(eye_h, (lh, 1), label_stride)[:, 0, :, 0].T.to(device, dtype).contiguous()  # (H', h)
        self.uw = upsample_scores(eye_w, (1, lw), label_stride)[:, 0, 0, :].T.to(device, dtype).contiguous()  # (W', w)

    def __call__(self, z: Tensor) -> Tensor:
        """(…, h, w) → (…, H', W')."""
        return self.uh @ z @ self.uw.T

    def adjoint(self, q: Tensor) -> Tensor:
        """(…, H', W') → (…, h, w)."""
        return self.uh.T @ q @ self.uw


@dataclass
class BatchedSamples:
    """Training samples of N objects (K each; padding samples have weight 0).

    features: (N, K, h, w, C) raw scaled features (first frame) or (N, K, h, w, c) projected ones.
    labels: (N, K, H', W') soft labels on the label grid.
    sample_weights: (N, K) γ, each row summing to 1 (0 for empty slots).
    label_stride: frame pixels per label pixel.
    """

    features: Tensor
    labels: Tensor
    sample_weights: Tensor
    label_stride: int
    hinge_fraction: float = 0.1


class BatchedTargetProblem:
    """The target-model least-squares problem of N objects at once, with explicit J·p and Jᵀ·q.

    Residuals per object: data ``√γ_k √v_kn s (U(D(x_k))_n − y_kn)`` and ``λ·w`` as in
    :class:`TargetModelProblem`; the objects are independent (the solver's dot products are taken
    per object). Params are ``[w1 (N, C, c), w2 (N, c, 9)]`` with ``optimize_w1`` or ``[w2]`` on
    projected features.
    """

    batched = True

    def __init__(self, samples: BatchedSamples, regularization: Sequence[float], optimize_w1: bool,
                 upsample: UpsampleOperator | None = None) -> None:
        self.samples = samples
        self.reg = tuple(float(r) for r in regularization)
        self.optimize_w1 = optimize_w1
        labels = samples.labels
        s = samples.label_stride
        if upsample is None:
            upsample = UpsampleOperator(tuple(samples.features.shape[2:4]), tuple(labels.shape[-2:]), s,
                                        labels.device, labels.dtype)
        self.up = upsample
        v = hinge_pixel_weights(labels.flatten(0, 1)[:, None], samples.hinge_fraction, pixel_area=float(s * s))
        v = v[:, 0].reshape(labels.shape)
        self._sq_weight = samples.sample_weights[..., None, None] * v * float(s * s)  # (√γ √v s)²

    def _reg(self) -> list[float]:
        return list(self.reg) if self.optimize_w1 else [self.reg[1]]

    def _scores(self, params: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        x = self.samples.features
        if self.optimize_w1:
            w1, w2 = params
            projected = _matmul_rows(x, w1)
        else:
            (w2,) = params
            projected = x
        return score_projected_batched(projected, w2), projected

    def _jvp(self, params: Sequence[Tensor], projected: Tensor, p: Sequence[Tensor]) -> Tensor:
        """J·p in score space: (N, K, h, w)."""
        if self.optimize_w1:
            w1, w2 = params
            d1, d2 = p
            # X·d1·w2 as X·(d1·w2): (C, 9) first, ~10× fewer operations than projecting to c channels
            taps = _matmul_rows(self.samples.features, torch.bmm(d1, w2)) + _matmul_rows(projected, d2)
            return _shift_sum(taps)
        return _shift_sum(_matmul_rows(projected, p[0]))

    def _vjp(self, params: Sequence[Tensor], projected: Tensor, q: Tensor) -> list[Tensor]:
        """Jᵀ·q for a score-space q (N, K, h, w) → gradients shaped like params."""
        spread = _shift_spread(q)  # (N, K, h, w, 9)
        g2 = _gram_rows(projected, spread)  # (N, c, 9)
        if not self.optimize_w1:
            return [g2]
        w2 = params[1]
        g1 = torch.bmm(_gram_rows(self.samples.features, spread), w2.transpose(1, 2))  # (N, C, 9)·(N, 9, c)
        return [g1, g2]

    def residuals(self, params: Sequence[Tensor]) -> Tensor:
        """(N, R) residuals: data, then regularization."""
        scores, _ = self._scores(params)
        n = scores.shape[0]
        data = self._sq_weight.sqrt() * (self.up(scores) - self.samples.labels)
        reg = [lam * w.reshape(n, -1) for lam, w in zip(self._reg(), params)]
        return torch.cat([data.reshape(n, -1), *reg], dim=1)

    def prepare(self, params: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """(linearization point data, −Jᵀ r(params)) for one Gauss–Newton step."""
        scores, projected = self._scores(params)
        r = self._sq_weight * (self.up(scores) - self.samples.labels)
        grad = self._vjp(params, projected, self.up.adjoint(r))
        return projected, [-(g + lam * lam * w) for g, lam, w in zip(grad, self._reg(), params)]

    def normal_matvec(self, params: Sequence[Tensor], projected: Tensor, p: Sequence[Tensor]) -> list[Tensor]:
        """(JᵀJ + reg) · p at the linearization point."""
        z = self.up(self._jvp(params, projected, p))
        out = self._vjp(params, projected, self.up.adjoint(self._sq_weight * z))
        return [o + lam * lam * d for o, lam, d in zip(out, self._reg(), p)]


def to_batched_weights(model: "TargetModel") -> tuple[Tensor, Tensor]:
    """A :class:`TargetModel`'s (c, C, 1, 1), (1, c, 3, 3) weights → w1 (C, c), w2 (c, 9)."""
    return model.w1[:, :, 0, 0].T.contiguous(), model.w2[0].reshape(model.channels, 9).contiguous()


def from_batched_weights(w1: Tensor, w2: Tensor) -> "TargetModel":
    """w1 (C, c), w2 (c, 9) of one object → a :class:`TargetModel`."""
    c = w1.shape[1]
    return TargetModel(w1.T.contiguous()[:, :, None, None], w2.reshape(1, c, 3, 3).contiguous())
