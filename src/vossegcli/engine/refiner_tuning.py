"""Test-time tuning of the refiner on the masks a user gives (OSVOS-style one-shot adaptation).

The shipped refiner learned, offline, to turn coarse target scores into a sharp mask for objects in
general. On a start frame the engine knows the right answer for *this* object, so it spends a few
optimizer steps adapting the refiner to it: the frame itself and some of the augmented copies the
target models train on, each with the target model's own scores as input, against the given masks
(binary cross-entropy at full resolution). The default takes 3 steps at a learning rate of 1e-3 on
the frame and 2 copies; ``--preset quality`` 30 steps at 1e-4 on the frame and all copies. Measured
on real30 in docs/RESULTS.md ("Tuning the refiner on the given mask").

The network stays stateless: the tuned weights are a per-video parameter dict kept in
:class:`~vossegcli.engine.state.VideoState` (and saved with it), and the refiner runs with them
through :func:`torch.func.functional_call`. The refiner's BatchNorm statistics stay fixed (eval
mode); only its parameters move.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from vossegcli.engine.backbone import BackboneFeatures
from vossegcli.engine.refiner import Refiner

#: Adam's default learning rate for the tuning steps (the engine passes its config's).
TUNING_LR = 1e-4


def refine(refiner: Refiner, params: dict[str, Tensor] | None, features: BackboneFeatures, scores: Tensor,
           out_hw: tuple[int, int]) -> Tensor:
    """The refiner's (B, 1, H, W) logits, with a video's tuned ``params`` when it has them."""
    if params is None:
        return refiner(features, scores, out_hw)
    return functional_call(refiner, params, (features, scores, out_hw), strict=False)


def tune_refiner(refiner: Refiner, params: dict[str, Tensor] | None, features: BackboneFeatures, scores: Tensor,
                 labels: Tensor, steps: int, lr: float = TUNING_LR) -> dict[str, Tensor]:
    """``steps`` Adam steps on the refiner's parameters, starting from ``params`` (None: the
    refiner's own), on B samples; the refiner module itself is left unchanged.

    Args:
        features: backbone features of the B samples (any float dtype; used as float32).
        scores: (B, 1, h16, w16) the target model's scores on each sample.
        labels: (B, 1, H, W) masks in [0, 1].
    Returns:
        the tuned parameters (float32, detached), by name.
    """
    start = params if params is not None else dict(refiner.named_parameters())
    with torch.inference_mode(False), torch.enable_grad():
        # clones made outside inference mode: the engine's tensors may be inference tensors
        tuned = {name: p.detach().clone().float().requires_grad_(True) for name, p in start.items()}
        feats = BackboneFeatures(*(getattr(features, k).detach().float().clone() for k in ("s4", "s8", "s16", "s32")))
        x = scores.detach().float().clone()
        y = labels.detach().float().clone()
        out_hw = tuple(y.shape[-2:])
        optimizer = torch.optim.Adam(list(tuned.values()), lr=lr)
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            logits = functional_call(refiner, tuned, (feats, x, out_hw), strict=False)
            F.binary_cross_entropy_with_logits(logits.float(), y).backward()
            optimizer.step()
    return {name: p.detach() for name, p in tuned.items()}
