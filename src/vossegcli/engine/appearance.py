"""Appearance models beside the target model: evidence maps for the refiner.

All three work on the backbone's stride-16 features of one frame, ``features`` (C, h, w), and are
batched over the N objects of a video. Each returns maps at stride 16 that the refiner takes as
extra inputs beside the target model's scores (:mod:`vossegcli.engine.evidence` keeps their state).

* **GDM** — global directional matching (DAVIS-2020 guided-feature paper, §2.2): for every pixel,
  the highest cosine similarity of its feature to a reference frame's *target* pixels and,
  separately, to its *background* pixels: two maps in [-1, 1]. Matching the start frame is robust
  to drift; matching the previous frame's mask follows appearance change.
* **GMM** — A-GAME's generative appearance model: four diagonal Gaussians in feature space, a base
  background/target pair fitted in closed form on the start frame and a "distractor" pair fitted
  on what the base pair explains badly; all four are updated from tracked frames with a learning
  rate λ. The map is the target posterior (components 1 and 3) under a uniform prior.
* **DAM** — the same paper's dynamic directional appearance model: features on the unit sphere,
  von Mises–Fisher components with a shared concentration κ: a base background/target pair from the
  start frame (fixed) and a supplementary pair from the previous frames' masks, updated frame by
  frame with rate λ. The map is the target posterior.

Component layout of GMM and DAM (as in the A-GAME slides): 0 background, 1 target (base); 2
background, 3 target (distractor / supplementary).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: The value of a GDM map whose reference has no pixel of that kind (no target or no background).
NO_MATCH = -1.0
#: Added to every GMM variance (the feature std of EfficientNet-Lite2's stride-16 block is ≈ 5.5):
#: keeps a component fitted on few pixels from collapsing.
GMM_VARIANCE_FLOOR = 1.0
#: A component whose soft pixel count is below this keeps its previous parameters.
MIN_WEIGHT = 1.0


def _flat(features: Tensor) -> Tensor:
    """(C, h, w) → (h·w, C) float32."""
    return features.float().flatten(1).t()


def unit_pixels(features: Tensor) -> Tensor:
    """(C, h, w) → (h·w, C) float32 unit vectors: each pixel's feature direction."""
    return F.normalize(_flat(features), dim=1)


# -- GDM -----------------------------------------------------------------------------------------
def directional_matching(current: Tensor, reference: Tensor, reference_mask: Tensor) -> Tensor:
    """GDM maps of ``current`` against one reference frame.

    Args:
        current: (C, h, w) features of the current frame.
        reference: (C, h', w') features of the reference frame.
        reference_mask: (h', w') target probability (or 0/1 mask) of the reference frame;
            pixels > 0.5 are target, the others background.
    Returns:
        (2, h, w) float32: [max cosine similarity to target pixels, to background pixels];
        :data:`NO_MATCH` where the reference has no pixel of that kind.
    """
    c, h, w = current.shape
    return matching_maps(unit_pixels(current), unit_pixels(reference),
                         reference_mask.reshape(1, -1))[0].reshape(2, h, w)


def matching_maps(current: Tensor, reference: Tensor, reference_masks: Tensor) -> Tensor:
    """GDM of N objects against one reference frame, on unit feature vectors.

    current: (P, C) unit vectors; reference: (P', C) unit vectors; reference_masks: (N, P') target
    probabilities of the N objects on the reference. Returns (N, 2, P): max similarity to each
    object's target pixels and to its background pixels (:data:`NO_MATCH` where there are none).
    One (P × P') product serves all objects.
    """
    sims = current @ reference.t()  # (P, P')
    out = []
    for mask in reference_masks:
        target = mask > 0.5
        maps = []
        for chosen in (target, ~target):
            if bool(chosen.any()):
                maps.append(sims[:, chosen].amax(dim=1))
            else:
                maps.append(torch.full((sims.shape[0],), NO_MATCH, device=sims.device))
        out.append(torch.stack(maps))
    return torch.stack(out) if out else sims.new_zeros((0, 2, sims.shape[0]))


