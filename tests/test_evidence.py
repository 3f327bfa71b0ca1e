"""The engine's appearance-model state (engine/evidence.py): channels, updates, saving."""

import pytest
import torch

from vossegcli.engine.appearance import NO_MATCH
from vossegcli.engine.evidence import EVIDENCE_KINDS, AppearanceEvidence, check_kinds, evidence_channels


def _frame(seed, c=24, h=10, w=14):
    return torch.randn(c, h, w, generator=torch.Generator().manual_seed(seed)) * 5


def _masks(n=2, h=40, w=56):
    m = torch.zeros(n, h, w)
    m[0, 4:20, 4:24] = 1
    if n > 1:
        m[1, 24:36, 30:50] = 1
    return m


def test_kinds_come_in_a_fixed_order_and_unknown_ones_are_refused():
    assert check_kinds(["dam", "gmm"]) == ("gmm", "dam")
    assert evidence_channels(("gmm", "gdm", "dam")) == 6 == sum(EVIDENCE_KINDS.values())
    with pytest.raises(ValueError, match="unknown evidence flow"):
        check_kinds(["flow"])


@pytest.mark.parametrize("kinds,channels", [(("gmm",), 1), (("gdm",), 4), (("dam",), 1), (("gmm", "gdm", "dam"), 6)])
def test_maps_have_one_block_of_channels_per_kind_for_every_object(kinds, channels):
    ev = AppearanceEvidence(kinds)
    ev.add_objects(_frame(0), _masks())
    maps = ev.maps(_frame(1))
    assert maps.shape == (2, channels, 10, 14) and torch.isfinite(maps).all()
    again = AppearanceEvidence(kinds)
    again.add_objects(_frame(0), _masks())
    assert torch.equal(maps, again.maps(_frame(1)))  # deterministic


def test_gdm_on_the_start_frame_itself_matches_the_mask_exactly():
    ev = AppearanceEvidence(("gdm",))
    f = _frame(0)
    ev.add_objects(f, _masks(1))
    maps = ev.maps(f)[0]  # [start target, start background, previous target, previous background]
    inside = torch.nn.functional.adaptive_avg_pool2d(_masks(1)[None], (10, 14))[0, 0] > 0.5
    assert torch.allclose(maps[0][inside], torch.ones(int(inside.sum())), atol=1e-5)
    assert torch.allclose(maps[1][~inside], torch.ones(int((~inside).sum())), atol=1e-5)


def test_a_rejected_frame_leaves_models_and_previous_reference_unchanged():
    ev = AppearanceEvidence(("gmm", "gdm", "dam"))
    ev.add_objects(_frame(0), _masks())
    before = ev.maps(_frame(5))
    ev.update(_frame(1), _masks(), accept=torch.tensor([False, False]))
    assert torch.equal(before, ev.maps(_frame(5)))
    ev.update(_frame(1), _masks(), accept=torch.tensor([True, False]))
    after = ev.maps(_frame(5))
    assert not torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])
    assert len(ev.refs) == 2  # the start frame and the one accepted previous frame


def test_objects_added_later_get_their_own_start_reference():
    ev = AppearanceEvidence(("gdm",))
    ev.add_objects(_frame(0), _masks(1))
    ev.update(_frame(1), _masks(1))
    ev.add_objects(_frame(2), torch.zeros(1, 40, 56))  # an empty new object: no target pixels
    maps = ev.maps(_frame(3))
    assert maps.shape[0] == 2 and (maps[1, 0] == NO_MATCH).all()


def test_state_round_trip_gives_identical_maps():
    ev = AppearanceEvidence(("gmm", "gdm", "dam"))
    ev.add_objects(_frame(0), _masks())
    ev.update(_frame(1), _masks())
    restored = AppearanceEvidence.from_state_dict(ev.state_dict())
    assert torch.equal(ev.maps(_frame(2)), restored.maps(_frame(2)))
