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
