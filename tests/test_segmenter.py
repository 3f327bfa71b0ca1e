"""The engine's library API on plain arrays (no CLI, no files)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from vossegcli.engine.augment import AugmentConfig
from vossegcli.engine.segmenter import Segmenter, preset_config
from vossegcli.io.palette import read_label_png
from vossegcli.io.video import open_frames
from vossegcli.sample import sample_paths


@pytest.fixture(scope="module")
def clip():
    with open_frames(sample_paths().video) as reader:
        frames = [f.image for f in reader][:24]
    first = read_label_png(sample_paths().mask)
    return frames, first


def _run(config, frames, masks):
    seg = Segmenter(config, device="cpu")
    return seg, [r.labels for r in seg.run(iter(frames), masks)]


def test_updates_fill_a_bounded_memory_and_change_the_model(clip):
    frames, first = clip
    config = preset_config("fast", refiner=None, update_interval=4, memory_capacity=10)
    seg, out = _run(config, frames, {0: first})
    assert len(out) == 24 and all(o.shape == first.shape for o in out)
    for tracker in seg.trackers:
        mem = tracker.memory
        # 1 original + 4 augmented start samples, then one sample per tracked frame: capped at 10.
        assert mem.num_samples == 10 and mem.features.shape[0] == 10
        assert tracker.frames_tracked == 23
    # Memory per object is fixed: capacity × (c·h·w + label grid) floats.
    c, h, w = seg.trackers[0].memory.features.shape[1:]
    lh, lw = seg.trackers[0].memory.labels.shape[-2:]
    assert seg.memory_bytes() == 2 * 10 * (c * h * w + lh * lw) * 4


def test_no_update_variant_keeps_the_first_frame_model(clip):
    frames, first = clip
    config = preset_config("fast", refiner=None, update_interval=0, augment=AugmentConfig(num_samples=0))
    seg, out = _run(config, frames[:6], {0: first})
    assert all(t.memory is None for t in seg.trackers)
    assert seg.times.target_update == 0.0


def test_same_seed_gives_identical_masks(clip):
    frames, first = clip
    config = preset_config("fast", refiner=None, update_interval=4)
    _, a = _run(config, frames[:10], {0: first})
    _, b = _run(config, frames[:10], {0: first})
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_object_added_later_is_carved_out_of_tracked_objects(clip):
    frames, first = clip
    only1 = np.where(first == 1, 1, 0).astype(np.uint8)
    late = read_label_png(sample_paths().gt_dir / "00005.png")
    obj2_at_5 = np.where(late == 2, 2, 0).astype(np.uint8)
    config = preset_config("fast", refiner=None)
    seg, out = _run(config, frames[:10], {0: only1, 5: obj2_at_5})
    assert set(np.unique(out[3]).tolist()) <= {0, 1}
    assert np.array_equal(out[5] == 2, obj2_at_5 == 2)  # the given mask wins on its start frame
    assert [t.object_id for t in seg.trackers] == [1, 2] and seg.trackers[1].start_frame == 5


def test_a_refiner_object_drives_the_probabilities(clip):
    from vossegcli.engine.refiner import Refiner, RefinerConfig

    frames, first = clip
    torch.manual_seed(0)
    refiner = Refiner(RefinerConfig(width=8))  # untrained with score skip = the D-only engine
    config = preset_config("fast", refiner=None, update_interval=0, augment=AugmentConfig(num_samples=0))
    _, plain = _run(config, frames[:4], {0: first})
    seg = Segmenter(config, device="cpu", refiner=refiner)
    refined = [r.labels for r in seg.run(iter(frames[:4]), {0: first})]
    # Identical up to sigmoid rounding at exactly-0.5 pixels.
    assert all((a != b).mean() < 1e-3 for a, b in zip(plain, refined))


def test_coarse_update_labels_keep_online_learning_independent_of_the_refiner(clip):
    """With update_labels="coarse" the memories learn from the target models' own scores, so the
    models after several updates are exactly the D-only engine's, whatever the refiner outputs;
    with "refined" (the paper's rule) the refiner's masks change what the models learn."""
    from vossegcli.engine.refiner import Refiner, RefinerConfig

    frames, first = clip
    torch.manual_seed(0)
    refiner = Refiner(RefinerConfig(width=8, score_skip=False)).eval()  # random: unlike D's masks
    config = preset_config("fast", refiner=None, update_interval=2, augment=AugmentConfig(num_samples=0))
    plain, plain_labels = _run(config, frames[:7], {0: first})
    coarse = Segmenter(config, device="cpu", refiner=refiner)
    coarse_labels = [r.labels for r in coarse.run(iter(frames[:7]), {0: first})]
    refined = Segmenter(replace(config, update_labels="refined"), device="cpu", refiner=refiner)
    list(refined.run(iter(frames[:7]), {0: first}))
    for a, b, c in zip(plain.trackers, coarse.trackers, refined.trackers):
        assert torch.equal(a.model.w2, b.model.w2)
        assert not torch.equal(a.model.w2, c.model.w2)
    # ... while the output is the refiner's, not the D-only engine's
    assert any((a != b).any() for a, b in zip(plain_labels[1:], coarse_labels[1:]))


def test_unknown_update_labels_is_an_error():
    with pytest.raises(ValueError, match="update_labels"):
        Segmenter(preset_config("fast", refiner=None, update_labels="both"), device="cpu")
