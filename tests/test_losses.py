"""train/losses.py: the refiner's training losses (issue 11, item 6)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vossegcli.train.losses import dice_loss, lovasz_hinge, refiner_loss


def _labels(seed: int = 0, shape=(2, 1, 6, 7)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) > 0.6).double()


def test_a_confident_correct_prediction_costs_nothing_in_either_region_loss():
    y = _labels()
    logits = (2 * y - 1) * 20
    assert dice_loss(logits, y) < 1e-6
    assert lovasz_hinge(logits, y) == pytest.approx(0.0, abs=1e-12)


def test_lovasz_hinge_equals_the_jaccard_loss_of_the_mispredicted_pixels_on_unit_errors():
    """At hinge errors in {0, 1} the Lovász extension is the Jaccard loss of that set of mistakes."""
    y = _labels(1, (1, 1, 5, 8))
    g = torch.Generator().manual_seed(2)
    wrong = (torch.rand(y.shape, generator=g) > 0.7).double()
    logits = (2 * y - 1) * (1 - wrong)  # error 1 - s*(2y-1) = wrong
    positives = y.bool()
    kept = (positives & ~wrong.bool()).sum().item()
    union = (positives | wrong.bool()).sum().item()
    assert lovasz_hinge(logits, y).item() == pytest.approx(1 - kept / union)


def test_region_losses_have_correct_gradients():
    y = _labels(3, (1, 1, 4, 5))
    logits = torch.randn(y.shape, dtype=torch.double, generator=torch.Generator().manual_seed(4), requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: dice_loss(s, y), (logits,))
    assert torch.autograd.gradcheck(lambda s: lovasz_hinge(s, y), (logits,))


def test_refiner_loss_adds_the_region_term_to_cross_entropy():
    y = _labels(5).float()
    logits = torch.randn(y.shape, generator=torch.Generator().manual_seed(6))
    bce = F.binary_cross_entropy_with_logits(logits, y)
    assert torch.equal(refiner_loss(logits, y, "bce"), bce)
    assert refiner_loss(logits, y, "bce+dice") == pytest.approx((bce + dice_loss(logits, y)).item())
    assert refiner_loss(logits, y, "bce+lovasz") == pytest.approx((bce + lovasz_hinge(logits, y)).item())
    with pytest.raises(ValueError, match="loss must be one of"):
        refiner_loss(logits, y, "focal")


def test_a_better_mask_has_a_lower_region_loss():
    y = _labels(7)
    good = (2 * y - 1) * 3
    bad = good.clone()
    bad[..., :3] = -bad[..., :3]  # three columns flipped
    assert dice_loss(bad, y) > dice_loss(good, y) and lovasz_hinge(bad, y) > lovasz_hinge(good, y)
