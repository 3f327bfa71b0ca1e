"""Tuning the refiner on a video's given masks (engine/refiner_tuning.py, ``--preset quality``)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from vossegcli.engine.backbone import Backbone, BackboneFeatures
from vossegcli.engine.config import preset_config
from vossegcli.engine.refiner import Refiner, RefinerConfig
from vossegcli.engine.refiner_tuning import refine, tune_refiner
from vossegcli.engine.segmenter import Segmenter
from vossegcli.engine.state import VideoState
from vossegcli.io.palette import read_label_png
from vossegcli.io.video import open_frames
from vossegcli.sample import sample_paths


def _inputs(batch: int = 2, size: int = 64, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ch = Backbone.CHANNELS
    feats = BackboneFeatures(*(torch.randn(batch, ch[k], size // s, size // s, generator=g, dtype=dtype)
                               for k, s in (("s4", 4), ("s8", 8), ("s16", 16), ("s32", 32))))
    scores = torch.rand(batch, 1, size // 16, size // 16, generator=g, dtype=dtype)
    labels = torch.zeros(batch, 1, size, size, dtype=dtype)
    labels[:, :, 16:48, 20:44] = 1.0
    return feats, scores, labels


def _refiner(seed: int = 0) -> Refiner:
    torch.manual_seed(seed)
    refiner = Refiner(RefinerConfig(width=8)).eval()
    with torch.no_grad():  # a trained refiner's last layer is not zero: give the head something to move
        refiner.upsampler.logits.weight.normal_(0, 0.1)
    return refiner


def _loss(refiner, params, feats, scores, labels) -> float:
    with torch.no_grad():
        return F.binary_cross_entropy_with_logits(refine(refiner, params, feats, scores, (64, 64)), labels).item()


def test_tuning_lowers_the_loss_on_its_samples_and_leaves_the_shared_refiner_unchanged():
    refiner = _refiner()
    before = {k: v.clone() for k, v in refiner.state_dict().items()}
    feats, scores, labels = _inputs()
    tuned = tune_refiner(refiner, None, feats, scores, labels, steps=20, lr=1e-2)
    assert set(tuned) == {name for name, _ in refiner.named_parameters()}
    assert _loss(refiner, tuned, feats, scores, labels) < 0.8 * _loss(refiner, None, feats, scores, labels)
    assert all(torch.equal(before[k], v) for k, v in refiner.state_dict().items())
    # tuning again continues from the given parameters, not from the refiner's own
    again = tune_refiner(refiner, tuned, feats, scores, labels, steps=1, lr=1e-7)
    assert _loss(refiner, again, feats, scores, labels) == pytest.approx(_loss(refiner, tuned, feats, scores, labels), abs=1e-3)


def test_the_tuning_gradient_is_the_modules_own_and_passes_gradcheck():
    refiner = _refiner().double()
    feats, scores, labels = _inputs(batch=1, size=32, dtype=torch.float64)
    params = {name: p.detach().clone().requires_grad_(True) for name, p in refiner.named_parameters()}
    loss = F.binary_cross_entropy_with_logits(functional_call(refiner, params, (feats, scores, (32, 32))), labels)
    grads = torch.autograd.grad(loss, list(params.values()))
    refiner.zero_grad()
    F.binary_cross_entropy_with_logits(refiner(feats, scores, (32, 32)), labels).backward()
    for (name, p), g in zip(refiner.named_parameters(), grads):
        assert torch.allclose(p.grad, g, atol=1e-10), name
    assert any(g.abs().sum() > 0 for g in grads)

    head = ("upsampler.logits.bias", "skip_scale")

    def f(bias, skip):
        return F.binary_cross_entropy_with_logits(
            functional_call(refiner, {head[0]: bias, head[1]: skip}, (feats, scores, (32, 32)), strict=False), labels)

    start = [dict(refiner.named_parameters())[n].detach().clone().requires_grad_(True) for n in head]
    assert torch.autograd.gradcheck(f, start)


def _quality():
    """The quality preset with fewer tuning steps (the same path, a shorter test)."""
    assert preset_config("quality").refiner_tuning_steps > preset_config("default").refiner_tuning_steps > 0
    assert preset_config("fast").refiner_tuning_steps == 0
    return preset_config("quality", refiner_tuning_steps=3)


@pytest.fixture(scope="module")
def clip():
    with open_frames(sample_paths().video) as reader:
        frames = [f.image for f in reader][:6]
    return frames, read_label_png(sample_paths().mask)


def test_quality_preset_tunes_each_video_alone_and_deterministically(clip):
    frames, first = clip
    engine = Segmenter(_quality(), device="cpu")
    base = {k: v.clone() for k, v in engine.refiner.state_dict().items()}
    runs = []
    for _ in range(2):  # the same video twice through one engine: the first run must not leak into the second
        state = engine.new_state()
        runs.append([r.labels for r in engine.run(iter(frames), {0: first}, state)])
        assert state.refiner_params is not None
    fresh = Segmenter(_quality(), device="cpu")
    runs.append([r.labels for r in fresh.run(iter(frames), {0: first}, fresh.new_state())])
    assert all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(*runs))
    assert all(torch.equal(base[k], v) for k, v in engine.refiner.state_dict().items())
    untuned = Segmenter(preset_config("default", refiner_tuning_steps=0), device="cpu")
    plain = [r.labels for r in untuned.run(iter(frames), {0: first}, untuned.new_state())]
    assert any(not np.array_equal(a, b) for a, b in zip(runs[0][1:], plain[1:]))  # the tuning changes the masks


def test_tuned_refiner_is_saved_with_the_state_and_a_resumed_run_matches(clip, tmp_path):
    frames, first = clip
    engine = Segmenter(_quality(), device="cpu")
    whole = [r.labels for r in engine.run(iter(frames), {0: first}, engine.new_state())]
    state = engine.new_state()
    part = [r.labels for r in engine.run(iter(frames[:3]), {0: first}, state)]
    state.save(tmp_path / "state.pt")
    resumed = VideoState.load(tmp_path / "state.pt")
    assert resumed.refiner_params is not None
    assert all(torch.equal(state.refiner_params[k], v) for k, v in resumed.refiner_params.items())
    rest = [r.labels for r in Segmenter(_quality(), device="cpu").run(iter(frames[3:]), {}, resumed)]
    assert all(np.array_equal(a, b) for a, b in zip(whole, part + rest))


def test_a_later_mask_of_a_tracked_object_tunes_the_refiner_again_from_the_weights_so_far(clip, monkeypatch):
    import vossegcli.engine.segmenter as segmenter_module

    frames, first = clip
    engine = Segmenter(_quality(), device="cpu")
    state = engine.new_state()
    seen, starts = [], []
    real = segmenter_module.tune_refiner

    def spy(refiner, params, *args):
        starts.append(params)
        return real(refiner, params, *args)

    monkeypatch.setattr(segmenter_module, "tune_refiner", spy)
    for index, frame in enumerate(frames[:4]):
        engine.step(state, frame, first if index in (0, 2) else None)  # frame 2: the objects' masks again
        seen.append({k: v.clone() for k, v in state.refiner_params.items()})
    changed = [any(not torch.equal(a[k], b[k]) for k in a) for a, b in zip(seen, seen[1:])]
    assert changed == [False, True, False]  # only the frames with a mask move the weights
    assert starts[0] is None and starts[1] is not None and all(torch.equal(starts[1][k], seen[0][k]) for k in seen[0])


@pytest.mark.parametrize("copies, samples", [(0, 1), (2, 3), (None, 5)])
def test_the_tuning_uses_the_frame_and_as_many_augmented_copies_as_configured(clip, monkeypatch, copies, samples):
    import vossegcli.engine.segmenter as segmenter_module

    frames, first = clip
    seen = []

    def spy(refiner, params, features, scores, labels, steps, lr):
        seen.append((labels.shape[0], steps, lr))
        return dict(refiner.named_parameters())

    monkeypatch.setattr(segmenter_module, "tune_refiner", spy)
    config = preset_config("default", refiner_tuning_copies=copies)
    engine = Segmenter(config, device="cpu")
    engine.step(engine.new_state(), frames[0], first)
    objects = len([i for i in np.unique(first) if i])
    # (the augmentation may reject a copy it cannot make; the sample's copies all succeed)
    assert seen == [(objects * samples, config.refiner_tuning_steps, config.refiner_tuning_lr)]


def test_auto_seeded_runs_do_not_tune_the_refiner_on_their_own_proposals(monkeypatch, tmp_path):
    import vossegcli.run.auto as auto_module

    class Stop(Exception):
        pass

    built = []

    def capture(config, device):
        built.append(config)
        raise Stop

    monkeypatch.setattr(auto_module, "Segmenter", capture)
    with pytest.raises(Stop):
        auto_module.segment_auto(sample_paths().video, tmp_path / "out", auto_module.AutoConfig(), device="cpu",
                                 config=preset_config("quality"))
    assert built[0].refiner_tuning_steps == 0 and preset_config("quality").refiner_tuning_steps > 0
