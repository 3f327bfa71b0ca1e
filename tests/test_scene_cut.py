"""Scene cuts: the rule, no false cuts on continuous footage, and joins found (the engine's signals)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from vossegcli.engine.backbone import Backbone
from vossegcli.engine.scene_cut import CutRule, colour_distance, colour_histogram, is_cut
from vossegcli.eval.cuts import clip_signals, cuts_in, frame_signals
from vossegcli.sample import sample_paths

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "davis16-train" / "splits.json").is_file(),
                                reason="needs ../shared/data/davis16-train")


def test_a_cut_needs_both_signals_unless_the_content_change_is_beyond_doubt():
    rule = CutRule(descriptor_cut=0.78, colour_cut=0.2, sure_cut=0.5)
    assert not is_cut(0.70, 0.05, rule)  # fast motion: content changed, colours did not
    assert not is_cut(0.90, 0.90, rule)  # a flash: colours changed, content did not
    assert is_cut(0.70, 0.30, rule)
    assert is_cut(0.40, 0.0, rule)


def test_colour_distance_is_zero_for_the_same_frame_and_one_for_disjoint_colours():
    red = torch.zeros(3, 16, 16, dtype=torch.uint8)
    red[0] = 250
    blue = torch.zeros(3, 16, 16, dtype=torch.uint8)
    blue[2] = 250
    assert float(colour_distance(colour_histogram(red), colour_histogram(red))) == 0.0
    assert float(colour_distance(colour_histogram(red), colour_histogram(blue))) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def backbone():
    return Backbone().eval()


def test_the_sample_has_no_cut_and_a_join_of_two_scenes_is_one(backbone):
    sample = clip_signals(sample_paths().video, backbone)
    assert cuts_in(sample) == []
    rng = np.random.default_rng(0)
    other = [np.clip(rng.normal(60, 25, (240, 320, 3)) + [0, 80, 0], 0, 255).astype(np.uint8) for _ in range(4)]
    joined = {k: torch.cat([sample[k][:10], frame_signals(other, backbone)[k]]) for k in ("desc", "hist")}
    assert cuts_in(joined) == [10]


@pytest.mark.slow
@pytest.mark.shared
@needs_data
def test_no_false_cut_on_any_continuous_davis16_train_sequence_or_synthetic_clip(backbone):
    from vossegcli.datasets.cutouts import DutsPool
    from vossegcli.eval.synth import SCENARIOS, render_clip
    from vossegcli.datasets.roots import duts_root

    false = {}
    for video in sorted((DATA / "davis16-train" / "videos").glob("*.mp4")):
        cuts = cuts_in(clip_signals(video, backbone))
        if cuts:
            false[video.stem] = cuts
    assert len(list((DATA / "davis16-train" / "videos").glob("*.mp4"))) == 30
    pool = DutsPool(duts_root(DATA))
    for scenario in SCENARIOS:
        for index in (0, 1):  # odd clips also change their lighting over the clip
            images, _ = render_clip(pool, scenario, index)
            cuts = cuts_in(frame_signals(images, backbone))
            if cuts:
                false[f"{scenario}-{index}"] = cuts
    assert false == {}
