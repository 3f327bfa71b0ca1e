"""Learned target-model features (engine/target_features.py) and their training path."""

import random

import numpy as np
import pytest
import torch

from vossegcli.engine.backbone import BackboneFeatures
from vossegcli.engine.memory import SampleMemory
from vossegcli.engine.segmenter import Segmenter
from vossegcli.engine.config import preset_config
from vossegcli.engine.target_features import (
    TargetFeatures,
    TargetFeaturesConfig,
    load_target_features,
    save_target_features,
)
from vossegcli.errors import VossegError
from vossegcli.io.palette import read_label_png
from vossegcli.io.video import open_frames
from vossegcli.sample import sample_paths
from vossegcli.train.target_features import AdapterTrainConfig, AdapterTrainer, _recency
from vossegcli.train.trainer import CachedClip
from support import runner


def _levels(b: int = 2, h: int = 6, w: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 48, 2 * h, 2 * w, generator=g), torch.randn(b, 120, h, w, generator=g) * 5,
            torch.randn(b, 352, (h + 1) // 2, (w + 1) // 2, generator=g))


def _toy_clip(name: str, frames: int = 5, seed: int = 0) -> CachedClip:
    """A moving square on random features, every level at its stride (frame 96×128)."""
    g = torch.Generator().manual_seed(seed)
    feats, labels = [], []
    for t in range(frames):
        s8, s16, s32 = _levels(1, 6, 8, seed * 100 + t)
        lab = torch.zeros(96, 128, dtype=torch.uint8)
        lab[20 + 2 * t : 60 + 2 * t, 30 + 3 * t : 70 + 3 * t] = 1
        s16[0, :10, 1:4, 2:5] += 4.0  # the object has a look of its own
        feats.append({"s8": s8[0].half(), "s16": s16[0].half(), "s32": s32[0].half()})
        labels.append(lab)
    del g
    return CachedClip(name, feats, labels)


def test_adapter_keeps_the_scaled_stride16_channels_and_appends_learned_ones():
    s8, s16, s32 = _levels()
    adapter = TargetFeatures(TargetFeaturesConfig(width=16, out_channels=8, feature_scale=0.05))
    x = adapter.forward_levels(s8, s16, s32)
    assert x.shape == (2, 6, 8, 128) and x.dtype == torch.float32 and adapter.channels == 128
    assert torch.allclose(x[..., :120], (s16 * 0.05).permute(0, 2, 3, 1))
    with torch.no_grad():
        adapter.mix.weight.zero_()
    assert torch.equal(adapter.forward_levels(s8, s16, s32)[..., 120:], torch.zeros(2, 6, 8, 8))
    # the odd stride-8 and stride-32 grids are brought to the stride-16 grid
    assert TargetFeatures.gather(torch.randn(1, 48, 13, 15), torch.randn(1, 120, 6, 8), torch.randn(1, 352, 3, 4)).shape \
        == (1, 520, 6, 8)


def test_adapter_file_round_trip_and_engine_errors(tmp_path):
    adapter = TargetFeatures(TargetFeaturesConfig(width=16, out_channels=8))
    adapter.set_statistics(TargetFeatures.gather(*_levels()))
    path = tmp_path / "tf.pt"
    save_target_features(adapter, path, {"note": "test"})
    loaded = load_target_features(path)
    levels = _levels(1, seed=3)
    assert torch.equal(loaded.forward_levels(*levels), adapter.eval().forward_levels(*levels))
    with pytest.raises(VossegError, match="not found"):
        Segmenter(preset_config(refiner=None, target_features=str(tmp_path / "missing.pt")), device="cpu")
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(VossegError, match="not a vosseg target-feature file"):
        Segmenter(preset_config(refiner=None, target_features=str(tmp_path / "bad.pt")), device="cpu")


def test_engine_with_an_adapter_segments_the_sample_and_its_models_see_the_wider_features(tmp_path):
    adapter = TargetFeatures(TargetFeaturesConfig(width=16, out_channels=8))
    path = tmp_path / "tf.pt"
    save_target_features(adapter, path)
    with open_frames(sample_paths().video) as reader:
        frames = [f.image for f in reader][:10]
    first = read_label_png(sample_paths().mask)
    config = preset_config("fast", refiner=None, update_interval=4, target_features=str(path))
    seg = Segmenter(config, device="cpu")
    state = seg.new_state()
    out = [r.labels for r in seg.run(iter(frames), {0: first}, state)]
    assert len(out) == 10 and all(o.shape == first.shape for o in out)
    assert state.w1.shape[1] == 128  # D's 1×1 projection reads 120 + 8 channels
    # with its learned channels silent the engine tracks as well as without it
    iou = [((o == 1) & (first == 1)).sum() / max(1, ((o == 1) | (first == 1)).sum()) for o in out[:2]]
    assert min(iou) > 0.5


def test_memory_weights_of_the_training_path_follow_the_engine_memory():
    memory = SampleMemory(8, (2, 2, 1), (2, 2), learning_rate=0.1, anchor_weight=0.5)
    memory.add_objects(torch.zeros(1, 1, 2, 2, 1), torch.zeros(1, 1, 2, 2), torch.ones(1, 1))
    weights = [1.0]
    for _ in range(6):
        memory.insert(torch.zeros(1, 2, 2, 1), torch.ones(1, 2, 2))
        weights = _recency(weights, 0.1, 0.5)
        assert np.allclose(memory.weights[0, : len(weights)].numpy(), weights, atol=1e-9)


def test_the_adapter_trainer_keeps_the_sharpness_the_shipped_adapters_were_trained_with():
    """The engine's score sharpness changed (8 → 32); a trainer given no engine settings still
    trains as the recorded commands did, on the engine's other defaults."""
    from vossegcli.engine.config import SegmenterConfig
    from vossegcli.train.target_features import ADAPTER_SCORE_SHARPNESS

    trainer = AdapterTrainer(AdapterTrainConfig(width=8, out_channels=4), [_toy_clip("a", seed=1)], [],
                             log=lambda s: None)
    assert trainer.engine.score_sharpness == ADAPTER_SCORE_SHARPNESS == 8.0
    assert SegmenterConfig().score_sharpness == 32.0
    assert trainer.engine.channels == SegmenterConfig().channels


def _trainer(seed: int = 0, steps: int = 2, test_frames: int = 2) -> AdapterTrainer:
    clips = [_toy_clip("a", seed=1), _toy_clip("b", seed=2)]
    cfg = AdapterTrainConfig(steps=steps, batch_size=2, width=8, out_channels=4, test_frames=test_frames, gap=(1, 2),
                             synthetic_ratio=0.0, seed=seed)
    engine = preset_config("fast", refiner=None, init_cg_iterations=(3, 3), update_cg_iterations=3)
    return AdapterTrainer(cfg, clips, [], engine=engine, log=lambda s: None)


def test_training_gradient_through_the_unrolled_solver_matches_finite_differences():
    # one test frame: the memory's labels (D's own predictions, deliberately detached) play no part
    trainer = _trainer(test_frames=1)
    clip, obj, ref, tests = trainer.sample_item(random.Random(0))
    assert len(tests) == 1
    adapter = trainer.adapter.double()  # float64: the check measures the chain rule, not rounding
    params = list(adapter.parameters())
    loss = trainer.item_loss(clip, obj, ref, tests, seed=7)
    grads = torch.autograd.grad(loss, params)
    g = torch.Generator().manual_seed(1)
    direction = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
    analytic = sum((gr * d).sum() for gr, d in zip(grads, direction)).item()
    eps = 1e-5

    def shifted(sign: float) -> float:
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.add_(sign * eps * d)
        value = trainer.item_loss(clip, obj, ref, tests, seed=7).item()
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.sub_(sign * eps * d)
        return value

    numeric = (shifted(1.0) - shifted(-1.0)) / (2 * eps)
    assert abs(analytic) > 1e-6
    assert abs(analytic - numeric) <= 1e-3 * abs(analytic)


def test_training_is_deterministic_and_changes_the_adapter():
    a, b = _trainer(seed=3), _trainer(seed=3)
    before = {k: v.clone() for k, v in a.adapter.state_dict().items()}
    a.train()
    b.train()
    for key, value in a.adapter.state_dict().items():
        assert torch.equal(value, b.adapter.state_dict()[key])
    assert not torch.equal(a.adapter.mix.weight, before["mix.weight"])
    assert [row["step"] for row in a.history] == [2]


def test_backbone_features_entry_point_matches_the_levels_one():
    adapter = TargetFeatures(TargetFeaturesConfig(width=8, out_channels=4))
    s8, s16, s32 = _levels(1)
    feats = BackboneFeatures(s4=torch.zeros(1, 24, 24, 32), s8=s8, s16=s16, s32=s32)
    assert torch.equal(adapter(feats), adapter.forward_levels(s8, s16, s32))


def test_cli_target_features_option_none_and_missing_file(tmp_path):
    import json

    from vossegcli.cli import app

    missing = runner.invoke(app, ["segment", "--out", str(tmp_path / "a"), "--target-features", str(tmp_path / "no.pt")])
    assert missing.exit_code == 2 and "--target-features none" in missing.output
    assert not (tmp_path / "a").exists()  # nothing half-written
    done = runner.invoke(app, ["segment", "--out", str(tmp_path / "b"), "--target-features", "none"])
    assert done.exit_code == 0, done.output
    record = json.loads((tmp_path / "b" / ".vosseg-run.json").read_text())
    assert "--target-features none" in record["command"]
    assert record["identity"]["engine"]["target_features"] is None
