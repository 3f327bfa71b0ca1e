"""engine/appearance.py: global directional matching maps (issue 11, item 4)."""

from __future__ import annotations

import torch

from vossegcli.engine.appearance import NO_MATCH, directional_matching


def _features(seed: int, shape=(16, 5, 6)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_a_pixel_equal_to_a_target_pixel_matches_the_target_fully():
    ref = _features(0)
    mask = torch.zeros(5, 6)
    mask[1:3, 2:4] = 1
    cur = _features(1)
    cur[:, 4, 5] = 3 * ref[:, 2, 3]  # same direction as a target pixel, another length
    cur[:, 0, 0] = ref[:, 0, 0]  # a background pixel's feature
    maps = directional_matching(cur, ref, mask)
    assert maps.shape == (2, 5, 6) and maps.dtype == torch.float32
    assert torch.isclose(maps[0, 4, 5], torch.tensor(1.0), atol=1e-6)
    assert torch.isclose(maps[1, 0, 0], torch.tensor(1.0), atol=1e-6)
    assert bool((maps >= -1 - 1e-6).all() and (maps <= 1 + 1e-6).all())


def test_maps_are_the_brute_force_maxima():
    ref, cur = _features(2), _features(3)
    mask = (torch.rand(5, 6, generator=torch.Generator().manual_seed(4)) > 0.5).float()
    maps = directional_matching(cur, ref, mask)
    for y in range(5):
        for x in range(6):
            sims = torch.nn.functional.cosine_similarity(cur[:, y, x, None], ref.reshape(16, -1), dim=0)
            assert torch.isclose(maps[0, y, x], sims[mask.reshape(-1) > 0.5].max(), atol=1e-5)
            assert torch.isclose(maps[1, y, x], sims[mask.reshape(-1) <= 0.5].max(), atol=1e-5)


def test_a_reference_without_target_gives_no_match_and_results_are_deterministic():
    ref, cur = _features(5), _features(6)
    maps = directional_matching(cur, ref, torch.zeros(5, 6))
    assert bool((maps[0] == NO_MATCH).all()) and bool((maps[1] > NO_MATCH).any())
    assert torch.equal(directional_matching(cur, ref, torch.zeros(5, 6)), maps)


# -- GMM (A-GAME) and DAM (vMF) ------------------------------------------------------------------
from vossegcli.engine.appearance import (  # noqa: E402
    gmm_fit, gmm_posterior, gmm_update, matching_maps, vmf_fit, vmf_posterior, vmf_update,
)


def _two_class_frame(seed=0, c=16, h=12, w=16):
    """Features where the target (a box) and the background come from separated clusters."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(h, w)
    mask[3:8, 4:10] = 1
    centre_fg, centre_bg = torch.randn(c, generator=g) * 4, torch.randn(c, generator=g) * 4
    noise = torch.randn(c, h, w, generator=g)
    feats = torch.where(mask.bool(), centre_fg[:, None, None], centre_bg[:, None, None]) + noise
    return feats, mask


def test_gmm_posterior_separates_target_from_background_and_has_four_components():
    feats, mask = _two_class_frame()
    mean, var = gmm_fit(feats, mask[None])
    assert mean.shape == var.shape == (1, 4, 16) and (var > 0).all()
    post = gmm_posterior(feats, mean, var)
    assert post.shape == (1, 12, 16)
    assert post[0][mask.bool()].mean() > 0.9 and post[0][~mask.bool()].mean() < 0.1


def test_gmm_update_moves_towards_the_new_frame_by_the_rate_and_respects_accept():
    feats, mask = _two_class_frame()
    mean, var = gmm_fit(feats, mask[None])
    shifted = feats + 3.0
    m2, _ = gmm_update(shifted, mask[None], mean, var, rate=0.5)
    # the base target component's mean moves half way to the new frame's target mean
    new_target_mean = shifted[:, mask.bool()].mean(dim=1)
    assert torch.allclose(m2[0, 1], 0.5 * mean[0, 1] + 0.5 * new_target_mean, atol=1e-4)
    m3, v3 = gmm_update(shifted, mask[None], mean, var, rate=0.5, accept=torch.tensor([False]))
    assert torch.equal(m3, mean) and torch.equal(v3, var)


def test_vmf_posterior_separates_directions_and_update_keeps_the_base_pair():
    feats, mask = _two_class_frame(seed=1)
    mu = vmf_fit(feats, mask[None])
    assert mu.shape == (1, 4, 16) and torch.allclose(mu.norm(dim=-1), torch.ones(1, 4))
    post = vmf_posterior(feats, mu, kappa=10.0)
    assert post[0][mask.bool()].mean() > 0.8 and post[0][~mask.bool()].mean() < 0.2
    other, _ = _two_class_frame(seed=2)
    mu2 = vmf_update(other, mask[None], mu, rate=0.3)
    assert torch.equal(mu2[:, :2], mu[:, :2]) and not torch.allclose(mu2[:, 2:], mu[:, 2:])
    assert torch.allclose(mu2.norm(dim=-1), torch.ones(1, 4), atol=1e-5)


def test_matching_maps_for_several_objects_equal_one_object_at_a_time():
    feats, mask = _two_class_frame()
    cur = torch.nn.functional.normalize(feats.flatten(1).t(), dim=1)
    masks = torch.stack([mask.flatten(), 1 - mask.flatten()])
    both = matching_maps(cur, cur, masks)
    for i in range(2):
        single = directional_matching(feats, feats, masks[i].reshape(12, 16))
        assert torch.allclose(both[i].reshape(2, 12, 16), single, atol=1e-6)