# -- GMM (A-GAME) --------------------------------------------------------------------------------
def _weighted_moments(x: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """x (P, C), alpha (N, K, P) → mean (N, K, C), diagonal variance (N, K, C), weight (N, K)."""
    weight = alpha.sum(dim=-1)
    denom = weight.clamp_min(1e-6)[..., None]
    mean = (alpha @ x) / denom
    var = ((alpha @ (x * x)) / denom - mean * mean).clamp_min(0) + GMM_VARIANCE_FLOOR
    return mean, var, weight


def gaussian_log_likelihoods(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """log N(x | mean, diag var) up to a constant: x (P, C), mean/var (N, K, C) → (N, K, P)."""
    n, k, c = mean.shape
    inv = 1.0 / var.reshape(n * k, c)
    mu = mean.reshape(n * k, c)
    quad = (x * x) @ inv.t() - 2 * x @ (mu * inv).t() + (mu * mu * inv).sum(dim=1)  # (P, N·K)
    ll = -0.5 * (quad + torch.log(var.reshape(n * k, c)).sum(dim=1))
    return ll.t().reshape(n, k, -1)


def _base_background_share(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Posterior of base component 0 against base component 1: (N, P)."""
    ll = gaussian_log_likelihoods(x, mean[:, :2], var[:, :2])
    return torch.softmax(ll, dim=1)[:, 0]


def _gmm_alphas(x: Tensor, masks: Tensor, base_mean: Tensor, base_var: Tensor) -> Tensor:
    """A-GAME's soft assignments (N, 4, P) for target probabilities ``masks`` (N, P)."""
    bg_share = _base_background_share(x, base_mean, base_var)
    a0, a1 = 1 - masks, masks
    a2 = (a0 - bg_share).clamp_min(0)
    a3 = (a1 - (1 - bg_share)).clamp_min(0)
    return torch.stack([a0, a1, a2, a3], dim=1)


def gmm_fit(features: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """Start-frame fit: features (C, h, w), masks (N, h, w) in [0, 1] → mean, var (N, 4, C).

    The base pair from the mask; the distractor pair from what the base pair gets wrong. A
    distractor component without pixels copies its base component.
    """
    x = _flat(features)
    m = masks.float().flatten(1)
    alpha = torch.stack([1 - m, m], dim=1)
    base_mean, base_var, _ = _weighted_moments(x, alpha)
    alpha = _gmm_alphas(x, m, base_mean, base_var)
    mean, var, weight = _weighted_moments(x, alpha[:, 2:])
    empty = (weight < MIN_WEIGHT)[..., None]
    mean = torch.where(empty, base_mean, mean)
    var = torch.where(empty, base_var, var)
    return torch.cat([base_mean, mean], dim=1), torch.cat([base_var, var], dim=1)


def gmm_update(features: Tensor, masks: Tensor, mean: Tensor, var: Tensor, rate: float,
               accept: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Blend every component towards this frame's fit: μ ← (1−λ)μ + λμ̃, Σ ← (1−λ)Σ + λΣ̃.

    features (C, h, w); masks (N, h, w) tracked target probabilities; mean/var (N, 4, C);
    accept (N,) bool: objects whose mask is trusted (others keep their model). A component with
    too little weight in this frame is not updated.
    """
    x = _flat(features)
    m = masks.float().flatten(1)
    alpha = _gmm_alphas(x, m, mean, var)
    new_mean, new_var, weight = _weighted_moments(x, alpha)
    ok = weight >= MIN_WEIGHT
    if accept is not None:
        ok = ok & accept[:, None]
    keep = ~ok[..., None]
    return (torch.where(keep, mean, (1 - rate) * mean + rate * new_mean),
            torch.where(keep, var, (1 - rate) * var + rate * new_var))


def gmm_posterior(features: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Target posterior (N, h, w) of components 1 and 3 under a uniform prior.

    In 100+ dimensions raw log-likelihood gaps are hundreds of nats (a hard 0/1 map); they are
    divided by √C — a fixed temperature that keeps the map graded for the refiner.
    """
    c, h, w = features.shape
    ll = gaussian_log_likelihoods(_flat(features), mean, var) / math.sqrt(c)
    post = torch.softmax(ll, dim=1)
    return (post[:, 1] + post[:, 3]).reshape(-1, h, w)


# -- DAM (von Mises–Fisher) ----------------------------------------------------------------------
def _mean_directions(g: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """g (P, C) unit, alpha (N, K, P) → ML mean directions (N, K, C) and weights (N, K)."""
    return F.normalize(alpha @ g, dim=-1), alpha.sum(dim=-1)


def vmf_fit(features: Tensor, masks: Tensor) -> Tensor:
    """Start-frame fit: (C, h, w), masks (N, h, w) → mean directions (N, 4, C); the supplementary
    pair starts equal to the base pair."""
    m = masks.float().flatten(1)
    mu, _ = _mean_directions(unit_pixels(features), torch.stack([1 - m, m], dim=1))
    return torch.cat([mu, mu], dim=1)


def vmf_update(features: Tensor, masks: Tensor, mu: Tensor, rate: float, accept: Tensor | None = None) -> Tensor:
    """Move the supplementary pair towards this frame's mean directions: μ ← norm((1−λ)μ + λμ̃).
    The base pair (start frame) never changes."""
    m = masks.float().flatten(1)
    new, weight = _mean_directions(unit_pixels(features), torch.stack([1 - m, m], dim=1))
    ok = weight >= MIN_WEIGHT
    if accept is not None:
        ok = ok & accept[:, None]
    blended = F.normalize((1 - rate) * mu[:, 2:] + rate * new, dim=-1)
    supplementary = torch.where(ok[..., None], blended, mu[:, 2:])
    return torch.cat([mu[:, :2], supplementary], dim=1)


def vmf_posterior(features: Tensor, mu: Tensor, kappa: float) -> Tensor:
    """Target posterior (N, h, w) of components 1 and 3: with one shared κ the vMF normalizers
    cancel, so p(k | g) = softmax_k(κ μ_kᵀ g)."""
    c, h, w = features.shape
    logits = kappa * torch.einsum("pc,nkc->nkp", unit_pixels(features), mu)
    post = torch.softmax(logits, dim=1)
    return (post[:, 1] + post[:, 3]).reshape(-1, h, w)
