"""Training the target models on a start frame: the frame and its augmented copies, w1 and w2
jointly by Gauss–Newton + CG (FRTM-VOS section 3.1); the objects starting on one frame as one batch."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from vossegcli.engine.augment import augment_start_frame
from vossegcli.engine.config import SegmenterConfig
from vossegcli.engine.geometry import downsample_mask
from vossegcli.engine.optim import GaussNewtonCG
from vossegcli.engine.target_model import (
    BatchedSamples, BatchedTargetProblem, TargetModel, UpsampleOperator, from_batched_weights, to_batched_weights,
)


def start_samples(
    x: torch.Tensor,
    rgb: torch.Tensor,
    masks: torch.Tensor,
    config: SegmenterConfig,
    features_fn: Callable[[torch.Tensor], torch.Tensor],
    seeds: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training samples of n objects given on one frame: the frame and its augmented copies.

    Args: as :func:`fit_target_models`.
    Returns:
        the (n, K, h, w, C) features and (n, K, H', W') labels of the samples (sample 0 is the
        frame itself; objects with fewer augmented copies are padded with empty samples) and their
        (n, K) relative weights (2 for the frame, 1 per copy, 0 for padding).
    """
    n = masks.shape[0]
    k = 1 + max(config.augment.num_samples, 0)
    per_object = []
    for mask, seed in zip(masks, seeds):
        images, aug_masks = (None, None)
        if config.augment.num_samples > 0:
            images, aug_masks = augment_start_frame(rgb.float(), mask, config.augment, seed)
        per_object.append((images, aug_masks))
    counts = [0 if im is None else im.shape[0] for im, _ in per_object]
    all_images = [im for im, _ in per_object if im is not None and im.shape[0] > 0]
    aug_feats = features_fn(torch.cat(all_images)) if all_images else None
    h, w, big_c = x.shape
    frame_hw = tuple(masks.shape[-2:])
    features = x.new_zeros((n, k, h, w, big_c))
    full_masks = masks.new_zeros((n, k, *frame_hw))
    weights = torch.zeros((n, k), device=x.device)
    offset = 0
    for i, ((_, aug_masks), count) in enumerate(zip(per_object, counts)):
        features[i, 0] = x
        full_masks[i, 0] = masks[i]
        weights[i, 0] = 2.0  # the original frame weighs twice an augmented copy
        if count:
            features[i, 1 : 1 + count] = aug_feats[offset : offset + count]
            full_masks[i, 1 : 1 + count] = aug_masks.to(masks.dtype)
            weights[i, 1 : 1 + count] = 1.0
            offset += count
    labels = downsample_mask(full_masks.flatten(0, 1)[:, None], config.label_stride)[:, 0]
    labels = labels.reshape(n, k, *labels.shape[-2:])
    return features, labels, weights


def fit_target_models(
    x: torch.Tensor,
    rgb: torch.Tensor,
    masks: torch.Tensor,
    config: SegmenterConfig,
    features_fn: Callable[[torch.Tensor], torch.Tensor],
    solver: GaussNewtonCG,
    seeds: Sequence[int],
    upsample_op: Callable[[tuple[int, int], tuple[int, int]], UpsampleOperator] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train n target models on one start frame and augmented copies (w1 and w2 jointly, one batch).

    Args:
        x: (h, w, C) scaled stride-16 features of the frame (channels last).
        rgb: (3, H, W) the frame, 0..255 (used for augmentation).
        masks: (n, H, W) the objects' binary masks.
        features_fn: (B, 3, H, W) images → (B, h, w, C) scaled stride-16 features.
        seeds: per object, seeds the weight initialization and the augmentation.
    Returns:
        w1 (n, C, c), w2 (n, c, 9), the (n, K, h, w, C) features and (n, K, H', W') labels of the
        training samples (sample 0 is the frame itself; objects with fewer augmented copies are
        padded with empty samples) and their (n, K) relative weights (2 for the frame, 1 per copy,
        0 for padding).
    """
    features, labels, weights = start_samples(x, rgb, masks, config, features_fn, seeds)
    h, w, big_c = x.shape
    init = [TargetModel.initialize(big_c, config.channels, torch.Generator().manual_seed(s), x.device) for s in seeds]
    w1 = torch.stack([to_batched_weights(m)[0] for m in init])
    w2 = torch.stack([to_batched_weights(m)[1] for m in init])
    op = upsample_op((h, w), tuple(labels.shape[-2:])) if upsample_op is not None else None
    samples = BatchedSamples(features, labels, weights / weights.sum(dim=1, keepdim=True), config.label_stride,
                             config.hinge_fraction)
    problem = BatchedTargetProblem(samples, config.regularization, optimize_w1=True, upsample=op)
    w1, w2 = solver.run(problem, [w1, w2], config.init_cg_iterations)
    return w1, w2, features, labels, weights


def fit_target_model(
    x: torch.Tensor,
    rgb: torch.Tensor,
    mask: torch.Tensor,
    config: SegmenterConfig,
    features_fn: Callable[[torch.Tensor], torch.Tensor],
    solver: GaussNewtonCG,
    seed: int,
) -> TargetModel:
    """One object's target model from (1, C, h, w) features, rgb (3, H, W) and mask (H, W), with
    ``features_fn`` mapping (B, 3, H, W) images to (B, C, h, w) features (training uses this)."""
    x_hwc = x[0].permute(1, 2, 0).contiguous()

    def hwc(images: torch.Tensor) -> torch.Tensor:
        return features_fn(images).permute(0, 2, 3, 1).contiguous()

    w1, w2, _, _, _ = fit_target_models(x_hwc, rgb, mask[None].float(), config, hwc, solver, [seed])
    return from_batched_weights(w1[0], w2[0])
