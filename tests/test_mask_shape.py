"""Scattered masks: parts of a written mask, the rule that calls a mask scattered, and the engine's
diagnostics reporting such a mask as uncertain with the reason."""

import numpy as np
import torch

from vossegcli.engine.mask_shape import part_areas, real_parts, scattered
from vossegcli.engine.segmenter import Segmenter
from vossegcli.engine.config import preset_config


def _blobs(positions, size=3, hw=(30, 40)):
    m = torch.zeros(hw)
    for y, x in positions:
        m[y:y + size, x:x + size] = 1
    return m


def test_parts_are_8_connected_pieces_counted_largest_first():
    m = _blobs([(0, 0), (10, 10)])
    m[3, 3] = 1  # touches the first blob diagonally: same part
    m[20:22, 30:35] = 1
    assert part_areas(m[None]) == [[10, 10, 9]]
    assert part_areas(torch.zeros(1, 5, 5)) == [[]]


def test_one_body_or_an_occluded_one_is_not_scattered_but_six_pieces_are():
    one = part_areas(_blobs([(5, 5)], size=12)[None])[0]
    two = part_areas(_blobs([(5, 5), (5, 20)], size=8)[None])[0]  # a person split by a pole
    speck = part_areas((_blobs([(5, 5)], size=12) + _blobs([(25, 35), (0, 38), (28, 0)], size=1))[None])[0]
    six = part_areas(_blobs([(2, 2), (2, 15), (2, 30), (18, 2), (18, 15), (18, 30)], size=4)[None])[0]
    assert not scattered(one) and not scattered(two)
    assert not scattered(speck) and real_parts(speck) == 1  # stray specks are not parts
    assert scattered(six) and real_parts(six) == 6


def test_the_diagnostics_report_a_scattered_mask_as_uncertain_with_the_reason():
    rng = np.random.default_rng(0)
    h, w = 192, 256
    frame = np.full((h, w, 3), 90, np.uint8) + rng.integers(0, 20, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    for y in (24, 120):
        for x in (24, 112, 200):  # six red squares far apart: one "object" in six places
            frame[y:y + 40, x:x + 40] = (220, 40, 40)
            mask[y:y + 40, x:x + 40] = 1
    seg = Segmenter(preset_config("fast", refiner=None), device="cpu")
    results = list(seg.run(iter([frame] * 4), {0: mask}))
    last = results[-1].diagnostics
    assert last.parts[0] == 6
    assert last.status[0] == "uncertain"
    assert last.reason[0].startswith("scattered: 6 separate parts")


def test_one_solid_object_is_reported_in_one_part_and_not_scattered():
    rng = np.random.default_rng(1)
    h, w = 192, 256
    frame = np.full((h, w, 3), 90, np.uint8) + rng.integers(0, 20, (h, w, 3), dtype=np.uint8)
    frame[60:140, 80:180] = (220, 40, 40)
    mask = np.zeros((h, w), np.uint8)
    mask[60:140, 80:180] = 1
    seg = Segmenter(preset_config("fast", refiner=None), device="cpu")
    last = list(seg.run(iter([frame] * 4), {0: mask}))[-1].diagnostics
    assert last.parts[0] == 1
    assert last.reason[0] is None or not last.reason[0].startswith("scattered")
