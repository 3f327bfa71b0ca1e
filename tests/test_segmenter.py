"""The engine's library API on plain arrays (no CLI, no files)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from vossegcli.engine.augment import AugmentConfig
from vossegcli.engine.segmenter import Segmenter
from vossegcli.engine.config import preset_config
from vossegcli.io.palette import read_label_png
from vossegcli.io.video import open_frames
from vossegcli.sample import sample_paths
from support import iou


@pytest.fixture(scope="module")
def clip():
    with open_frames(sample_paths().video) as reader:
        frames = [f.image for f in reader][:24]
    first = read_label_png(sample_paths().mask)
    return frames, first


def _run(config, frames, masks):
    """(the video's state after the run, the label maps)."""
    seg = Segmenter(config, device="cpu")
    state = seg.new_state()
    return state, [r.labels for r in seg.run(iter(frames), masks, state)]


def test_updates_fill_a_bounded_memory_and_change_the_model(clip):
    frames, first = clip
    config = preset_config("fast", refiner=None, update_interval=4, memory_capacity=10)
    seg = Segmenter(config, device="cpu")
    state = seg.new_state()
    out, w2_after_start = [], None
    for index, frame in enumerate(frames):
        out.append(seg.step(state, frame, first if index == 0 else None))
        if index == 0:
            w2_after_start = state.w2.clone()
    assert len(out) == 24 and all(o.shape == first.shape for o in out)
    mem = state.memory
    assert state.objects.ids == [1, 2] and state.objects.frames_tracked == [23, 23]
    for obj in range(2):
        # 1 original + 4 augmented start samples, then one sample per tracked frame: capped at 10.
        assert mem.num_samples(obj) == 10 and mem.features.shape[1] == 10
    assert not torch.equal(state.w2, w2_after_start)  # the online updates changed w2 ...
    # ... and memory per object is fixed: capacity × (c·h·w + label grid) floats.
    h, w, c = mem.features.shape[2:]
    lh, lw = mem.labels.shape[-2:]
    assert state.memory_bytes() == 2 * 10 * (c * h * w + lh * lw) * 4


def test_no_update_variant_keeps_the_first_frame_model(clip):
    frames, first = clip
    config = preset_config("fast", refiner=None, update_interval=0, augment=AugmentConfig(num_samples=0))
    state, out = _run(config, frames[:6], {0: first})
    assert state.memory is None
    assert state.times.target_update == 0.0


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
    state, out = _run(config, frames[:10], {0: only1, 5: obj2_at_5})
    assert set(np.unique(out[3]).tolist()) <= {0, 1}
    assert np.array_equal(out[5] == 2, obj2_at_5 == 2)  # the given mask wins on its start frame
    assert state.objects.ids == [1, 2] and state.objects.start_frames == [0, 5]


def test_the_refiner_drives_the_output_and_an_untrained_one_follows_the_target_models(clip):
    from vossegcli.engine.refiner import Refiner, RefinerConfig

    frames, first = clip
    torch.manual_seed(0)
    config = preset_config("fast", refiner=None, update_interval=0, augment=AugmentConfig(num_samples=0))
    _, plain = _run(config, frames[:4], {0: first})
    untrained = Refiner(RefinerConfig(width=8))  # score skip, last conv zero: the scores upsampled via stride 4
    same = [r.labels for r in Segmenter(config, device="cpu", refiner=untrained).run(iter(frames[:4]), {0: first})]
    for a, b in zip(plain[1:], same[1:]):  # the same objects, up to the two upsamplings' boundaries
        assert all(iou(a == o, b == o) > 0.75 for o in (1, 2))
    other = Refiner(RefinerConfig(width=8, score_skip=False)).eval()  # random weights: its own masks
    with torch.no_grad():
        other.upsampler.logits.bias.fill_(5.0)  # says "object" almost everywhere
    driven = [r.labels for r in Segmenter(config, device="cpu", refiner=other).run(iter(frames[:4]), {0: first})]
    assert all((d[p == 0] > 0).mean() > 0.5 for d, p in zip(driven[1:], plain[1:]))


def test_online_learning_is_independent_of_the_refiner(clip):
    """The memories learn from the target models' own scores, so the models after several updates
    are exactly the D-only engine's, whatever the refiner outputs. (The spatial prior is off here:
    its window follows the written masks, so with it the refiner decides where the target models look.)"""
    from vossegcli.engine.presence import PresenceConfig
    from vossegcli.engine.refiner import Refiner, RefinerConfig

    frames, first = clip
    torch.manual_seed(0)
    refiner = Refiner(RefinerConfig(width=8, score_skip=False)).eval()  # random: unlike D's masks
    config = preset_config("fast", refiner=None, update_interval=2, augment=AugmentConfig(num_samples=0),
                           presence=PresenceConfig(spatial_prior=False))
    plain, plain_labels = _run(config, frames[:7], {0: first})
    refiner_engine = Segmenter(config, device="cpu", refiner=refiner)
    refined = refiner_engine.new_state()
    refined_labels = [r.labels for r in refiner_engine.run(iter(frames[:7]), {0: first}, refined)]
    assert torch.equal(plain.w2, refined.w2)
    # ... while the output is the refiner's, not the D-only engine's
    assert any((a != b).any() for a, b in zip(plain_labels[1:], refined_labels[1:]))


def test_one_engine_processes_two_videos_interleaved(clip):
    """The engine keeps no per-video data: alternating frames of two videos through one Segmenter
    gives each video exactly the masks it gets alone."""
    frames, first = clip
    config = preset_config("fast", refiner=None, update_interval=2)
    flipped = [np.ascontiguousarray(f[:, ::-1]) for f in frames[:8]]
    first_flipped = np.ascontiguousarray(first[:, ::-1])
    _, alone_a = _run(config, frames[:8], {0: first})
    _, alone_b = _run(config, flipped, {0: first_flipped})
    seg = Segmenter(config, device="cpu")
    a, b = seg.new_state(), seg.new_state()
    for i in range(8):
        la = seg.step(a, frames[i], first if i == 0 else None)
        lb = seg.step(b, flipped[i], first_flipped if i == 0 else None)
        assert np.array_equal(la, alone_a[i]) and np.array_equal(lb, alone_b[i])


def test_saved_state_continues_exactly(clip, tmp_path):
    """Save the state at frame 7, load it into a new engine, continue: byte-identical masks."""
    frames, first = clip
    config = preset_config("default", update_interval=3)  # with the shipped refiner
    _, whole = _run(config, frames[:14], {0: first})
    seg = Segmenter(config, device="cpu")
    state = seg.new_state()
    for i in range(7):
        seg.step(state, frames[i], first if i == 0 else None)
    state.save(tmp_path / "state.pt")
    fresh = Segmenter(config, device="cpu")
    restored = fresh.load_state(tmp_path / "state.pt")
    assert restored.frame_index == 7 and restored.objects.ids == [1, 2]
    rest = [r.labels for r in fresh.run(iter(frames[7:14]), {}, state=restored)]
    assert all(np.array_equal(x, y) for x, y in zip(rest, whole[7:14]))
    with pytest.raises(ValueError, match="other engine settings"):
        Segmenter(preset_config("fast", refiner=None), device="cpu").load_state(tmp_path / "state.pt")


def test_non_contiguous_ids_and_objects_added_on_any_frame(clip):
    frames, first = clip
    relabelled = np.select([first == 1, first == 2], [7, 200], 0).astype(np.uint8)
    only7 = np.where(relabelled == 7, 7, 0).astype(np.uint8)
    only200 = np.where(relabelled == 200, 200, 0).astype(np.uint8)
    seg = Segmenter(preset_config("fast", refiner=None), device="cpu")
    state = seg.new_state()
    out = [seg.step(state, frames[i], {0: only7, 3: only200}.get(i)) for i in range(6)]
    assert state.objects.ids == [7, 200] and state.objects.slot_of(200) == 1
    assert set(np.unique(out[1]).tolist()) <= {0, 7} and set(np.unique(out[5]).tolist()) == {0, 7, 200}
    # a tracked id given again is that frame's truth (an anchor): written as given, 200 absent there
    again = seg.step(state, frames[6], only7)
    assert np.array_equal(again, only7) and state.diagnostics.status == ["tracked", "absent"]
    assert state.objects.ids == [7, 200]


def test_step_runs_when_the_caller_is_in_inference_mode(clip):
    frames, first = clip
    config = preset_config("fast", refiner=None, update_interval=2)
    _, expected = _run(config, frames[:5], {0: first})
    seg = Segmenter(config, device="cpu")
    state = seg.new_state()
    with torch.inference_mode():
        got = [seg.step(state, frames[i], first if i == 0 else None) for i in range(5)]
    assert all(np.array_equal(x, y) for x, y in zip(got, expected))


def test_start_frame_samples_keep_their_floor_share_of_the_memory(clip):
    frames, first = clip
    config = preset_config("default", refiner=None, memory_anchor_weight=0.5, memory_capacity=12)
    state, _ = _run(config, frames, {0: first})
    mem = state.memory
    share = (mem.weights * mem.anchor).sum(dim=1)
    assert mem.anchor[:, :5].all() and not mem.anchor[:, 5:].any()  # the frame + 4 augmented copies
    assert torch.allclose(share, torch.full_like(share, 0.5))  # recency alone leaves them < 0.1 here
    plain, _ = _run(replace(config, memory_anchor_weight=0.0), frames, {0: first})
    assert float((plain.memory.weights[:, :5]).sum(dim=1).max()) < 0.5



def test_json_overrides_change_nested_settings_and_keep_the_rest():
    from vossegcli.engine.config import with_overrides

    base = preset_config("fast")
    c = with_overrides(base, {"presence": {"ownership_penalty": 2.0}, "init_cg_iterations": [5, 5], "refiner": None})
    assert c.presence.ownership_penalty == 2.0 and c.presence.found_similarity == base.presence.found_similarity
    assert c.init_cg_iterations == (5, 5) and c.refiner is None and c.channels == 32


def test_a_tracked_frame_reads_the_device_once_and_only_through_to_host(clip, monkeypatch):
    """On a GPU every read of a device value stalls the pipeline: a frame reads once, the label map
    with the presence decisions and the diagnostics, through ``to_host``; no ``.item()``,
    ``.tolist()``, ``.cpu()``, ``float(t)`` or ``bool(t)`` anywhere else in ``step``."""
    import vossegcli.engine.device as device
    import vossegcli.engine.diagnose as diagnose
    import vossegcli.engine.presence as presence
    import vossegcli.engine.segmenter as segmenter

    frames, first = clip
    seg = Segmenter(preset_config("default"), device="cpu")
    state = seg.new_state()
    seg.step(state, frames[0], first)  # (a start frame may read the new ids: not counted)
    stray, calls, inside = [], [], [False]
    original = device.to_host

    def counted_to_host(*tensors):
        calls.append(len(tensors))
        inside[0] = True
        try:
            return original(*tensors)
        finally:
            inside[0] = False

    def watch(name):
        method = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            if not inside[0]:
                stray.append(name)
            return method(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, wrapper)

    for name in ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__"):
        watch(name)
    for module in (diagnose, segmenter):  # every engine module that reads the device
        monkeypatch.setattr(module, "to_host", counted_to_host)
    assert not hasattr(presence, "to_host")  # the presence decisions read nothing
    frames_run = 16  # past template_every (10): a template expansion decision is among them
    for i in range(1, 1 + frames_run):
        seg.step(state, frames[i], None)
    monkeypatch.undo()
    assert stray == [], f"device reads outside to_host: {sorted(set(stray))}"
    assert len(calls) == frames_run
    assert [d.status for d in [state.diagnostics]] == [["tracked", "tracked"]]


def test_removing_an_object_drops_it_everywhere_and_the_rest_continues_exactly(clip, tmp_path):
    """VideoState.remove_objects: the removed id is never written again; every per-object component
    shrinks to the kept object, whose model is untouched; the state saves and resumes exactly; the
    id may start again later from a new mask."""
    frames, first = clip
    seg = Segmenter(preset_config("default", update_interval=3), device="cpu")
    state = seg.new_state()
    for i in range(6):
        seg.step(state, frames[i], first if i == 0 else None)
    kept_w1 = state.w1[state.objects.slot_of(2)].clone()
    assert state.remove_objects([1]) == [0]
    assert state.objects.ids == [2] and state.w1.shape[0] == state.w2.shape[0] == 1
    assert torch.equal(state.w1[0], kept_w1)
    assert state.memory.num_objects == 1 and len(state.memory.filled) == 1
    p = state.presence
    assert len(p.status) == len(p.boxes) == len(p.bank) == p.scene.shape[0] == 1
    state.save(tmp_path / "state.pt")
    later = [seg.step(state, frames[i]) for i in range(6, 12)]
    assert all(not (labels == 1).any() and (labels == 2).any() for labels in later)
    again = seg.load_state(tmp_path / "state.pt")
    assert all(np.array_equal(a, seg.step(again, frames[i])) for a, i in zip(later, range(6, 12)))
    mask = np.where(first == 1, 1, 0).astype(np.uint8)  # object 1 starts again (its first mask)
    back = seg.step(state, frames[12], mask)
    assert state.objects.ids == [2, 1] and (back == 1).any()
    assert (seg.step(state, frames[13]) == 1).any()
    with pytest.raises(KeyError):
        state.remove_objects([7])
    state.remove_objects([1, 2])  # none left: frames are empty until a mask starts one again
    assert state.num_objects == 0 and state.w1 is None and not seg.step(state, frames[14]).any()
    assert (seg.step(state, frames[15], first) > 0).any() and state.objects.ids == [1, 2]
